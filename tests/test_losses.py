"""EENet losses against hand computations on a 2-exit, 2-class example."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jee.losses import eenet_loss


def _sigmoid(z):
    return 1 / (1 + math.exp(-z))


def _softmax(row):
    e = [math.exp(v) for v in row]
    return [v / sum(e) for v in e]


# Two exits, two classes, two examples.
LOGITS = [[[2.0, 0.0], [0.0, 1.0]],      # exit 0
          [[0.5, 0.5], [-1.0, 3.0]]]     # exit 1 (final)
CONF = [[0.0, 1.0], [5.0, -5.0]]         # final exit's confidence is ignored
LABELS = [0, 1]
COSTS = [0.4, 1.1]
LAM = 0.7


def _hand():
    """Per-example mixtures written out longhand."""
    v1_ce, v1_cost, fin_ce = [], [], []
    for b in range(2):
        p0 = _softmax(LOGITS[0][b])
        p1 = _softmax(LOGITS[1][b])
        h0 = _sigmoid(CONF[0][b])
        y = LABELS[b]
        mix = h0 * p0[y] + (1 - h0) * p1[y]
        v1_ce.append(-math.log(mix))
        v1_cost.append(h0 * COSTS[0] + (1 - h0) * COSTS[1])
        fin_ce.append(-math.log(p1[y]))
    return v1_ce, v1_cost, fin_ce


def _call(kind, **kw):
    return eenet_loss(kind, jnp.array(LOGITS), jnp.array(CONF), jnp.array(LABELS),
                      jnp.array(COSTS), **kw)


def test_v1_matches_hand_computation():
    v1_ce, v1_cost, _ = _hand()
    loss, aux = _call("v1", lam=LAM)
    expected = np.mean(v1_ce) + LAM * np.mean(v1_cost)
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    assert float(aux["cost"]) == pytest.approx(np.mean(v1_cost), rel=1e-6)


def test_v2_matches_hand_computation():
    v1_ce, v1_cost, fin_ce = _hand()
    loss, _ = _call("v2", lam=LAM)
    # Suffix from exit 0 (= v1) plus suffix from exit 1 (the final exit alone, cost 1.1).
    expected = np.mean(v1_ce) + LAM * np.mean(v1_cost) + np.mean(fin_ce) + LAM * COSTS[1]
    assert float(loss) == pytest.approx(expected, rel=1e-6)


def test_v0_and_weighted_are_sums_of_exit_cross_entropies():
    ce0 = np.mean([-math.log(_softmax(LOGITS[0][b])[LABELS[b]]) for b in range(2)])
    ce1 = np.mean([-math.log(_softmax(LOGITS[1][b])[LABELS[b]]) for b in range(2)])
    assert float(_call("v0")[0]) == pytest.approx(ce0 + ce1, rel=1e-6)
    loss, _ = _call("weighted", exit_weights=(0.25, 2.0))
    assert float(loss) == pytest.approx(0.25 * ce0 + 2.0 * ce1, rel=1e-6)
    with pytest.raises(ValueError, match="exit_weights"):
        _call("weighted", exit_weights=(1.0,))


def test_mask_drops_padded_examples():
    v1_ce, v1_cost, _ = _hand()
    loss, _ = _call("v1", lam=LAM, mask=jnp.array([True, False]))
    assert float(loss) == pytest.approx(v1_ce[0] + LAM * v1_cost[0], rel=1e-6)


def test_log_space_mixture_survives_extreme_confidences():
    # Exit 0 is certain (h = 1 - 1e-44) and wrong by a huge margin: naive log(mix) underflows.
    logits = jnp.array([[[200.0, -200.0]], [[-100.0, 100.0]]])
    conf = jnp.array([[100.0], [0.0]])
    labels = jnp.array([1])
    for kind in ("v1", "v2"):
        loss, grads = jax.value_and_grad(
            lambda lg, c, kind=kind: eenet_loss(kind, lg, c, labels, jnp.array([0.5, 1.0]))[0],
            argnums=(0, 1))(logits, conf)
        assert np.isfinite(float(loss))
        assert all(np.isfinite(np.asarray(g)).all() for g in grads)
