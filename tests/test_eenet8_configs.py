"""The paper's EENet-8 and ResNet-20 configs: their variants, the networks they build, and
EENet-8's exit costs against a count by hand from the layer shapes."""

import os

import pytest

from jee.config import load_config
from jee.runs import Shapes, build_model

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
FM8 = os.path.join(CONFIGS, "fashion_mnist_eenet8.py")
FM20 = os.path.join(CONFIGS, "fashion_mnist_eenet20.py")
MNIST8 = os.path.join(CONFIGS, "mnist_eenet8.py")
MNIST_SHAPES = Shapes((28, 28, 1), 10)


@pytest.mark.parametrize("spec,width,exit_type,smoke", [
    (FM8, 4, "pool", False),                    # the paper's EENet-8 (4 filters, pooled exits)
    (f"{FM8}:f2", 2, "pool", False),
    (f"{FM8}:f4", 4, "pool", False),
    (f"{FM8}:plain", 4, "plain", False),        # jee's labelled plain-heads variant
    (f"{FM8}:f2,plain", 2, "plain", False),
    (f"{FM8}:plain,f2", 2, "plain", False),
    (f"{FM8}:bnpool", 4, "bnpool", False),
    (f"{FM8}:smoke", 4, "pool", True),
    (f"{FM8}:plain,smoke", 4, "plain", True),
    (f"{FM8}:smoke,f2,pool", 2, "pool", True),
    (MNIST8, 2, "pool", False),
    (f"{MNIST8}:f4", 4, "pool", False),
    (f"{MNIST8}:4", 4, "pool", False),
    (f"{MNIST8}:f4,bnpool,smoke", 4, "bnpool", True),
])
def test_eenet8_variants_build_the_expected_network(spec, width, exit_type, smoke):
    c = load_config(spec)
    assert (c.model.arch, c.model.width, c.model.exit_type) == ("eenet8", width, exit_type)
    assert (c.max_steps > 0) == smoke
    model = build_model(c, MNIST_SHAPES)
    assert model.exit_blocks == (0, 1)
    assert [e.exit_type for e in model.exits] == [exit_type] * 2
    # Stage widths f, 2f, 4f; pooled heads read f and 2f features, plain ones every pixel.
    assert [s[-1] for s in model.backbone.block_shapes] == [width, 2 * width, 4 * width]
    fan_in = [width, 2 * width] if exit_type != "plain" else [28 * 28 * width, 14 * 14 * 2 * width]
    assert [e.classifier.kernel[...].shape for e in model.exits] == [(n, 10) for n in fan_in]
    assert [e.confidence.kernel[...].shape for e in model.exits] == [(n, 1) for n in fan_in]
    assert (model.exits[0].norm is not None) == (exit_type == "bnpool")


@pytest.mark.parametrize("spec,exit_type,smoke", [
    (FM20, "plain", False),
    (f"{FM20}:pool", "pool", False),
    (f"{FM20}:pool,smoke", "pool", True),
    (f"{FM20}:smoke,bnpool", "bnpool", True),
])
def test_resnet20_variants(spec, exit_type, smoke):
    c = load_config(spec)
    assert (c.model.arch, c.model.width, c.model.exit_type) == ("resnet20", 8, exit_type)
    assert (c.max_steps > 0) == smoke
    model = build_model(c, MNIST_SHAPES)
    assert model.exit_blocks == (1, 3, 4)  # Pareto placement, whatever the heads
    assert [e.exit_type for e in model.exits] == [exit_type] * 3


@pytest.mark.parametrize("spec", [f"{FM8}:f3", f"{FM8}:plain,pool", f"{FM8}:f2,f4",
                                  f"{FM8}:smoke,smoke", f"{FM20}:f2", f"{FM20}:plain,bnpool",
                                  f"{MNIST8}:f2,4", f"{MNIST8}:huge"])
def test_unknown_or_conflicting_variants_name_the_known_ones(spec):
    with pytest.raises(ValueError, match="unknown config variant") as err:
        load_config(spec)
    for name in ("pool", "plain", "bnpool", "smoke"):
        assert name in str(err.value)
    if "eenet8" in spec:
        assert "f2" in str(err.value) and "f4" in str(err.value)


def eenet8_macs_by_hand(f, exit_type, size=28, classes=10):
    """(stem, [block MACs], [exit head MACs], final classifier, final confidence) of EENet-8
    with ``f`` first-stage filters on a size x size x 1 image, from the layer shapes alone:
    a k x k convolution to an h x w x cout output from cin channels is h*w*k*k*cin*cout
    multiply-adds (zero-padding taps included), a dense layer in*out; biases, normalisation,
    activations, pooling and additions are not counted."""
    def conv(hw, k, cin, cout):
        return hw * hw * k * k * cin * cout

    s0, s1, s2 = size, size // 2, size // 4  # 28, 14, 7
    stem = conv(s0, 3, 1, f)
    blocks = [
        conv(s0, 3, f, f) + conv(s0, 3, f, f),                                # identity shortcut
        conv(s1, 3, f, 2 * f) + conv(s1, 3, 2 * f, 2 * f) + conv(s1, 1, f, 2 * f),
        conv(s2, 3, 2 * f, 4 * f) + conv(s2, 3, 4 * f, 4 * f) + conv(s2, 1, 2 * f, 4 * f),
    ]
    features = ([f, 2 * f] if exit_type != "plain"
                else [s0 * s0 * f, s1 * s1 * 2 * f])
    heads = [n * (classes + 1) for n in features]  # classifier + confidence on the same input
    return stem, blocks, heads, 4 * f * classes, 4 * f


@pytest.mark.parametrize("width,exit_type", [(2, "pool"), (4, "pool"), (2, "plain"),
                                             (4, "plain"), (2, "bnpool")])
def test_eenet8_relative_costs_match_a_hand_count(width, exit_type):
    stem, blocks, heads, classifier, confidence = eenet8_macs_by_hand(width, exit_type)
    backbone = stem + sum(blocks) + classifier
    expected = [(stem + blocks[0] + heads[0]) / backbone,
                (stem + blocks[0] + blocks[1] + heads[0] + heads[1]) / backbone,
                (backbone + sum(heads) + confidence) / backbone]
    # The paper's network: its one-stage recipe (the adaptive one adds a 3-input softmax
    # reading to each confidence branch, 3 more MACs per exit).
    c = load_config(f"{FM8}:f{width},{exit_type},onestage")
    table = build_model(c, MNIST_SHAPES).costs()
    assert (table.stem, list(table.blocks), list(table.exit_heads)) == (stem, blocks, heads)
    assert table.backbone == backbone
    assert table.relative_costs() == pytest.approx(expected, rel=1e-12)


def test_eenet8_pool_costs_are_the_documented_figures():
    """The figures docs/eenet8_costs.md gives next to the reference code's hard-coded
    0.08 / 0.26 (which no count of this network reproduces)."""
    def rel(variant):  # the paper's one-stage recipe: confidence over the features alone
        spec = f"{FM8}:{variant + ',' if variant else ''}onestage"
        return build_model(load_config(spec), MNIST_SHAPES).costs().relative_costs()

    assert rel("f2") == pytest.approx([0.4455, 0.7228, 1.0005], abs=5e-5)
    assert rel("") == pytest.approx([0.4197, 0.7099, 1.0002], abs=5e-5)
    assert rel("f2,plain") == pytest.approx([0.5542, 0.8857, 1.1633], abs=5e-5)
    assert rel("plain") == pytest.approx([0.4766, 0.7951, 1.0855], abs=5e-5)
