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


class ExitHead(nnx.Module):
    def __init__(self, exit_type: str, in_shape: Shape, num_classes: int, *, dtype: Any,
                 rngs: nnx.Rngs):
        if exit_type not in EXIT_TYPES:
            raise ValueError(f"unknown exit type {exit_type!r}; choose one of {EXIT_TYPES}")
        self.exit_type = exit_type
        channels = in_shape[-1]
        self.norm = batch_norm(channels, dtype=dtype, rngs=rngs) if exit_type == "bnpool" else None
        fan_in = num_features(in_shape) if exit_type == "plain" else channels
        self.classifier = nnx.Linear(fan_in, num_classes, dtype=dtype, rngs=rngs)
        self.confidence = nnx.Linear(fan_in, 1, dtype=dtype, rngs=rngs)

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
        return logits, conf_logit
