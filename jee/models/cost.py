"""Multiply-accumulate counts per block and per exit head, and the relative cost of each exit.

MACs are counted from the traced program's shapes: every convolution contributes
out_elements * kernel_h * kernel_w * in_channels / groups and every dot product
out_elements * contracted size. Normalisation, activations, pooling and additions are not
counted (the convention of the papers' figures). ``xla_flops`` gives XLA's own count of the
compiled program, an independent check: XLA skips the taps that fall on zero padding (8% of a
CIFAR ResNet-20's convolution work at 32x32), so the check compares it with the padding-free
variant of the analytic count (tests hold the two within 5%).

The cost of leaving at exit k is the stem, the blocks up to exit k and every exit head
evaluated on the way (heads 0..k); the EENets reference code forgets the earlier heads.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.extend import core as jex_core


def _valid_taps(in_size: int, out_size: int, kernel: int, stride: int, pad_lo: int,
                dilation: int) -> int:
    """Kernel taps that land inside the input, summed over one spatial dimension's outputs."""
    taps = 0
    for o in range(out_size):
        start = o * stride - pad_lo
        taps += sum(1 for k in range(kernel) if 0 <= start + k * dilation < in_size)
    return taps


def _conv_macs(eqn, skip_padding: bool) -> int:
    out = eqn.outvars[0].aval.shape
    lhs, rhs = eqn.invars[0].aval.shape, eqn.invars[1].aval.shape
    dn = eqn.params["dimension_numbers"]
    # specs: (batch/out-feature dim, feature dim, *spatial dims)
    kernel_in = rhs[dn.rhs_spec[1]]
    per_out_pixel_channels = math.prod(out[d] for d in dn.out_spec[:2]) * kernel_in
    spatial = 1
    for i, (ld, rd, od) in enumerate(zip(dn.lhs_spec[2:], dn.rhs_spec[2:], dn.out_spec[2:],
                                         strict=True)):
        if skip_padding:
            spatial *= _valid_taps(lhs[ld], out[od], rhs[rd], eqn.params["window_strides"][i],
                                   eqn.params["padding"][i][0], eqn.params["rhs_dilation"][i])
        else:
            spatial *= out[od] * rhs[rd]
    return per_out_pixel_channels * spatial


def _jaxpr_macs(jaxpr: jex_core.Jaxpr, skip_padding: bool) -> int:
    total = 0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "conv_general_dilated":
            total += _conv_macs(eqn, skip_padding)
        elif name == "dot_general":
            (lhs_contract, _), _ = eqn.params["dimension_numbers"]
            lhs = eqn.invars[0].aval.shape
            total += math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs[d] for d in lhs_contract)
        for sub in _sub_jaxprs(eqn.params):  # jit, custom_jvp, remat, ...
            total += _jaxpr_macs(sub, skip_padding)
    return total


def _sub_jaxprs(params: dict) -> list[jex_core.Jaxpr]:
    found = []
    for v in params.values():
        for item in v if isinstance(v, (tuple, list)) else (v,):
            if isinstance(item, jex_core.ClosedJaxpr):
                found.append(item.jaxpr)
            elif isinstance(item, jex_core.Jaxpr):
                found.append(item)
    return found


def abstract(tree):
    """The same pytree with every array replaced by its shape and dtype."""
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), tree)


def count_macs(fn: Callable, *args, skip_padding: bool = False) -> int:
    """MACs of ``fn(*args)``; args are arrays or ShapeDtypeStructs (nothing is computed).

    By convention (and in every figure jee reports) a convolution's MACs include the taps
    that fall on zero padding. ``skip_padding=True`` leaves them out, which is what XLA's cost
    analysis counts; that variant exists to cross-check the two.
    """
    closed = jax.make_jaxpr(fn)(*abstract(args))
    return _jaxpr_macs(closed.jaxpr, skip_padding)


def count_module_macs(module, *shapes: tuple[int, ...], method: Callable | None = None,
                      skip_padding: bool = False) -> int:
    """MACs of an NNX module (or ``method(module, x)``) on float32 inputs of the given shapes.

    Works on abstract modules from ``nnx.eval_shape`` too: parameters enter as arguments.
    """
    from flax import nnx  # models import this module; keep the dependency local

    graphdef, state = nnx.split(module)
    call = method or (lambda m, *xs: m(*xs))
    xs = [jax.ShapeDtypeStruct(s, jnp.float32) for s in shapes]
    return count_macs(lambda st, *a: call(nnx.merge(graphdef, st), *a), state, *xs,
                      skip_padding=skip_padding)


def xla_flops(fn: Callable, *shapes: tuple[int, ...], dtype=jnp.float32) -> float:
    """XLA's floating-point operation count for the compiled ``fn``."""
    args = [jax.ShapeDtypeStruct(s, dtype) for s in shapes]
    analysis = jax.jit(fn).lower(*args).compile().cost_analysis()
    if isinstance(analysis, list):  # older jax returned one dict per device
        analysis = analysis[0]
    return float(analysis["flops"])


@dataclasses.dataclass(frozen=True)
class CostTable:
    """Per-example MACs of every part of an early-exit network."""

    stem: int
    blocks: tuple[int, ...]
    exit_heads: tuple[int, ...]  # one per early exit
    final_classifier: int        # the plain backbone's own classifier
    final_confidence: int        # the confidence branch added to the final exit
    exit_blocks: tuple[int, ...]

    @property
    def backbone(self) -> int:
        """The plain backbone without exits: stem, blocks and its classifier."""
        return self.stem + sum(self.blocks) + self.final_classifier

    def cumulative_blocks(self) -> list[float]:
        """Relative cost of stem + blocks 0..b, for every block b (used for placement)."""
        out, acc = [], self.stem
        for m in self.blocks:
            acc += m
            out.append(acc / self.backbone)
        return out

    def exit_macs(self) -> list[int]:
        """MACs spent by an example leaving at each exit (early exits, then the final)."""
        out = []
        for k, b in enumerate(self.exit_blocks):
            out.append(self.stem + sum(self.blocks[: b + 1]) + sum(self.exit_heads[: k + 1]))
        out.append(self.backbone + sum(self.exit_heads) + self.final_confidence)
        return out

    def relative_costs(self) -> list[float]:
        return [m / self.backbone for m in self.exit_macs()]
