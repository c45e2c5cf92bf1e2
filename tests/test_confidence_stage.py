"""The confidence stage (jee/confidence_stage.py) and the exits' gradient scale: only the
confidence branches change, a killed stage resumes exactly, bad settings are refused, and
``scale_gradient`` keeps the forward pass while scaling the backward one."""

import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jee import confidence_stage, runs, train_lib
from jee.checkpoint import Checkpoints, _rank
from jee.confidence_stage import confidence_mask
from jee.config import load_config
from jee.models.eenet import scale_gradient

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAIN_END = 60  # 2 epochs of 30 steps: 978 training examples (after val and holdout) // 32


def _config(**overrides):
    sys.path.insert(0, ROOT)
    from configs import digits

    c = digits.get_config("smoke")
    c.max_steps = 0
    c.num_epochs = 2
    c.keep_checkpoints = 10
    c.dataset.holdout_size = 0.2
    c.confidence_stage.epochs = 2.0
    c.tensorboard = False
    for key, value in overrides.items():
        node = c
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return c


def _leaves(tree):
    return jax.tree_util.tree_flatten_with_path(tree)[0]


@pytest.fixture(scope="module")
def two_stage_run(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("conf") / "run")
    record = train_lib.train_and_evaluate(_config(), workdir)
    return workdir, record


def test_only_the_confidence_branches_change(two_stage_run):
    workdir, _ = two_stage_run
    config = _config()
    _, _, before = runs.restore_trained(config, workdir, MAIN_END, announce=False)
    _, _, after = runs.restore_trained(config, workdir, "latest", announce=False)
    assert int(after["step"]) > MAIN_END
    changed, frozen = 0, 0
    for (path, a), (_, b) in zip(_leaves(before["params"]), _leaves(after["params"]),
                                 strict=True):
        a, b = np.asarray(a), np.asarray(b)
        if "confidence" in jax.tree_util.keystr(path):
            changed += int(not np.array_equal(a, b))
        else:
            frozen += 1
            # Bitwise: not a float comparison with a tolerance.
            assert a.tobytes() == b.tobytes(), jax.tree_util.keystr(path)
    for a, b in zip(jax.tree.leaves(before["batch_stats"]), jax.tree.leaves(after["batch_stats"]),
                    strict=True):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
    # The two early exits' confidence kernels and biases learned (the final exit's branch has
    # no gradient: the EENet loss fixes the last confidence to 1).
    assert changed >= 4 and frozen > 20


def test_stage_is_logged_and_its_last_state_is_scored(two_stage_run):
    workdir, record = two_stage_run
    lines = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    setup = lines[0]
    assert [s["number"] for s in setup["stages"]] == [1, 2]
    assert setup["stages"][1]["begin"] == MAIN_END
    end = setup["stages"][1]["end"]
    conf = [r for r in lines if r["kind"] == "confidence"]
    assert conf and all(MAIN_END < r["step"] <= end for r in conf)
    assert all(len(r["confident"]) == 2 for r in conf)
    val2 = [r for r in lines if r["kind"] == "val" and r.get("stage") == 2]
    assert [r["step"] for r in val2][-1] == end
    # The confidence stage's checkpoints rank first, its latest above the others.
    assert record["step"] == end and record["scored"] == "best checkpoint"
    ckpts = Checkpoints(workdir, read_only=True)
    try:
        assert ckpts.best_step() == end
        assert "confidence stage" in ckpts.select("best")[1]
    finally:
        ckpts.close()


def test_killed_confidence_stage_resumes_exactly(tmp_path, monkeypatch, two_stage_run):
    reference, _ = two_stage_run
    workdir = str(tmp_path / "killed")
    make_step = confidence_stage.make_step

    class Killed(Exception):
        pass

    def dying_make_step(*args, **kwargs):
        step = make_step(*args, **kwargs)
        calls = {"n": 0}

        def run(state, batch):
            calls["n"] += 1
            if calls["n"] > 9:  # past the stage's first checkpoint (7 steps per epoch)
                raise Killed()
            return step(state, batch)
        return run

    monkeypatch.setattr(confidence_stage, "make_step", dying_make_step)
    with pytest.raises(Killed):
        train_lib.train_and_evaluate(_config(), workdir)
    monkeypatch.setattr(confidence_stage, "make_step", make_step)
    train_lib.train_and_evaluate(_config(), workdir)
    config = _config()
    _, _, a = runs.restore_trained(config, reference, "latest", announce=False)
    _, _, b = runs.restore_trained(config, workdir, "latest", announce=False)
    assert int(a["step"]) == int(b["step"])
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    steps = [json.loads(line)["step"] for line in open(os.path.join(workdir, "metrics.jsonl"))
             if '"confidence"' in line]
    assert steps == sorted(set(steps))  # the killed attempt's records were rewound


@pytest.mark.parametrize("overrides, message", [
    ({"dataset.holdout_size": 0.0}, "set config.dataset.holdout_size"),
    ({"confidence_stage.kind": "v0"}, "unknown config.confidence_stage.kind"),
    ({"loss.exit_grad_scale": 1.5}, "exit_grad_scale must be in [0, 1]"),
])
def test_bad_settings_are_refused_before_any_work(tmp_path, overrides, message):
    workdir = tmp_path / "bad"
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        train_lib.train_and_evaluate(_config(**overrides), str(workdir))
    assert not workdir.exists()


