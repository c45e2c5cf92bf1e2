"""Orbax checkpoints of the train state in ``WORKDIR/checkpoints``: the latest N and the best.

Every checkpoint that was validated carries its ranking metric (the validation accuracy of
that very state) in orbax's metrics item, so the best step is read back from disk after a
restart and the preservation policy never deletes it, however many later checkpoints follow.
Ties go to the earliest step: it reached that accuracy first.

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


def _rank(metrics) -> tuple[int, float, int]:
    # Higher is better. A later training stage first: the confidence stage's checkpoints hold
    # the finished network. In the main stage, accuracy, the earlier of two equal ones first.
    # In the confidence stage, the latest: it trades accuracy for cost by its own loss, which
    # accuracy alone would undo by preferring its costlier, less trained states.
    stage, step = int(metrics.get("stage", 1)), int(metrics["step"])
    if stage > 1:
        return stage, float(step), 0
    return stage, float(metrics[BEST_METRIC]), -step


def _abstract(tree):
    return jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=getattr(a, "sharding", None)),
        tree)


class Checkpoints:
    def __init__(self, workdir: str, keep: int = 2, read_only: bool = False):
        self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
        policy = pp.AnyPreservationPolicy([
            pp.LatestN(n=max(1, keep)),
            pp.BestN(get_metric_fn=_rank, reverse=False, n=1,
                     keep_checkpoints_without_metrics=False),
        ])
        # best_fn makes orbax write each checkpoint's metrics and read them back on start-up.
        options = ocp.CheckpointManagerOptions(
            preservation_policy=policy, best_fn=_rank, best_mode="max",
            create=not read_only, read_only=read_only)
        if read_only and not os.path.isdir(self.directory):
            raise CheckpointError(
                f"no checkpoints in {self.directory}: train first with "
                f"`python train.py --config ... --workdir {os.path.dirname(self.directory)}`")
        self.read_only = read_only
        # A reader restores only the parts it asks for (the weights, not the optimizer), which
        # the PyTree handler allows; the same files are written by the Standard one.
        handler = ocp.PyTreeCheckpointHandler() if read_only else None
        try:
            self.manager = ocp.CheckpointManager(self.directory, options=options,
                                                 item_handlers=handler)
        except Exception as e:  # orbax reads every step's metadata and metrics here
            steps = sorted(p for p in os.listdir(self.directory) if p.isdigit())
            raise CheckpointError(
                f"the checkpoints in {self.directory} cannot be read ({type(e).__name__}: "
                f"{_one_line(str(e))[:200]}); one of the step folders {steps} is corrupt: "
                "delete it (the newest first) to fall back to an earlier one, or use a new "
                "--workdir") from e

    def all_steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def best_step(self) -> int | None:
        """The best validated step, or None if none was validated: the one with the highest
        validation accuracy, or the latest validated one of the confidence stage."""
        ranked = [(s, m) for s in self.all_steps() if (m := self.metrics(s)) is not None]
        if not ranked:
            return None
        return max(ranked, key=lambda sm: _rank(sm[1]))[0]

    def metrics(self, step: int) -> dict | None:
        """The ranking metrics stored with ``step`` (None for an unvalidated checkpoint)."""
        m = self.manager.metrics(step)
        return dict(m) if m and BEST_METRIC in m else None

    def save(self, step: int, state, val_accuracy: float | None = None, stage: int = 1) -> None:
        """Saves ``state``; ``val_accuracy`` must be the validation result of this very state,
        ``stage`` the training stage it belongs to (a later stage ranks first)."""
        metrics = None if val_accuracy is None else {BEST_METRIC: float(val_accuracy),
                                                     "step": int(step), "stage": int(stage)}
        self.manager.save(step, args=ocp.args.StandardSave(state), metrics=metrics)

    def select(self, which: str | int = "best") -> tuple[int, str]:
        """``(step, why)`` for ``which`` = 'best' | 'latest' | a step number."""
        steps = self.all_steps()
        if not steps:
            raise CheckpointError(
                f"no checkpoint in {self.directory}: train first with `python train.py "
                f"--config ... --workdir {os.path.dirname(self.directory)}`")
        if which == "latest":
            return steps[-1], "latest"
        if which == "best":
            best = self.best_step()
            if best is None:
                return steps[-1], "latest (no checkpoint was validated)"
            m = self.metrics(best)
            if m.get("stage", 1) > 1:
                return best, (f"the confidence stage's last validated state, val accuracy "
                              f"{m[BEST_METRIC]:.4f} (latest: {steps[-1]})")
            return best, (f"best by val accuracy {m[BEST_METRIC]:.4f} "
                          f"(latest: {steps[-1]})")
        try:
            step = int(which)
        except (TypeError, ValueError):
            raise CheckpointError(f"checkpoint {which!r}: give 'best', 'latest' or a step "
                                  f"number (this run has {steps})") from None
        if step not in steps:
            raise CheckpointError(f"no checkpoint at step {step} in {self.directory}; it holds "
                                  f"steps {steps}: use one of them, 'best' or 'latest'")
        m = self.metrics(step)
        return step, ("as requested" + (f", val accuracy {m[BEST_METRIC]:.4f}" if m else ""))

    def restore(self, step: int, like):
        """Restores ``step`` into the structure, dtypes and shardings of ``like``; read-only,
        ``like`` may hold only some of the saved entries (e.g. no optimizer state)."""
        try:
            if self.read_only:
                target = _abstract(like)
                args = ocp.args.PyTreeRestore(
                    item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target),
                    partial_restore=True)
            else:
                args = ocp.args.StandardRestore(_abstract(like))
            return self.manager.restore(step, args=args)
        except Exception as e:  # orbax raises many types for unreadable or mismatched data
            raise CheckpointError(
                f"checkpoint {step} in {self.directory} cannot be restored ({type(e).__name__}: "
                f"{_one_line(str(e))[:300]}). It may be corrupt or from a different model/"
                f"config: delete {os.path.join(self.directory, str(step))} to fall back to an "
                "earlier one, or use a new --workdir") from e

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()


def _one_line(text: str) -> str:
    return " ".join(text.split())
