"""ResNet backbones as a stem plus an ordered list of residual blocks.

An exit can sit after any block, so a backbone is never a monolithic ``__call__``: the
early-exit network runs ``stem`` and then any contiguous range of ``blocks`` (a segment).
Every block knows the shape it produces, so exit heads can be sized at construction.

Families:
- CIFAR ResNets 6n+2 (He et al. 2016, section 4.2): 16/32/64 channels, basic blocks,
  projection shortcuts where the shape changes (as in the EENets reference code);
- ImageNet ResNets 18/34 (basic) and 50/101/152 (bottleneck, stride on the 3x3 conv);
- EENet-8: the small pre-activation network of the EENets paper for MNIST.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

Shape = tuple[int, int, int]  # H, W, C of one example

# He initialisation over fan-out, the usual choice for ReLU ResNets.
_conv_init = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")


def _down(size: int, stride: int) -> int:
    # Every strided layer here pads so that the output is ceil(in / stride), as in PyTorch.
    return -(-size // stride)


def conv(cin: int, cout: int, kernel: int, stride: int = 1, *, dtype: Any, rngs: nnx.Rngs,
         use_bias: bool = False) -> nnx.Conv:
    pad = (kernel - 1) // 2
    return nnx.Conv(cin, cout, (kernel, kernel), strides=stride, padding=((pad, pad), (pad, pad)),
                    use_bias=use_bias, dtype=dtype, kernel_init=_conv_init, rngs=rngs)


def batch_norm(channels: int, *, dtype: Any, rngs: nnx.Rngs) -> nnx.BatchNorm:
    # momentum 0.9 matches PyTorch's default running-average update (0.1).
    return nnx.BatchNorm(channels, momentum=0.9, epsilon=1e-5, dtype=dtype, rngs=rngs)


def _conv_bn_layers(block, specs, dtype, rngs) -> None:
    """Gives ``block`` ``conv{i}`` and ``bn{i}`` (from 1) for each ``(cin, cout, kernel,
    stride)`` of ``specs``: the main path of a residual block, in order."""
    for i, (cin, cout, kernel, stride) in enumerate(specs, 1):
        setattr(block, f"conv{i}", conv(cin, cout, kernel, stride, dtype=dtype, rngs=rngs))
        setattr(block, f"bn{i}", batch_norm(cout, dtype=dtype, rngs=rngs))


def _projection(cin: int, cout: int, stride: int, dtype, rngs):
    """(1x1 conv, BN) of the shortcut where the shape changes, else (None, None)."""
    if stride == 1 and cin == cout:
        return None, None
    return (conv(cin, cout, 1, stride, dtype=dtype, rngs=rngs),
            batch_norm(cout, dtype=dtype, rngs=rngs))


def _add_shortcut(block, x: jax.Array, y: jax.Array, ura: bool) -> jax.Array:
    if block.proj is not None:
        x = block.proj_bn(block.proj(x), use_running_average=ura)
    return jax.nn.relu(y + x)


class BasicBlock(nnx.Module):
    """Two 3x3 convolutions with a residual connection (post-activation)."""

    def __init__(self, in_shape: Shape, channels: int, stride: int, *, dtype: Any,
                 rngs: nnx.Rngs):
        h, w, cin = in_shape
        _conv_bn_layers(self, [(cin, channels, 3, stride), (channels, channels, 3, 1)],
                        dtype, rngs)
        self.proj, self.proj_bn = _projection(cin, channels, stride, dtype, rngs)
        self.out_shape: Shape = (_down(h, stride), _down(w, stride), channels)

    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        ura = not train
        y = jax.nn.relu(self.bn1(self.conv1(x), use_running_average=ura))
        y = self.bn2(self.conv2(y), use_running_average=ura)
        return _add_shortcut(self, x, y, ura)


class Bottleneck(nnx.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand by 4, with a residual connection."""

    expansion = 4

    def __init__(self, in_shape: Shape, width: int, stride: int, *, dtype: Any,
                 rngs: nnx.Rngs):
        h, w, cin = in_shape
        cout = width * self.expansion
        _conv_bn_layers(self, [(cin, width, 1, 1), (width, width, 3, stride),
                               (width, cout, 1, 1)], dtype, rngs)
        self.proj, self.proj_bn = _projection(cin, cout, stride, dtype, rngs)
        self.out_shape: Shape = (_down(h, stride), _down(w, stride), cout)

    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        ura = not train
        y = jax.nn.relu(self.bn1(self.conv1(x), use_running_average=ura))
        y = jax.nn.relu(self.bn2(self.conv2(y), use_running_average=ura))
        y = self.bn3(self.conv3(y), use_running_average=ura)
        return _add_shortcut(self, x, y, ura)


