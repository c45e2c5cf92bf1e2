"""Network selection (Bolukbasi et al. 2017): on-device re-batching for a cascade of models.

A cascade is M separately trained models ordered cheapest first, ``models[k](x) -> logits
[b, C]``, each a pure function closing over its weights that reads the original inputs and
works at any leading batch size. Every example starts at model 0; after model k a policy
either stops (the example keeps model k's prediction) or names a later model j > k to
evaluate next, possibly jumping over models (a DAG whose edges only go forward).

Routing saves the FLOPs of the models an example never visits, but those savings become
wall-clock time only if the skipped rows are not computed at all: a masked evaluation still
runs every model on the whole batch. So, as :mod:`jee.infer.bucketed` does for the exits of one
network, the rows routed to model k are gathered, in their original order, into the smallest
bucket of a static ladder that holds them, ``lax.switch`` picks that bucket on device (no host
sync, no recompilation as the counts change) and the results are scattered back to the original
rows. Each model sits in its own ``lax.cond`` on "anyone routed here?", so a model that nobody
reaches costs nothing. Unlike the exits of one network, an idle model says nothing about later
ones (rows may jump over it), hence one cond per model rather than nested conds.

Policy contract (duck-typed, pure, jit-able, ``k`` a static int)::

    policy.route(k, logits_k [b, C], root_logits [b, C]) -> int [b]

returns :data:`STOP` or the next model's index j with k < j < M. ``root_logits`` are model 0's
logits for the same rows (equal to ``logits_k`` at k = 0). The engines never ask about the last
model, where every row stops. Routes are trusted, not checked: since the models run in index
order, a value outside (k, M) is never reached, so the row keeps model k's result exactly as
if the policy had said :data:`STOP`.

The engines pass the policy to their compiled programs as an argument, not as constants: a
policy that is a pytree of arrays (those of :mod:`jee.cascade.policy` are) can be swapped for
another of the same structure and shapes, say another operating point, without compiling
anything (``engine.policy = other``). Any other policy object is compiled in, once per object.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import jax
import jax.numpy as jnp
from jax import lax

from jee.infer.bucketed import _drop_targets, _scatter, _take, survivor_order
from jee.infer.ladder import Ladder, resolve_ladder
from jee.infer.policy_args import argument_policy, policy_argument

STOP = -1

Model = Callable[[jax.Array], jax.Array]
CascadeResult = tuple[jax.Array, jax.Array, jax.Array]
# visit(k, here, root, pending, logits) -> (pending, logits): evaluate model k on the rows in
# ``here``, given model 0's logits ``root``, and update their next model and logits.
Visit = Callable[[int, jax.Array, jax.Array, jax.Array, jax.Array],
                 tuple[jax.Array, jax.Array]]


class RoutingPolicy(Protocol):
    def route(self, k: int, logits: jax.Array, root_logits: jax.Array) -> jax.Array: ...


def check_models(models: Sequence[Model]) -> tuple[Model, ...]:
    models = tuple(models)
    if not models:
        raise ValueError("a cascade needs at least one model")
    return models


def next_nodes(policy: RoutingPolicy, k: int, num_nodes: int, logits: jax.Array,
               root_logits: jax.Array) -> jax.Array:
    """Int32 ``[b]``: the model each row goes to after model k (:data:`STOP` at the last)."""
    if k == num_nodes - 1:
        return jnp.full(logits.shape[0], STOP, jnp.int32)
    return jnp.asarray(policy.route(k, logits, root_logits)).astype(jnp.int32)


def _walk(models: tuple[Model, ...], policy: RoutingPolicy, x: jax.Array,
          visit: Visit) -> CascadeResult:
    """Run model 0 on every row, then ``visit`` models 1 .. M-1 in order.

    Edges only go forward, so when model k's turn comes every row routed to it is known.
    """
    num_nodes, batch = len(models), x.shape[0]
    root = models[0](x)
    pending = next_nodes(policy, 0, num_nodes, root, root)
    # Each visit overwrites the logits of the rows it evaluates, so a row ends with those of
    # the last model it visited, which is the one it stopped at.
    final, logits = jnp.zeros(batch, jnp.int32), root.astype(jnp.float32)
    visited = [jnp.ones(batch, bool)]
    for k in range(1, num_nodes):
        here = pending == k
        pending, logits = visit(k, here, root, pending, logits)
        final = jnp.where(here, k, final)
        visited.append(here)
    return final, logits, jnp.stack(visited, axis=1)


def _bucket_branch(model: Model, policy: RoutingPolicy, k: int, num_nodes: int, size: int,
                   batch: int):
    def branch(x, root, order, count, pending, logits):
        idx = order[:size]
        valid = jnp.arange(size) < count
        logits_b = model(_take(x, idx))
        route = next_nodes(policy, k, num_nodes, logits_b, _take(root, idx))
        # Padding slots (copies of row 0) get distinct out-of-range targets: dropped, and the
        # scatter indices stay unique.
        targets = _drop_targets(idx, valid, size, batch)[:size]
        return (_scatter(pending, targets, route),
                _scatter(logits, targets, logits_b.astype(jnp.float32)))
    return branch


def cascade_forward(models: Sequence[Model], policy: RoutingPolicy, x: jax.Array, *,
                    ladder: Ladder = None) -> CascadeResult:
    """``(final int32 [B], logits float32 [B, C], visited bool [B, M])``; pure, wrap in jit.

    ``final[n]`` is the model whose prediction row n ends with, ``logits[n]`` that model's
    logits and ``visited[n, k]`` whether model k was evaluated on row n. Model 0 runs on the
    whole batch, every later model only on the bucket of rows routed to it. ``ladder``: sizes,
    a function of the batch size or ``None`` for :func:`~jee.infer.ladder.make_ladder`'s
    default, fitted to the batch size either way.
    """
    models = check_models(models)
    num_nodes, batch = len(models), x.shape[0]
    sizes = resolve_ladder(ladder, batch)
    ladder_array = jnp.asarray(sizes, jnp.int32)

    def visit(k, here, root, pending, logits):
        order, count = survivor_order(here)
        branches = [_bucket_branch(models[k], policy, k, num_nodes, s, batch) for s in sizes]

        def run(order, count, pending, logits):
            which = jnp.sum(ladder_array < count)  # the smallest size holding count rows
            return lax.switch(which, branches, x, root, order, count, pending, logits)

        def nobody_here(order, count, pending, logits):
            return pending, logits

        return lax.cond(count > 0, run, nobody_here, order, count, pending, logits)

    return _walk(models, policy, x, visit)


def masked_cascade_forward(models: Sequence[Model], policy: RoutingPolicy,
                           x: jax.Array) -> CascadeResult:
    """The reference of :func:`cascade_forward`: same outputs, but every model runs on the
    whole batch and the routing only selects results, so nothing is saved."""
    models = check_models(models)
    num_nodes = len(models)

    def visit(k, here, root, pending, logits):
        logits_k = models[k](x)
        route = next_nodes(policy, k, num_nodes, logits_k, root)
        return (jnp.where(here, route, pending),
                jnp.where(here[:, None], logits_k.astype(jnp.float32), logits))

    return _walk(models, policy, x, visit)


class _CompiledPerShape:
    """Callable ``engine(x)``: ``forward(x, policy)`` jitted once per input shape and policy
    structure; ``policy`` may be reassigned (see the module doc). ``traces`` counts how often
    it was traced, an independent check on the jit cache."""

    def __init__(self, forward: Callable[[jax.Array, RoutingPolicy], CascadeResult],
                 policy: RoutingPolicy):
        self.traces = 0

        def traced(x, argument):
            self.traces += 1
            return forward(x, argument_policy(argument))
        self._fn = jax.jit(traced)
        self.policy = policy

    @property
    def policy(self) -> RoutingPolicy:
        return self._policy

    @policy.setter
    def policy(self, policy: RoutingPolicy) -> None:
        self._policy, self._argument = policy, policy_argument(policy)

    def __call__(self, x: jax.Array) -> CascadeResult:
        return self._fn(x, self._argument)

    def cache_size(self) -> int:
        """Compiled programs held (one per input shape and policy structure)."""
        return self._fn._cache_size()


class CascadeEngine(_CompiledPerShape):
    """:func:`cascade_forward` compiled once per input shape: ``engine(x)``, ``policy``,
    ``traces``, ``cache_size()``.

    ``ladder`` is a size sequence (fitted to each batch size), a function of the batch size
    returning one, or ``None`` for the default.
    """

    def __init__(self, models: Sequence[Model], policy: RoutingPolicy, *, ladder: Ladder = None):
        self.models = check_models(models)
        self.ladder = ladder
        super().__init__(lambda x, policy: cascade_forward(self.models, policy, x,
                                                           ladder=self.ladder), policy)


class MaskedCascadeEngine(_CompiledPerShape):
    """:func:`masked_cascade_forward` compiled once per input shape: ``engine(x)``,
    ``policy``, ``traces``, ``cache_size()``."""

    def __init__(self, models: Sequence[Model], policy: RoutingPolicy):
        self.models = check_models(models)
        super().__init__(lambda x, policy: masked_cascade_forward(self.models, policy, x),
                         policy)
