"""Backbones, exit heads, placement and cost accounting against known figures."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jee.models import apply_segment, build_eenet, count_params, forward, split
from jee.models.cost import count_module_macs, xla_flops
from jee.models.exits import EXIT_TYPES
from jee.models.placement import PHI, place_exits, thresholds


def _backbone_params(model):
    _, params, _ = split(model)
    conf = model.final.confidence
    return count_params(params) - conf.kernel[...].size - conf.bias[...].size


# Known figures: torchvision (ResNet-18/50 at 1000 classes), He et al. 2016 (CIFAR ResNets).
@pytest.mark.parametrize("arch,shape,classes,params,macs", [
    ("resnet18", (224, 224, 3), 1000, 11.69e6, 1.82e9),
    ("resnet50", (224, 224, 3), 1000, 25.56e6, 4.1e9),
    ("resnet20", (32, 32, 3), 10, 0.27e6, 41e6),
    ("resnet110", (32, 32, 3), 10, 1.73e6, 253e6),
])
def test_backbone_params_and_macs_match_known_figures(arch, shape, classes, params, macs):
    model = build_eenet(arch, shape, classes)
    assert _backbone_params(model) == pytest.approx(params, rel=0.01)
    assert model.costs().backbone == pytest.approx(macs, rel=0.03)


def test_analytic_macs_agree_with_xla_cost_analysis():
    model = build_eenet("resnet20", (32, 32, 3), 10, exit_blocks=(2, 5), exit_type="plain")
    graphdef, params, stats = split(model)
    xla = xla_flops(lambda x: apply_backbone_fn(graphdef, params, stats, x), (1, 32, 32, 3))
    analytic = count_module_macs(model, (1, 32, 32, 3), skip_padding=True,
                                 method=lambda m, x: m.backbone_logits(x))
    # XLA counts a multiply-add as 2 flops, skips padding taps and adds the element-wise work.
    assert xla / 2 == pytest.approx(analytic, rel=0.05)
    # The reported (padding-inclusive) count differs from it only by the padding taps.
    assert analytic < model.costs().backbone < analytic * 1.1
    head = model.exits[1]
    hg, hs = nnx.split(head)
    head_xla = xla_flops(lambda h: sum(nnx.merge(hg, hs)(h)), (1, 16, 16, 32))
    head_macs = count_module_macs(head, (1, 16, 16, 32))
    assert head_xla / 2 == pytest.approx(head_macs, rel=0.05)


def apply_backbone_fn(graphdef, params, stats, x):
    return nnx.merge(graphdef, params, stats).backbone_logits(x)


def test_exit_cost_includes_every_earlier_head():
    model = build_eenet("resnet20", (32, 32, 3), 10, exit_blocks=(0, 4), exit_type="plain")
    ct = model.costs()
    rel = ct.relative_costs()
    # Hand computation from the parts.
    exit1 = ct.stem + sum(ct.blocks[:5]) + ct.exit_heads[0] + ct.exit_heads[1]
    assert ct.exit_macs()[1] == exit1
    assert rel[-1] == pytest.approx(1 + (sum(ct.exit_heads) + ct.final_confidence) / ct.backbone)
    assert rel[-1] > 1 and all(a < b for a, b in zip(rel, rel[1:], strict=False))
    # A plain head after block 0 sees 32x32x16 features: 16384 * (10 + 1) MACs.
    assert ct.exit_heads[0] == 32 * 32 * 16 * 11


def test_placement_thresholds_formulas():
    assert thresholds("pareto", 3) == pytest.approx([0.2, 0.36, 0.488])
    assert thresholds("fine", 2) == pytest.approx([0.05, 0.0975])
    assert thresholds("linear", 3) == pytest.approx([0.25, 0.5, 0.75])
    assert thresholds("golden_ratio", 2) == pytest.approx([PHI**-2, PHI**-1])
    assert thresholds("quadratic", 3) == pytest.approx([1 / 16, 1 / 4, 9 / 16])


def test_placement_on_hand_worked_case():
    # Ten equal blocks: cumulative cost 0.1, 0.2, ..., 1.0.
    cum = [0.1 * (i + 1) for i in range(10)]
    assert place_exits(cum, 3, "linear") == (2, 4, 7)        # 0.25 -> 0.3, 0.5, 0.75 -> 0.8
    assert place_exits(cum, 3, "pareto") == (1, 3, 4)        # 0.2, 0.36 -> 0.4, 0.488 -> 0.5
    assert place_exits(cum, 2, "golden_ratio") == (3, 6)     # 0.382 -> 0.4, 0.618 -> 0.7
    assert place_exits(cum, 3, "quadratic") == (0, 2, 5)     # 0.0625, 0.25 -> 0.3, 0.5625
    # fine: 0.05 and 0.0975 both fall on block 0, but two exits never share a block.
    assert place_exits(cum, 2, "fine") == (0, 1)


def test_placement_errors_are_clear():
    cum = [0.25, 0.5, 0.75, 1.0]
    with pytest.raises(ValueError, match="do not fit"):
        place_exits(cum, 4, "linear")
    with pytest.raises(ValueError, match="unknown placement"):
        place_exits(cum, 1, "cubic")
    with pytest.raises(ValueError, match="cannot place exit"):
        place_exits([0.1, 0.2, 1.0], 2, "golden_ratio")
    with pytest.raises(ValueError, match="do not fit"):
        build_eenet("eenet8", (28, 28, 1), 10, num_exits=3)
    with pytest.raises(ValueError, match="does not fit"):
        build_eenet("resnet20", (32, 32, 3), 10, exit_blocks=(8,))
    with pytest.raises(ValueError, match="unknown architecture"):
        build_eenet("resnet19", (32, 32, 3), 10)


@pytest.mark.parametrize("exit_type", EXIT_TYPES)
def test_every_exit_type_at_every_position(exit_type):
    # resnet14: 6 blocks with downsampling at blocks 2 and 4 (the positions that broke
    # the reference implementation's plain head).
    model = build_eenet("resnet14", (12, 12, 3), 7, exit_blocks=(0, 1, 2, 3, 4),
                        exit_type=exit_type)
    logits, conf = model(jnp.ones((3, 12, 12, 3)))
    assert logits.shape == (6, 3, 7) and conf.shape == (6, 3)
    assert np.isfinite(np.asarray(logits)).all()


@pytest.mark.parametrize("arch,shape", [("resnet14", (16, 16, 3)), ("eenet8", (28, 28, 1)),
                                        ("resnet18", (32, 32, 3))])
def test_segments_equal_masked_forward(arch, shape):
    model = build_eenet(arch, shape, 10, num_exits=2, exit_type="bnpool", seed=3)
    graphdef, params, stats = split(model)
    x = jax.random.normal(jax.random.key(0), (4, *shape))
    logits, conf, _ = jax.jit(forward, static_argnums=(4,))(graphdef, params, stats, x, False)
    h = x
    for k in range(model.num_exits):
        h, lk, ck = apply_segment(graphdef, params, stats, k, h)
        np.testing.assert_allclose(lk, logits[k], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(ck, conf[k], rtol=1e-5, atol=1e-5)
    assert h is None


def test_train_mode_updates_batch_stats_and_bf16_runs():
    model = build_eenet("eenet8", (28, 28, 1), 10, num_exits=2, dtype=jnp.bfloat16)
    graphdef, params, stats = split(model)
    x = jax.random.normal(jax.random.key(1), (8, 28, 28, 1)) + 3.0
    old = [np.asarray(a) for a in jax.tree.leaves(stats)]
    logits, conf, new_stats = jax.jit(forward, static_argnums=4)(graphdef, params, stats, x, True)
    assert logits.dtype == jnp.float32 and logits.shape == (3, 8, 10)
    new = jax.tree.leaves(new_stats)
    assert any(not np.allclose(a, b) for a, b in zip(old, new, strict=True))
    # Parameters stay float32 (only the compute is bf16).
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))


def test_initialisation_is_deterministic_and_scaled():
    a = build_eenet("resnet20", (32, 32, 3), 10, seed=5)
    b = build_eenet("resnet20", (32, 32, 3), 10, seed=5)
    c = build_eenet("resnet20", (32, 32, 3), 10, seed=6)
    ka, kb, kc = (m.backbone.blocks[3].conv1.kernel[...] for m in (a, b, c))
    np.testing.assert_array_equal(ka, kb)
    assert not np.allclose(ka, kc)
    # He normal over fan-out: std = sqrt(2 / (3 * 3 * 32)).
    assert float(jnp.std(ka)) == pytest.approx(np.sqrt(2 / (9 * 32)), rel=0.1)