class PreActBlock(nnx.Module):
    """EENet-8 block: [BN-ReLU]-conv(stride)-BN-ReLU-conv plus a 1x1 strided shortcut.

    The first block of EENet-8 follows a stem that already ends in BN-ReLU, so it skips the
    leading normalisation (``preact=False``); its output is not activated, which is why
    EENet-8's exits use the ``bnpool`` head and its final classifier a BN-ReLU first.
    """

    def __init__(self, in_shape: Shape, channels: int, stride: int, *, dtype: Any,
                 rngs: nnx.Rngs, preact: bool = True):
        h, w, cin = in_shape
        self.bn0 = batch_norm(cin, dtype=dtype, rngs=rngs) if preact else None
        self.conv1 = conv(cin, channels, 3, stride, dtype=dtype, rngs=rngs, use_bias=True)
        self.bn1 = batch_norm(channels, dtype=dtype, rngs=rngs)
        self.conv2 = conv(channels, channels, 3, 1, dtype=dtype, rngs=rngs, use_bias=True)
        if stride != 1 or cin != channels:
            self.proj = conv(cin, channels, 1, stride, dtype=dtype, rngs=rngs, use_bias=True)
        else:
            self.proj = None
        self.out_shape: Shape = (_down(h, stride), _down(w, stride), channels)

    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        ura = not train
        y = jax.nn.relu(self.bn0(x, use_running_average=ura)) if self.bn0 is not None else x
        y = self.conv1(y)
        y = self.conv2(jax.nn.relu(self.bn1(y, use_running_average=ura)))
        shortcut = self.proj(x) if self.proj is not None else x
        return y + shortcut


