"""Evaluation of an early-exit network over a split, in masked batch mode.

``evaluate`` reduces on device to a handful of sums per batch (per-exit correct counts, the
exit each example takes at the EENet threshold, its cost) and reads them once at the end:
per-exit accuracy, the exit distribution and the mean relative cost at threshold T.
``collect_outputs`` returns every exit's logits and confidences for the policy fitting.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from jee import data as data_lib
from jee import sharding
from jee.models import forward
from jee.policy.decisions import first_exit


def threshold_exits(conf_logit: jax.Array, threshold: float) -> jax.Array:
    """EENet rule: first early exit whose sigmoid confidence >= T, else the last exit. [B]."""
    return first_exit(jax.nn.sigmoid(conf_logit) >= threshold)


def _device_batches(ds, split: str, batch_size: int, mesh):
    """This process's rows of every (padded, masked) batch of a split, as global arrays."""
    for local in data_lib.eval_batches(ds, split, batch_size=batch_size,
                                       process_index=jax.process_index(),
                                       process_count=jax.process_count()):
        yield sharding.put_batch(mesh, local)


@functools.partial(jax.jit, static_argnums=(0, 5))
def _eval_sums(graphdef, params, batch_stats, batch, costs, threshold):
    logits, conf, _ = forward(graphdef, params, batch_stats, batch["image"], False)
    mask = batch["mask"].astype(jnp.float32)
    correct = (jnp.argmax(logits, -1) == batch["label"][None]).astype(jnp.float32)  # [E, B]
    exits = threshold_exits(conf, threshold)
    onehot = jax.nn.one_hot(exits, logits.shape[0], dtype=jnp.float32)             # [B, E]
    taken_correct = jnp.sum(onehot.T * correct, axis=0)
    return {
        "count": jnp.sum(mask),
        "exit_correct": jnp.sum(correct * mask, axis=1),
        "exit_counts": jnp.sum(onehot * mask[:, None], axis=0),
        "correct": jnp.sum(taken_correct * mask),
        "cost": jnp.sum((onehot @ costs) * mask),
    }


def evaluate(graphdef, params, batch_stats, ds, split: str, *, batch_size: int, costs,
             threshold: float, mesh) -> dict:
    costs = jnp.asarray(costs, jnp.float32)
    total = None
    for batch in _device_batches(ds, split, batch_size, mesh):
        sums = _eval_sums(graphdef, params, batch_stats, batch, costs, threshold)
        total = sums if total is None else jax.tree.map(jnp.add, total, sums)
    total = jax.tree.map(np.asarray, total)
    n = max(float(total["count"]), 1.0)
    return {
        "accuracy": float(total["correct"]) / n,
        "exit_accuracy": (total["exit_correct"] / n).tolist(),
        "final_accuracy": float(total["exit_correct"][-1]) / n,
        "exit_fractions": (total["exit_counts"] / n).tolist(),
        "relative_cost": float(total["cost"]) / n,
        "num_examples": int(total["count"]),
    }


@functools.partial(jax.jit, static_argnums=(0,))
def _outputs(graphdef, params, batch_stats, images):
    logits, conf, _ = forward(graphdef, params, batch_stats, images, False)
    return logits, conf


def collect_outputs(graphdef, params, batch_stats, ds, split: str, *, batch_size: int, mesh):
    """Every exit's outputs over a split: logits [E,N,C], conf_logit [E,N], labels [N] (numpy).

    Gathered across processes, in split order, so every process holds the same arrays.
    """
    chunks = []
    for batch in _device_batches(ds, split, batch_size, mesh):
        logits, conf = _outputs(graphdef, params, batch_stats, batch["image"])
        chunks.append((logits, conf, batch["label"], batch["mask"]))
    if jax.process_count() > 1:
        chunks = [tuple(multihost_utils.process_allgather(a, tiled=True) for a in c)
                  for c in chunks]
    logits = np.concatenate([np.asarray(c[0]) for c in chunks], axis=1)
    conf = np.concatenate([np.asarray(c[1]) for c in chunks], axis=1)
    labels = np.concatenate([np.asarray(c[2]) for c in chunks])
    mask = np.concatenate([np.asarray(c[3]) for c in chunks]).astype(bool)
    return logits[:, mask], conf[:, mask], labels[mask]
