"""Weighted logistic regression against brute force and closed forms."""

import jax
import numpy as np

from jee.policy.logistic import fit_weighted_logistic, weighted_logistic_loss

_fit = jax.jit(fit_weighted_logistic, static_argnames="steps")
# One problem shape (N examples, 1 feature) throughout, so the fit compiles once.
N = 300


def _np_loss(coef, bias, x, y, w, l2):
    # float64, written independently of the jax loss: log(1 + e^s) - y s.
    s = x @ np.atleast_1d(coef) + bias
    return np.sum(w * (np.logaddexp(0.0, s) - y * s)) / w.sum() + 0.5 * l2 * np.sum(coef**2)


def test_matches_grid_search_1d():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, 1))
    y = (x[:, 0] + 0.8 * rng.normal(size=N) > 0.4).astype(float)
    w = rng.uniform(0.0, 2.0, size=N)
    l2 = 0.01
    coef, bias = _fit(x, y, w, l2, steps=20)
    coef, bias = float(coef[0]), float(bias)

    def grid_search(coefs, biases):
        # Loss over the whole (coef, bias) grid at once: [coef, bias, example].
        s = coefs[:, None, None] * x[None, None, :, 0] + biases[None, :, None]
        losses = (np.sum(w * (np.logaddexp(0.0, s) - y * s), axis=-1) / w.sum()
                  + 0.5 * l2 * coefs[:, None] ** 2)
        i, j = np.unravel_index(np.argmin(losses), losses.shape)
        return coefs[i], biases[j], losses[i, j]

    # Coarse grid over a wide box, then a fine grid around its minimum (the loss is convex).
    c0, b0, _ = grid_search(np.arange(-4.0, 4.0, 0.05), np.arange(-4.0, 4.0, 0.05))
    fine = np.arange(-0.1, 0.1, 0.002)
    best_coef, best_bias, best_loss = grid_search(c0 + fine, b0 + fine)
    assert abs(coef - best_coef) <= 0.004 and abs(bias - best_bias) <= 0.004
    # Not worse than the best grid point (up to float32 rounding of the fit).
    assert _np_loss(coef, bias, x, y, w, l2) <= best_loss + 1e-6
    np.testing.assert_allclose(
        float(weighted_logistic_loss((np.array([coef]), bias), x, y, w, l2)),
        _np_loss(coef, bias, x, y, w, l2), rtol=1e-5,
    )


def test_constant_feature_gives_weighted_log_odds():
    # With an uninformative (zero) feature only the bias matters and it is unpenalised:
    # the optimum is the log-odds of the weighted positive fraction.
    rng = np.random.default_rng(1)
    y = (rng.uniform(size=N) < 0.3).astype(float)
    w = rng.uniform(size=N)
    p = np.sum(w * y) / np.sum(w)
    coef, bias = _fit(np.zeros((N, 1)), y, w, 1e-3, steps=20)
    np.testing.assert_allclose(np.asarray(coef), 0.0, atol=1e-6)
    np.testing.assert_allclose(float(bias), np.log(p / (1 - p)), atol=1e-4)


def test_zero_weights_stay_finite():
    x = np.random.default_rng(2).normal(size=(N, 1))
    coef, bias = _fit(x, np.ones(N), np.zeros(N), 1e-3, steps=20)
    assert np.isfinite(np.asarray(coef)).all() and np.isfinite(float(bias))


def test_vmapped_fit_equals_separate_fits():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(N, 1))
    ys = (rng.uniform(size=(3, N)) < 1 / (1 + np.exp(-2 * x[:, 0] + 0.5))).astype(float)
    ws = rng.uniform(size=(3, N))
    batched = jax.jit(jax.vmap(lambda y, w: fit_weighted_logistic(x, y, w, 1e-3, 20)))(ys, ws)
    for i in range(3):
        coef, bias = _fit(x, ys[i], ws[i], 1e-3, steps=20)
        np.testing.assert_allclose(np.asarray(batched[0][i]), np.asarray(coef), atol=1e-4)
        np.testing.assert_allclose(float(batched[1][i]), float(bias), atol=1e-4)
