"""Exit heads: a classifier branch and a confidence branch on a block's features.

The three EENets exit types:
- ``plain``: flatten -> dense. Sized from the block's real output shape, so it also works
  after downsampling blocks (where the reference implementation breaks);
- ``pool``: global average pool -> dense;
- ``bnpool``: BatchNorm -> ReLU -> global average pool -> dense.

Both branches read the same pooled/flattened features but have their own parameters. Heads
return the confidence as a logit; ``jax.nn.sigmoid`` gives the EENet confidence and
``jax.nn.log_sigmoid`` the log-probabilities the losses need without underflow.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jee.models.resnet import Shape, batch_norm, num_features

EXIT_TYPES = ("plain", "pool", "bnpool")
# What the confidence branch reads: the head's features (the paper), or also three readings
# of the classifier's own softmax (max-prob, top-1 minus top-2, entropy / log C), which a
# linear branch over the features cannot compute but which say most about being right.
CONFIDENCE_INPUTS = ("features", "features+softmax")
SOFTMAX_STATS = 3


def softmax_stats(logits: jax.Array) -> jax.Array:
    """``[B, 3]``: max-prob, top-1 minus top-2 probability, entropy / log C, without
    gradient (the confidence must not bend the classifier)."""
    logits = jax.lax.stop_gradient(logits.astype(jnp.float32))
    p = jax.nn.softmax(logits, axis=-1)
    top = jax.lax.top_k(p, min(2, p.shape[-1]))[0]
    second = top[:, 1] if p.shape[-1] > 1 else jnp.zeros_like(top[:, 0])
    entropy = -jnp.sum(p * jax.nn.log_softmax(logits, axis=-1), axis=-1)
    return jnp.stack([top[:, 0], top[:, 0] - second,
                      entropy / jnp.log(max(p.shape[-1], 2))], axis=-1)


class ExitHead(nnx.Module):
    def __init__(self, exit_type: str, in_shape: Shape, num_classes: int, *, dtype: Any,
                 rngs: nnx.Rngs, confidence_inputs: str = "features"):
        if exit_type not in EXIT_TYPES:
            raise ValueError(f"unknown exit type {exit_type!r}; choose one of {EXIT_TYPES}")
        if confidence_inputs not in CONFIDENCE_INPUTS:
            raise ValueError(f"unknown model.confidence_inputs {confidence_inputs!r}; choose one "
                             f"of {CONFIDENCE_INPUTS}")
        self.exit_type = exit_type
        self.confidence_inputs = confidence_inputs
        channels = in_shape[-1]
        self.norm = batch_norm(channels, dtype=dtype, rngs=rngs) if exit_type == "bnpool" else None
        fan_in = num_features(in_shape) if exit_type == "plain" else channels
        self.classifier = nnx.Linear(fan_in, num_classes, dtype=dtype, rngs=rngs)
        self.confidence = nnx.Linear(fan_in, 1, dtype=dtype, rngs=rngs)
        # Its own layer rather than 3 more inputs of ``confidence``: optimisers that scale a
        # kernel's step by its fan-in (jee.confidence_stage) would otherwise move these 3
        # weights as slowly as each of the thousands of feature weights.
        self.confidence_stats = (nnx.Linear(SOFTMAX_STATS, 1, use_bias=False, dtype=dtype,
                                            rngs=rngs)
                                 if confidence_inputs == "features+softmax" else None)

    def pooled(self, x: jax.Array, train: bool = False) -> jax.Array:
        if self.norm is not None:
            x = jax.nn.relu(self.norm(x, use_running_average=not train))
        if self.exit_type == "plain":
            return x.reshape(x.shape[0], -1)
        return jnp.mean(x, axis=(1, 2))

    def __call__(self, x: jax.Array, train: bool = False) -> tuple[jax.Array, jax.Array]:
        """Returns (logits [B, C] float32, confidence logit [B] float32)."""
        z = self.pooled(x, train)
        logits = self.classifier(z).astype(jnp.float32)
        conf_logit = self.confidence(z)[:, 0].astype(jnp.float32)
        if self.confidence_stats is not None:
            stats = softmax_stats(logits).astype(z.dtype)
            conf_logit = conf_logit + self.confidence_stats(stats)[:, 0].astype(jnp.float32)
        return logits, conf_logit
