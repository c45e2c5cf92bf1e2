"""Weighted L2-regularised logistic regression, fitted with optax L-BFGS in a fixed step count.

Each Bolukbasi exit decision is one such fit, and a lambda sweep vmaps it. optax's zoom line
search is a ``while_loop``; under ``vmap`` every lane runs until the slowest finishes and
lanes that have already converged burn the maximum number of line-search iterations (on
this CPU a vmapped 32-lambda fit of one exit took 6.4 s against 0.8 s for 32 separate
fits). So the step size is picked instead from a short fixed list (``scale_by_step_grid``:
the largest meeting the Armijo condition), all candidates evaluated at once: no
data-dependent control flow, a fixed-shape program. The problem is tiny (a few standardised
features) and convex, so L-BFGS reaches float32 precision in ~20 steps. Taking the
candidate with the lowest loss instead (greedy) converged far slower in the same tests: it
keeps L-BFGS from its unit quasi-Newton step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

# Tried largest first, so the quasi-Newton step (1) is taken whenever it decreases the loss
# enough; the shorter ones guard the first steps, where L-BFGS's curvature is still a guess.
STEP_SIZES = (1.0, 0.25, 0.0625)
# Armijo sufficient-decrease constant (the usual textbook value).
_ARMIJO_C = 1e-4


def weighted_logistic_loss(params, x, y, w, l2):
    """sum_n w_n * logloss(y_n, x_n . coef + bias) / sum_n w_n + l2/2 * |coef|^2.

    params = (coef [F], bias []); x [N, F]; y [N] in {0, 1}; w [N] >= 0. The bias is not
    penalised. Weights are normalised so that ``l2`` means the same at any N.
    """
    coef, bias = params
    scores = x @ coef + bias
    # softplus(s) - y s is the binary log-loss of logit s: one softplus per example where
    # optax's sigmoid_binary_cross_entropy evaluates two log_sigmoids (the fit's hot loop).
    per_example = jax.nn.softplus(scores) - y * scores
    return jnp.sum(w * per_example) / jnp.sum(w) + 0.5 * l2 * jnp.sum(coef * coef)


def scale_by_step_grid(step_sizes=STEP_SIZES) -> optax.GradientTransformationExtraArgs:
    """Scale a descent direction by the largest of ``step_sizes`` meeting the Armijo condition.

    ``update`` needs the extra arguments ``value_fn``, ``value`` and ``grad`` (at ``params``).
    When no candidate decreases the loss enough, the one with the lowest loss is taken. A
    control-flow-free stand-in for a backtracking line search: every candidate is evaluated
    at once (len(step_sizes) loss evaluations per step), nothing loops.
    """
    candidates = jnp.asarray(step_sizes, jnp.float32)

    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None, *, value_fn, value, grad, **extra_args):
        del extra_args
        # Unrolled rather than vmapped: under the sweep's vmap a vmapped trial becomes a
        # batched dot that XLA:CPU ran about twice as slowly as separate matvecs.
        values = jnp.stack([
            value_fn(optax.apply_updates(params, optax.tree.scale(step, updates)))
            for step in step_sizes
        ])
        slope = optax.tree.vdot(grad, updates)
        good = (values <= value + _ARMIJO_C * candidates * slope) & jnp.isfinite(values)
        least_bad = jnp.argmin(jnp.where(jnp.isfinite(values), values, jnp.inf))
        # argmax of a bool vector is its first True: the largest acceptable step.
        best = candidates[jnp.where(jnp.any(good), jnp.argmax(good), least_bad)]
        return optax.tree.scale(best, updates), state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def fit_weighted_logistic(x, y, w, l2=1e-3, steps: int = 20):
    """Minimise ``weighted_logistic_loss`` from zero; returns ``(coef [F], bias [])``.

    Jit- and vmap-able (``steps`` must be static). All-zero weights carry no information, so
    they are replaced by uniform ones rather than dividing by zero.
    """
    x = jnp.asarray(x, jnp.float32)
    y = jnp.asarray(y, jnp.float32)
    w = jnp.asarray(w, jnp.float32)
    w = jnp.where(jnp.sum(w) > 0, w, jnp.ones_like(w))

    def loss(params):
        return weighted_logistic_loss(params, x, y, w, l2)

    # L-BFGS direction (its memory reads the params actually reached, so a rescaled step
    # keeps the curvature pairs consistent), negated, then the step-size pick.
    solver = optax.chain(optax.scale_by_lbfgs(), optax.scale(-1.0), scale_by_step_grid())
    params = (jnp.zeros(x.shape[-1], jnp.float32), jnp.zeros((), jnp.float32))

    def step(_, carry):
        params, state = carry
        value, grad = jax.value_and_grad(loss)(params)
        updates, state = solver.update(
            grad, state, params, value_fn=loss, value=value, grad=grad
        )
        return optax.apply_updates(params, updates), state

    params, _ = jax.lax.fori_loop(0, steps, step, (params, solver.init(params)))
    return params