def test_a_plain_backbone_gets_no_stage_and_no_holdout():
    plain = confidence_stage.for_model(_config(**{"model.num_exits": 0}))
    assert plain.confidence_stage.epochs == 0 and plain.dataset.holdout_size == 0
    exits = _config()
    assert confidence_stage.for_model(exits) is exits
    assert _config(**{"model.num_exits": 0}).dataset.holdout_size == 0.2  # not changed


def test_reset_starts_every_confidence_at_one_half():
    model = runs.build_model(_config(), runs.Shapes((8, 8, 1), 10))
    from jee.models import forward, split
    graphdef, params, stats = split(model)
    state = {"step": jnp.zeros((), jnp.int32), "params": params, "batch_stats": stats,
             "nan_step": jnp.zeros((), jnp.int32)}
    reset = confidence_stage.init_state(state, confidence_stage.make_optimizer(_config(), 10))
    x = jax.random.normal(jax.random.key(0), (4, 8, 8, 1))
    _, conf, _ = forward(graphdef, reset["params"], stats, x, False)
    np.testing.assert_array_equal(np.asarray(jax.nn.sigmoid(conf)), 0.5)
    _, conf0, _ = forward(graphdef, params, stats, x, False)
    assert not np.allclose(np.asarray(jax.nn.sigmoid(conf0)), 0.5)


@pytest.mark.parametrize("scale", [0.0, 0.25, 1.0])
def test_scale_gradient_keeps_values_and_scales_gradients(scale):
    x = jax.random.normal(jax.random.key(1), (3, 5))
    w = jax.random.normal(jax.random.key(2), (3, 5))
    y = scale_gradient(x, scale)
    assert np.asarray(y).tobytes() == np.asarray(x).tobytes()
    grad = jax.grad(lambda v: jnp.sum(scale_gradient(v, scale) * w))(x)
    np.testing.assert_allclose(np.asarray(grad), scale * np.asarray(w), rtol=1e-6)


def test_stage_two_ranks_by_step_above_every_stage_one_checkpoint():
    stage1 = {"val_accuracy": 0.99, "step": 60, "stage": 1}
    early2 = {"val_accuracy": 0.95, "step": 67, "stage": 2}
    late2 = {"val_accuracy": 0.90, "step": 74, "stage": 2}
    old = {"val_accuracy": 0.99, "step": 50}  # written before stages existed: stage 1
    assert max([stage1, early2, late2, old], key=_rank) is late2
    assert max([stage1, old], key=_rank) is old  # equal accuracy: the earlier step


def test_softmax_stats_by_hand():
    from jee.models.exits import softmax_stats
    stats = np.asarray(softmax_stats(jnp.array([[0.0, np.log(3.0)]])))[0]
    # p = (1/4, 3/4): max-prob 0.75, margin 0.5, entropy / log 2 = 0.8113.
    entropy = -(0.25 * np.log(0.25) + 0.75 * np.log(0.75)) / np.log(2.0)
    np.testing.assert_allclose(stats, [0.75, 0.5, entropy], rtol=1e-6)


def test_confidence_branch_reads_the_softmax_when_asked():
    from flax import nnx

    from jee.models.exits import ExitHead
    head = ExitHead("pool", (4, 4, 6), 5, dtype=jnp.float32, rngs=nnx.Rngs(0),
                    confidence_inputs="features+softmax")
    assert head.confidence_stats.kernel[...].shape == (3, 1)
    head.confidence.kernel[...] = jnp.zeros((6, 1))
    head.confidence.bias[...] = jnp.zeros((1,))
    head.confidence_stats.kernel[...] = jnp.array([[1.0], [0.0], [0.0]])  # max-prob only
    x = jax.random.normal(jax.random.key(3), (2, 4, 4, 6))
    logits, conf = head(x)
    np.testing.assert_allclose(np.asarray(conf), np.asarray(jax.nn.softmax(logits).max(-1)),
                               rtol=1e-6)
    with pytest.raises(ValueError, match="confidence_inputs"):
        ExitHead("pool", (4, 4, 6), 5, dtype=jnp.float32, rngs=nnx.Rngs(0),
                 confidence_inputs="logits")


def test_mask_covers_the_softmax_reading_layer():
    from jee.models import build_eenet, split
    model = build_eenet("resnet8", (8, 8, 1), 10, num_exits=2,
                        confidence_inputs="features+softmax")
    mask = confidence_mask(split(model)[1])
    marked = sorted(jax.tree_util.keystr(p) for p, m in _leaves(mask) if m)
    assert sum("confidence_stats" in p for p in marked) == 2  # one kernel per early exit
    assert all("confidence" in p for p in marked)
    assert len(marked) == 2 * 3 + 2  # each early exit: kernel, bias, stats kernel; final: 2


def test_a_plain_backbone_is_evaluated_on_the_data_it_trained_on():
    # The adaptive recipe's holdout changes the training split and so the normalisation; a
    # plain backbone trains without it (for_model), and must be restored and evaluated
    # without it too, even under the early-exit recipe's config (as cascade members are).
    from jee.data import build
    from jee.runs import build_dataset

    config = load_config("configs/digits.py:adaptive")
    config.model.num_exits = 0
    trained_on = config.copy_and_resolve_references()
    trained_on.dataset.holdout_size = 0.0
    assert config.dataset.holdout_size > 0
    got, want = build_dataset(config), build(trained_on.dataset)
    np.testing.assert_array_equal(got.mean, want.mean)
    np.testing.assert_array_equal(got.std, want.std)
    assert got.num_examples("train") == want.num_examples("train")
    # An early-exit network keeps its holdout.
    config.model.num_exits = 2
    assert build_dataset(config).num_examples("holdout") > 0
