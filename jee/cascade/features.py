"""What cascade policies decide from and are scored with: per-model features and path outcomes.

After each model of a cascade has been run once over a split (offline), ``CascadeData`` holds
every model's features, correctness and cost. A policy's outcome for an example is the path it
took (``jee.cascade.graph``); ``PathOutcomes`` restates the data per path (correct when the
path's last model is, costing the sum of its models) so that the early-exit metrics, budget
picks and plots apply unchanged with paths in the place of exits.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jee.cascade.graph import CascadeGraph
from jee.policy.features import Outcomes, exit_features, topk_correct
from jee.policy.oracle import oracle_exits

FEATURE_NAMES: tuple[str, ...] = ("max_prob", "margin", "entropy", "agrees_root",
                                  "root_max_prob", "root_margin", "root_entropy")
# The learned routing policy's feature sets: "history" adds the rest of the root's softmax
# statistics. The report fits both and keeps the better out of fold (``cascade_report``).
FEATURE_SETS: dict[str, tuple[str, ...]] = {"basic": FEATURE_NAMES[:5],
                                            "history": FEATURE_NAMES}


def cascade_features(logits: jax.Array, root_logits: jax.Array) -> jax.Array:
    """Features ``[..., F]`` (order of ``FEATURE_NAMES``) of a model's ``logits [..., C]``.

    The first three are the model's own softmax statistics (as for early exits). Every path
    starts at model 0 (the root), so its outputs are known wherever a decision is taken:
    whether this model's top class agrees with the root's, and the root's top probability,
    margin and entropy. At the root itself agreement is 1 and the root's statistics are its own.
    """
    no_conf = jnp.zeros(logits.shape[:-1], jnp.float32)
    own = exit_features(logits, no_conf)[..., :3]
    root = exit_features(root_logits, no_conf)[..., :3]
    agrees = jnp.argmax(logits, axis=-1) == jnp.argmax(root_logits, axis=-1)
    return jnp.concatenate([own, agrees[..., None].astype(jnp.float32), root], axis=-1)


def feature_columns(names) -> tuple[int, ...]:
    """The columns of ``FEATURE_NAMES`` holding ``names``, in their order."""
    unknown = [n for n in names if n not in FEATURE_NAMES]
    if unknown or not names:
        raise ValueError(f"unknown cascade features {unknown or names}; choose from "
                         f"{list(FEATURE_NAMES)}")
    return tuple(FEATURE_NAMES.index(n) for n in names)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class CascadeData(Outcomes):
    """The outcomes of stopping after each model M of a cascade, for one split: its features,
    its correctness and its cost (relative to the most expensive model)."""

    @property
    def num_models(self) -> int:
        return self.num_exits


@jax.jit
def _arrays(logits, labels):
    features = cascade_features(logits, jnp.broadcast_to(logits[0], logits.shape))
    return (features, topk_correct(logits, labels[None, :], 1),
            topk_correct(logits, labels[None, :], 5))


def cascade_data(logits, labels, costs) -> CascadeData:
    """From every model's ``logits [M, N, C]`` on a split, ``labels [N]`` and ``costs [M]``
    (any unit: they are divided by the largest)."""
    logits = jnp.asarray(logits, jnp.float32)
    labels = jnp.asarray(labels)
    costs = np.asarray(costs, np.float64)
    if logits.ndim != 3 or labels.shape != logits.shape[1:2]:
        raise ValueError(f"expected logits [M,N,C] and labels [N]; got {logits.shape}, "
                         f"{labels.shape}")
    if costs.shape != logits.shape[:1] or np.any(costs <= 0):
        raise ValueError(f"need one positive cost per model ({logits.shape[0]}), got {costs}")
    features, correct, correct_top5 = _arrays(logits, labels)
    return CascadeData(features, correct, correct_top5,
                       jnp.asarray(costs / costs.max(), jnp.float32))


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class PathOutcomes(Outcomes):
    """The outcomes of every path P of a graph: correct when the path's last model is, costing
    the sum of its models, with the models' features [M, N, F] that routing policies read.
    Paths play the part of exits in ``jee.policy.metrics`` and ``jee.policy.sweeps``."""


def path_outcomes(data: CascadeData, graph: CascadeGraph) -> PathOutcomes:
    if graph.num_models != data.num_models:
        raise ValueError(f"graph has {graph.num_models} models, data {data.num_models}")
    last = np.asarray([p[-1] for p in graph.paths()])
    costs = graph.path_costs(np.asarray(data.costs))
    return PathOutcomes(data.features, data.correct[last], data.correct_top5[last],
                        jnp.asarray(costs, jnp.float32))


def oracle_paths(outcomes: PathOutcomes) -> jax.Array:
    """Cheapest path ending correct per example, ``int32 [N]``; when no model is correct,
    path 0 (the root alone: nothing is gained by spending more)."""
    cheapest = oracle_exits(outcomes.correct, outcomes.costs)
    return jnp.where(jnp.any(outcomes.correct, axis=0), cheapest, 0).astype(jnp.int32)
