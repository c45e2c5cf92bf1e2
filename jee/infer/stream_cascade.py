"""Streaming network selection: the streaming driver (:mod:`jee.infer.stream_driver`) over a
cascade of models (the contract of :mod:`jee.infer.cascade`), a queue per model holding the
inputs, ids, model 0's logits and the models visited so far; it returns what the cascade
engines do."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jee.infer.cascade import Model, RoutingPolicy, check_models, next_nodes
from jee.infer.policy_args import argument_policy, policy_argument
from jee.infer.stream_driver import StreamDriver
from jee.infer.stream_programs import int_rows
from jee.infer.stream_sched import Scheduler


class StreamCascadeEngine(StreamDriver):
    """Streaming network selection over cascade ``models`` and a routing ``policy``.

    A step of model k evaluates a batch of its queue; rows routed to j > k are appended to
    queue j with model 0's logits, the others stop. ``run(batches, num_examples=None) ->
    (final int32 [N], logits float32 [N, C], visited bool [N, M])`` as
    :class:`~jee.infer.cascade.MaskedCascadeEngine` gives them; ``batches`` yields arrays.
    ``policy`` may be reassigned while the engine is idle: one of the same structure and
    shapes (another operating point of a sweep) compiles nothing (see :mod:`jee.infer.cascade`).
    """

    NO_VALUES = {"logits": jax.ShapeDtypeStruct((0,), jnp.float32),  # C unknown
                 "visited": jax.ShapeDtypeStruct((), jnp.int32)}

    def __init__(self, models: Sequence[Model], policy: RoutingPolicy, *, batch_size: int,
                 capacity: int | None = None, scheduler: Scheduler | None = None,
                 partial_sizes: Sequence[int] | None = None):
        self.models = check_models(models)
        if len(self.models) > 31:
            raise ValueError("the visited models are an int32 bit mask: at most 31 models")
        super().__init__(len(self.models), batch_size, capacity, scheduler, partial_sizes)
        self.policy = policy

    @property
    def policy(self) -> RoutingPolicy:
        return self._policy

    @policy.setter
    def policy(self, policy: RoutingPolicy) -> None:
        self._set_params(policy_argument(policy))
        self._policy = policy

    def _destinations(self, k):
        return range(k + 1, len(self.models))

    def _queue_specs(self, example, with_aux):
        if with_aux:
            raise ValueError("a cascade's routing policy takes no aux")
        root = jax.eval_shape(self.models[0], example)
        mask = int_rows(self.batch_size)
        later = {"h": example, "root": root, "visited": mask}
        values = {"logits": jax.ShapeDtypeStruct(root.shape, jnp.float32), "visited": mask}
        return [{"h": example}] + [later] * (len(self.models) - 1), values

    def _kernel(self, k, rows, params):
        num_nodes = len(self.models)
        logits = self.models[k](rows["h"])
        root = logits if k == 0 else rows["root"]
        route = next_nodes(argument_policy(params), k, num_nodes, logits, root)
        visited = (rows["visited"] if k else jnp.zeros_like(route)) | (1 << k)
        onward = {"h": rows["h"], "ids": rows["ids"], "root": root, "visited": visited}
        sends = {j: (onward, route == j) for j in range(k + 1, num_nodes)}
        # A route outside (k, M) reaches no queue: the row keeps model k's result, as in
        # the batch engines.
        stop = (route <= k) | (route >= num_nodes)
        return stop, None, {"logits": logits.astype(jnp.float32), "visited": visited}, sends

    def run(self, batches: Iterable, num_examples: int | None = None
            ) -> tuple[jax.Array, jax.Array, jax.Array]:
        out = self._run(batches, num_examples)
        bits = np.arange(len(self.models), dtype=np.int32)
        visited = (out["visited"][:, None] >> bits) & 1
        return (jax.device_put(out["exit"]), jax.device_put(out["logits"]),
                jax.device_put(visited.astype(bool)))
