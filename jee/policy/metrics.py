"""Scores of a vector of exits taken, and the JSON-ready report row of a policy.

``exit_metrics`` is jit-able and works on a batch of exit vectors ``[..., N]`` (a whole sweep
at once); ``report_row`` / ``report_rows`` move the result to plain Python for reports.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jee.policy.features import ExitData


def exit_metrics(exits: jax.Array, data: ExitData) -> dict[str, jax.Array]:
    """accuracy, top5, relative_cost, speedup (1 / relative_cost), exit_fractions [..., E].

    ``exits`` int ``[..., N]``: the exit each example of ``data`` takes.
    """
    exits = jnp.asarray(exits, jnp.int32)
    num_exits = data.num_exits
    one_hot = jax.nn.one_hot(exits, num_exits, dtype=jnp.float32)  # [..., N, E]
    accuracy = jnp.mean(jnp.sum(one_hot * data.correct.T, axis=-1), axis=-1)
    top5 = jnp.mean(jnp.sum(one_hot * data.correct_top5.T, axis=-1), axis=-1)
    exit_fractions = jnp.mean(one_hot, axis=-2)
    relative_cost = exit_fractions @ data.costs.astype(jnp.float32)
    return {
        "accuracy": accuracy,
        "top5": top5,
        "relative_cost": relative_cost,
        "speedup": 1.0 / relative_cost,
        "exit_fractions": exit_fractions,
    }


_exit_metrics_jit = jax.jit(exit_metrics)


def _row(name: str, params: dict[str, Any], metrics: dict[str, np.ndarray]) -> dict[str, Any]:
    return {
        "name": name,
        "params": params,
        "accuracy": float(metrics["accuracy"]),
        "top5": float(metrics["top5"]),
        "relative_cost": float(metrics["relative_cost"]),
        "speedup": float(metrics["speedup"]),
        "exit_fractions": [float(f) for f in metrics["exit_fractions"]],
    }


def report_row(policy, exits: jax.Array, data: ExitData) -> dict[str, Any]:
    """``{"name", "params", "accuracy", "top5", "relative_cost", "speedup", "exit_fractions"}``
    in plain Python types for one policy and the exits ``[N]`` it took on ``data``."""
    metrics = jax.device_get(_exit_metrics_jit(exits, data))
    return _row(policy.name, policy.params, metrics)


def report_rows(policies, exits: jax.Array, data: ExitData) -> list[dict[str, Any]]:
    """Rows for a batched policy (``policies[i]``) and its exits ``[G, N]``, with one
    device-to-host transfer for the whole batch."""
    metrics = jax.device_get(_exit_metrics_jit(exits, data))
    policies = jax.device_get(policies)
    return [
        _row(policies[i].name, policies[i].params, {k: v[i] for k, v in metrics.items()})
        for i in range(exits.shape[0])
    ]
