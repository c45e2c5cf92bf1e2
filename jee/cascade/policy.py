"""Routing policies of a cascade: after model k, stop or pick which later model runs next.

A node with successors s_1 < ... < s_m offers the options [stop, s_1, ..., s_m]. As in the
paper, the choice is a chain of binary decisions: d = 0 is "stop?", d = i is "go to s_i
rather than further?"; the first decision that says yes picks its option, and s_m is taken
when none does. Subclasses give ``decision(k, d, features) -> bool [b]``.

The same ``route`` serves the compiled engine online (``jee.infer.cascade``: it is given the
model's logits and the root model's) and the offline simulation over a split
(``paths_from_features``), so the two cannot drift apart. Policies are frozen pytree
dataclasses: batched over a sweep with a leading axis and indexed with ``policy[i]``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jee.cascade.features import FEATURE_NAMES, FEATURE_SETS, cascade_features, feature_columns
from jee.cascade.graph import CascadeGraph
from jee.infer.cascade import STOP
from jee.policy.bolukbasi import MODE_NAMES, LinearDecisions, apply_mode, linear_score
from jee.policy.decisions import first_exit


class ChainPolicy:
    """Mixin: ``route`` / ``paths_from_features`` from a per-node chain of ``decision``s."""

    graph: CascadeGraph

    def decision(self, k: int, d: int, features: jax.Array) -> jax.Array:
        raise NotImplementedError

    def route_features(self, k: int, features: jax.Array) -> jax.Array:
        """Next node ``int32 [b]`` (``STOP`` = -1) for rows at node k with ``features [b, F]``."""
        successors = self.graph.successors[k]
        if not successors:
            return jnp.full(features.shape[:1], STOP, jnp.int32)
        takes = [self.decision(k, d, features) for d in range(len(successors))]
        takes.append(jnp.ones(features.shape[:1], bool))  # first_exit forces the last anyway
        options = jnp.asarray((STOP, *successors), jnp.int32)
        return options[first_exit(jnp.stack(takes))]

    def route(self, k: int, logits: jax.Array, root_logits: jax.Array) -> jax.Array:
        """The engine's contract: next node from model k's and the root's ``logits [b, C]``."""
        return self.route_features(k, cascade_features(logits, root_logits))

    def paths_from_features(self, features: jax.Array) -> jax.Array:
        """Path index ``int32 [N]`` (into ``graph.paths()``) from ``features [M, N, F]``."""
        return _paths(self, features)

    # Paths play the exits in the shared sweeps and metrics (``jee.policy.sweeps``).
    def exits_from_features(self, features: jax.Array) -> jax.Array:
        return self.paths_from_features(features)

    def __getitem__(self, i):
        return jax.tree.map(lambda leaf: leaf[i], self)


@jax.jit
def _paths(policy: ChainPolicy, features: jax.Array) -> jax.Array:
    at = jnp.zeros(features.shape[1], jnp.int32)
    visited = jnp.zeros(features.shape[1], jnp.int32)
    for k in range(policy.graph.num_models):
        here = at == k
        visited = visited | (here.astype(jnp.int32) << k)
        at = jnp.where(here, policy.route_features(k, features[k]), at)
    return jnp.asarray(policy.graph.path_index_table())[visited]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class LearnedCascadePolicy(LinearDecisions, ChainPolicy):
    """Decision d at node k: ((f - mean_k) / scale_k) . coef[k, d] + bias[k, d] >= 0, unless
    ``mode[k, d]`` fixes it (always / never), f the columns ``features`` of the cascade's
    features. coef [M, D, F]; bias, mode [M, D]; mean, scale [M, F]; lam []. D is the
    largest number of decisions at a node; unused slots are ignored.
    """

    graph: CascadeGraph = jax.tree.static()
    name: str = jax.tree.static(default="bolukbasi")
    features: tuple[str, ...] = jax.tree.static(default=FEATURE_SETS["basic"])

    def decision(self, k, d, features):
        f = features[..., list(feature_columns(self.features))]
        z = (f - self.mean[k]) / self.scale[k]
        return apply_mode(self.mode[k, d], linear_score(z, self.coef[k, d], self.bias[k, d]) >= 0)

    @property
    def params(self) -> dict[str, Any]:
        counts = [len(s) for s in self.graph.successors]
        mode = np.asarray(self.mode).tolist()
        return {
            "lambda": float(self.lam),
            "features": list(self.features),
            "modes": [[MODE_NAMES[m] for m in mode[k][:n]] for k, n in enumerate(counts)],
            "coef": [np.asarray(self.coef[k, :n], np.float64).tolist()
                     for k, n in enumerate(counts)],
            "bias": [np.asarray(self.bias[k, :n], np.float64).tolist()
                     for k, n in enumerate(counts)],
            "mean": np.asarray(self.mean, np.float64).tolist(),
            "scale": np.asarray(self.scale, np.float64).tolist(),
        }


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ThresholdCascadePolicy(ChainPolicy):
    """The classic confidence cascade: stop when ``feature`` is at or above ``threshold`` (at
    or below it when ``above`` is False), else go to the next model (the cheapest successor)."""

    threshold: jax.Array
    graph: CascadeGraph = jax.tree.static()
    feature: str = jax.tree.static(default="max_prob")
    above: bool = jax.tree.static(default=True)
    name: str = jax.tree.static(default="max_prob")

    def decision(self, k, d, features):
        if d > 0:
            return jnp.ones(features.shape[:1], bool)
        value = features[:, FEATURE_NAMES.index(self.feature)]
        return value >= self.threshold if self.above else value <= self.threshold

    @property
    def params(self) -> dict[str, Any]:
        return {"feature": self.feature, "threshold": float(self.threshold)}


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class FixedPathPolicy(ChainPolicy):
    """Every example takes ``path`` (a path of the graph): the cascade's constant points."""

    graph: CascadeGraph = jax.tree.static()
    path: tuple[int, ...] = jax.tree.static(default=(0,))
    name: str = jax.tree.static(default="fixed_path")

    def decision(self, k, d, features):
        successors = self.graph.successors[k]
        position = self.path.index(k) if k in self.path else len(self.path) - 1
        nxt = self.path[position + 1] if position + 1 < len(self.path) else STOP
        option = STOP if d == 0 else successors[d - 1]
        return jnp.full(features.shape[:1], option == nxt)

    @property
    def params(self) -> dict[str, Any]:
        return {"path": list(self.path)}
