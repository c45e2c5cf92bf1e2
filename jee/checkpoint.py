"""Orbax checkpoints of the train state in ``WORKDIR/checkpoints``: the latest N and the best.

Saving is asynchronous (training continues while the previous state is written) and
multi-process aware (orbax coordinates the processes). Restoring takes an abstract target whose
shardings belong to the current mesh, so a checkpoint written with one device count restores
with another.
"""

from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy as pp

BEST_METRIC = "val_accuracy"


class CheckpointError(RuntimeError):
    pass


def _abstract(tree):
    return jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=getattr(a, "sharding", None)),
        tree)


class Checkpoints:
    def __init__(self, workdir: str, keep: int = 2, read_only: bool = False):
        self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
        policy = pp.AnyPreservationPolicy([
            pp.LatestN(n=max(1, keep)),
            pp.BestN(get_metric_fn=lambda m: m[BEST_METRIC], reverse=False, n=1,
                     keep_checkpoints_without_metrics=False),
        ])
        options = ocp.CheckpointManagerOptions(preservation_policy=policy, create=not read_only,
                                               read_only=read_only)
        if read_only and not os.path.isdir(self.directory):
            raise CheckpointError(
                f"no checkpoints in {self.directory}: train first with "
                f"`python train.py --config ... --workdir {os.path.dirname(self.directory)}`")
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def best_step(self) -> int | None:
        return self.manager.best_step()

    def save(self, step: int, state, metrics: dict | None = None) -> None:
        self.manager.save(step, args=ocp.args.StandardSave(state), metrics=metrics)

    def restore(self, step: int, like):
        """Restores ``step`` into the structure, dtypes and shardings of ``like``."""
        try:
            return self.manager.restore(step, args=ocp.args.StandardRestore(_abstract(like)))
        except Exception as e:  # orbax raises many types for unreadable or mismatched data
            raise CheckpointError(
                f"checkpoint {step} in {self.directory} cannot be restored ({type(e).__name__}: "
                f"{str(e)[:300]}). It may be corrupt or from a different model/config: delete "
                f"{os.path.join(self.directory, str(step))} to fall back to an earlier one, or use "
                "a new --workdir") from e

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()
