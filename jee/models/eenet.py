"""The early-exit network: a backbone cut into segments, one exit head after each segment.

Segment k runs the blocks between exit k-1 and exit k (segment 0 starts with the stem) and
ends in exit head k; the last segment ends in the backbone's own classifier, which also gets
a confidence branch. Two forward modes, both pure under ``jax.jit``:

- ``__call__`` (masked batch mode): one pass, every exit for every example:
  logits ``[E, B, C]`` and confidence logits ``[E, B]``;
- ``segment(k, h)``: one segment on any batch size, returning ``(h_next, logits, conf_logit)``,
  so inference engines can run each segment on just the examples still alive.

``backbone_logits`` is the plain network without any exit head, the denominator of every
speed-up. Hot paths use ``split`` once and the pure functions ``forward`` / ``apply_segment``
over ``(graphdef, state)``: ``nnx.jit`` would re-walk the object graph on every call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jee.models.cost import CostTable, count_module_macs
from jee.models.exits import ExitHead
from jee.models.init import host_init
from jee.models.placement import check_exit_blocks, place_exits
from jee.models.resnet import Backbone, Shape, build_backbone


class EarlyExitNet(nnx.Module):
    def __init__(self, backbone: Backbone, exit_blocks: Sequence[int], exit_type: str,
                 num_classes: int, input_shape: Shape, *, dtype: Any = jnp.float32,
                 rngs: nnx.Rngs, confidence_inputs: str = "features"):
        self.backbone = backbone
        self.exit_blocks = check_exit_blocks(exit_blocks, backbone.num_blocks)
        self.exit_type = exit_type
        self.num_classes = num_classes
        self.input_shape = tuple(input_shape)
        shapes = backbone.block_shapes
        self.exits = nnx.List([ExitHead(exit_type, shapes[b], num_classes, dtype=dtype, rngs=rngs,
                                        confidence_inputs=confidence_inputs)
                               for b in self.exit_blocks])
        self.final = ExitHead("pool", backbone.feature_shape, num_classes, dtype=dtype, rngs=rngs)

    @property
    def num_exits(self) -> int:
        """Early exits plus the final exit."""
        return len(self.exit_blocks) + 1

    def segment_blocks(self, k: int) -> tuple[int, int]:
        """Block range [start, stop) of segment k."""
        start = self.exit_blocks[k - 1] + 1 if k > 0 else 0
        stop = self.exit_blocks[k] + 1 if k < len(self.exit_blocks) else self.backbone.num_blocks
        return start, stop

    def segment(self, k: int, h: jax.Array, train: bool = False, exit_grad_scale: float = 1.0
                ) -> tuple[jax.Array | None, jax.Array, jax.Array]:
        """Runs segment k on ``h`` (the image for k == 0): (h_next | None, logits, conf_logit).

        ``exit_grad_scale`` scales the gradient an early exit head sends into the backbone
        (forward values unchanged; 0 detaches the head's input)."""
        h = self.backbone.run(h, *self.segment_blocks(k), train=train)
        if k < len(self.exit_blocks):
            logits, conf = self.exits[k](scale_gradient(h, exit_grad_scale), train)
            return h, logits, conf
        logits, conf = self.final(self.backbone.head_input(h, train), train)
        return None, logits, conf

    def __call__(self, x: jax.Array, train: bool = False, exit_grad_scale: float = 1.0
                 ) -> tuple[jax.Array, jax.Array]:
        """Masked batch mode: logits [E, B, C] and confidence logits [E, B] for every exit."""
        all_logits, all_conf = [], []
        h = x
        for k in range(self.num_exits):
            h, logits, conf = self.segment(k, h, train, exit_grad_scale)
            all_logits.append(logits)
            all_conf.append(conf)
        return jnp.stack(all_logits), jnp.stack(all_conf)

    def backbone_logits(self, x: jax.Array, train: bool = False) -> jax.Array:
        """The plain backbone: no exit heads, no confidence; logits [B, C]."""
        h = self.backbone.run(x, 0, self.backbone.num_blocks, train)
        z = self.final.pooled(self.backbone.head_input(h, train), train)
        return self.final.classifier(z).astype(jnp.float32)

    def costs(self) -> CostTable:
        return measure_costs(self.backbone, self.exits, self.final, self.exit_blocks,
                             self.input_shape)


def scale_gradient(x: jax.Array, scale: float) -> jax.Array:
    """``x`` in the forward pass; ``scale`` times its gradient in the backward pass."""
    if scale == 1.0:
        return x
    frozen = jax.lax.stop_gradient(x)
    if scale == 0.0:
        return frozen
    # frozen + s * (x - frozen): exactly x forward (x - frozen is 0), s * dx backward.
    return frozen + scale * (x - frozen)


def _block_costs(backbone: Backbone, input_shape: Shape) -> tuple[int, list[int]]:
    stem = count_module_macs(backbone.stem, (1, *input_shape))
    shapes = [backbone.stem.out_shape] + backbone.block_shapes
    blocks = [count_module_macs(b, (1, *shapes[i])) for i, b in enumerate(backbone.blocks)]
    return stem, blocks


def measure_costs(backbone: Backbone, exits: Sequence[ExitHead], final: ExitHead,
                  exit_blocks: Sequence[int], input_shape: Shape) -> CostTable:
    stem, blocks = _block_costs(backbone, input_shape)
    shapes = backbone.block_shapes
    heads = [count_module_macs(e, (1, *shapes[b])) for e, b in zip(exits, exit_blocks, strict=True)]
    feat = (1, *backbone.feature_shape)
    cls = count_module_macs(final, feat, method=lambda m, x: m.classifier(m.pooled(x)))
    conf = count_module_macs(final, feat, method=lambda m, x: m.confidence(m.pooled(x)))
    return CostTable(stem, tuple(blocks), tuple(heads), cls, conf, tuple(exit_blocks))


def build_eenet(arch: str, input_shape: Shape, num_classes: int, *, num_exits: int = 0,
                placement: str = "pareto", exit_blocks: Sequence[int] = (),
                exit_type: str = "pool", width: int = 0, dtype: Any = jnp.float32,
                seed: int = 0, confidence_inputs: str = "features") -> EarlyExitNet:
    """Builds an early-exit network; explicit ``exit_blocks`` win over ``num_exits``.

    Parameters are drawn on the host (see ``jee.models.init``): building is instant and needs
    no compilation, whatever the depth.
    """
    def make_backbone(rngs):
        return build_backbone(arch, input_shape, width=width, dtype=dtype, rngs=rngs)

    backbone = nnx.eval_shape(lambda: make_backbone(nnx.Rngs(seed)))
    if exit_blocks:
        blocks = check_exit_blocks(exit_blocks, backbone.num_blocks)
    elif num_exits:
        stem, block_macs = _block_costs(backbone, input_shape)
        # A table without heads: its backbone total includes the pooled classifier
        # (features x classes MACs), the same whole that relative costs use.
        classifier = backbone.feature_shape[-1] * num_classes
        cumulative = CostTable(stem, tuple(block_macs), (), classifier, 0, ()).cumulative_blocks()
        blocks = place_exits(cumulative, num_exits, placement)
    else:
        blocks = ()

    def make():
        rngs = nnx.Rngs(seed)
        return EarlyExitNet(make_backbone(rngs), blocks, exit_type, num_classes, input_shape,
                            dtype=dtype, rngs=rngs, confidence_inputs=confidence_inputs)

    graphdef, abstract_state = nnx.split(nnx.eval_shape(make))
    return nnx.merge(graphdef, host_init(abstract_state, seed))


# ---- pure functions over the split model (what jit-compiled hot paths call) ----

def split(model: EarlyExitNet):
    """(graphdef, params, batch_stats): trainable parameters apart from BatchNorm statistics."""
    return nnx.split(model, nnx.Param, nnx.BatchStat)


def forward(graphdef, params, batch_stats, x: jax.Array, train: bool = False,
            exit_grad_scale: float = 1.0):
    """Masked batch mode; returns (logits [E,B,C], conf_logit [E,B], new batch_stats)."""
    # copy=True: fresh Variables owned by the current trace, so BatchNorm may update them
    # even when the caller's state was created outside (e.g. inside jax.grad under jax.jit).
    model = nnx.merge(graphdef, params, batch_stats, copy=True)
    logits, conf = model(x, train, exit_grad_scale)
    return logits, conf, nnx.state(model, nnx.BatchStat)


def apply_segment(graphdef, params, batch_stats, k: int, h: jax.Array):
    """Inference-mode segment k: (h_next | None, logits [b,C], conf_logit [b])."""
    model = nnx.merge(graphdef, params, batch_stats)
    return model.segment(k, h, False)


def apply_backbone(graphdef, params, batch_stats, x: jax.Array) -> jax.Array:
    model = nnx.merge(graphdef, params, batch_stats)
    return model.backbone_logits(x, False)


def count_params(tree) -> int:
    return int(sum(x.size for x in jax.tree.leaves(tree)))