class Stem(nnx.Module):
    """First convolution (+ BN-ReLU, + max-pool for ImageNet) before the first block."""

    def __init__(self, in_shape: Shape, channels: int, kernel: int, stride: int, max_pool: bool,
                 *, dtype: Any, rngs: nnx.Rngs, use_bias: bool = False):
        h, w, cin = in_shape
        self.conv = conv(cin, channels, kernel, stride, dtype=dtype, rngs=rngs, use_bias=use_bias)
        self.bn = batch_norm(channels, dtype=dtype, rngs=rngs)
        self.max_pool = max_pool
        h, w = _down(h, stride), _down(w, stride)
        if max_pool:
            h, w = _down(h, 2), _down(w, 2)
        self.out_shape: Shape = (h, w, channels)

    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        y = jax.nn.relu(self.bn(self.conv(x), use_running_average=not train))
        if self.max_pool:
            y = nnx.max_pool(y, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        return y


class Backbone(nnx.Module):
    """A stem, an ordered list of blocks and (pre-activation nets) a final BN-ReLU.

    ``features_after(i)`` shapes and per-block cost are what exit placement works from.
    """

    def __init__(self, name: str, stem: Stem, blocks: Sequence[nnx.Module],
                 final_norm: nnx.BatchNorm | None = None):
        self.name = name
        self.stem = stem
        self.blocks = nnx.List(list(blocks))
        self.final_norm = final_norm

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    @property
    def block_shapes(self) -> list[Shape]:
        return [b.out_shape for b in self.blocks]

    @property
    def feature_shape(self) -> Shape:
        return self.blocks[-1].out_shape

    def run(self, x: jax.Array, start: int, stop: int, train: bool = False) -> jax.Array:
        """Runs blocks [start, stop); start == 0 means ``x`` is the input image."""
        if start == 0:
            x = self.stem(x, train)
        for i in range(start, stop):
            x = self.blocks[i](x, train)
        return x

    def head_input(self, x: jax.Array, train: bool = False) -> jax.Array:
        """What the final classifier sees: the last block's output, normalised if pre-act."""
        if self.final_norm is not None:
            x = jax.nn.relu(self.final_norm(x, use_running_average=not train))
        return x


@dataclasses.dataclass(frozen=True)
class ArchSpec:
    family: str  # 'cifar' | 'imagenet' | 'eenet8'
    stages: tuple[int, ...] = ()
    bottleneck: bool = False


ARCHS: dict[str, ArchSpec] = {
    **{f"resnet{6 * n + 2}": ArchSpec("cifar", (n, n, n)) for n in (1, 3, 5, 7, 9, 18)},
    "resnet18": ArchSpec("imagenet", (2, 2, 2, 2)),
    "resnet34": ArchSpec("imagenet", (3, 4, 6, 3)),
    "resnet50": ArchSpec("imagenet", (3, 4, 6, 3), bottleneck=True),
    "resnet101": ArchSpec("imagenet", (3, 4, 23, 3), bottleneck=True),
    "resnet152": ArchSpec("imagenet", (3, 8, 36, 3), bottleneck=True),
    "eenet8": ArchSpec("eenet8"),
}


def build_backbone(arch: str, input_shape: Shape, *, width: int = 0, dtype: Any = jnp.float32,
                   rngs: nnx.Rngs) -> Backbone:
    """Builds a backbone by name.

    ``width`` is the channel count of the first stage (0 = the architecture's own: 16 for CIFAR
    ResNets, 64 for ImageNet ResNets, 2 for EENet-8, whose paper uses 2 or 4 filters).
    Any ``resnet{6n+2}`` name (e.g. resnet14) builds a CIFAR ResNet of that depth.
    """
    spec = ARCHS.get(arch)
    if spec is None and arch.startswith("resnet") and arch[6:].isdigit():
        n = (int(arch[6:]) - 2) / 6
        if n >= 1 and n == int(n) and int(arch[6:]) not in (18, 34, 50, 101, 152):
            spec = ArchSpec("cifar", (int(n),) * 3)
    if spec is None:
        raise ValueError(f"unknown architecture {arch!r}; known: {sorted(ARCHS)} "
                         "(or any CIFAR depth resnet{6n+2})")
    kw = dict(dtype=dtype, rngs=rngs)
    if spec.family == "eenet8":
        f = width or 2
        stem = Stem(input_shape, f, 3, 1, False, use_bias=True, **kw)
        blocks, shape = [], stem.out_shape
        for i, (ch, stride) in enumerate(((f, 1), (2 * f, 2), (4 * f, 2))):
            blocks.append(PreActBlock(shape, ch, stride, preact=i > 0, **kw))
            shape = blocks[-1].out_shape
        return Backbone(arch, stem, blocks, final_norm=batch_norm(4 * f, **kw))

    base = width or (16 if spec.family == "cifar" else 64)
    if spec.family == "cifar":
        stem = Stem(input_shape, base, 3, 1, False, **kw)
    else:
        stem = Stem(input_shape, base, 7, 2, True, **kw)
    block_cls = Bottleneck if spec.bottleneck else BasicBlock
    blocks, shape = [], stem.out_shape
    for stage, count in enumerate(spec.stages):
        channels = base * 2**stage
        for j in range(count):
            stride = 2 if (stage > 0 and j == 0) else 1
            blocks.append(block_cls(shape, channels, stride, **kw))
            shape = blocks[-1].out_shape
    return Backbone(arch, stem, blocks)


def num_features(shape: Shape) -> int:
    return math.prod(shape)
