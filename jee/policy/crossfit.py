"""Honest selection: each family's setting is picked on validation data it was not fitted on.

A family is a function ``fit(weights)`` returning a batched policy, one per setting (a
quantile of a threshold's feature, a lambda of the learned policy): fitted on the validation
examples of weight 1 (``weights`` None: all of them). Cross-fitting deals the validation split
into k folds (seeded, balanced); for each fold the family is fitted on the other k - 1, every
setting at once, and scored on that fold. Pooling the held-out decisions gives each setting's
out-of-fold ("validation-predicted") accuracy and cost, from which budgets pick a setting;
the family is then refitted on all of validation, and the refit is what test scores. The
folds are weights (0 = held out), so all k fits run at one shape, ``jax.vmap``-ed; a fit
never reads a held-out example (``tests/test_policy_crossfit.py`` checks it).

``folds`` 0 or 1 is the old rule: fit, select and report on all of validation (in-sample).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jee.policy.features import Outcomes
from jee.policy.metrics import report_rows

DEFAULT_FOLDS = 5
DEFAULT_SEED = 0
IN_SAMPLE = "in-sample"


@jax.jit
def batched_exits(policies, features):
    """Exits ``[G, N]`` of a batched policy (``policies[i]``) from ``features``."""
    return jax.vmap(lambda p: p.exits_from_features(features))(policies)


_fold_exits = jax.jit(jax.vmap(batched_exits, in_axes=(0, None)))


def selection_name(folds: int) -> str:
    """How settings are selected: ``"crossfit-K"`` or ``"in-sample"`` (folds 0 or 1)."""
    return IN_SAMPLE if folds <= 1 else f"crossfit-{folds}"


def fold_ids(num_examples: int, folds: int, seed: int = DEFAULT_SEED) -> np.ndarray:
    """The fold of each example, ``int32 [N]``: a seeded permutation dealt round robin, so
    fold sizes differ by at most one and the same (N, folds, seed) always deals the same."""
    if not 2 <= folds <= num_examples:
        raise ValueError(f"cross-fitting needs 2 <= folds <= {num_examples} examples, "
                         f"got {folds}")
    order = np.random.default_rng(seed).permutation(num_examples)
    fold = np.empty(num_examples, np.int32)
    fold[order] = np.arange(num_examples) % folds
    return fold


def fit_masks(fold: np.ndarray) -> np.ndarray:
    """``float32 [K, N]``: row k is 1 on the examples fold k's fit may read (all but fold k)."""
    folds = int(fold.max()) + 1
    return (fold[None, :] != np.arange(folds)[:, None]).astype(np.float32)


def out_of_fold_exits(fit: Callable, fold: np.ndarray, features: jax.Array) -> jax.Array:
    """``int32 [G, N]``: for every setting, the exit each example takes under the policy
    fitted without its fold. ``fit(weights [N]) -> batched policy [G]``."""
    policies = jax.vmap(fit)(jnp.asarray(fit_masks(fold)))  # [K, G]
    exits = _fold_exits(policies, features)  # [K, G, N]
    n = fold.shape[0]
    return exits[jnp.asarray(fold), :, jnp.arange(n)].T


def crossfit_sweep(fit: Callable, val: Outcomes, test: Outcomes, *,
                   folds: int = DEFAULT_FOLDS, seed: int = DEFAULT_SEED) -> dict[str, Any]:
    """Rows of every setting of the family ``fit`` (``fit(None)``: fitted on all of ``val``)::

        {"val": rows, "test": rows, "selection": ..., ["val_insample": rows]}

    ``test``: the refit on all of validation, scored on test. ``val``: what budget picks read,
    the out-of-fold figures under cross-fitting (with the refit's name and parameters, so
    rows line up with ``test``), else the refit on validation itself. ``val_insample``
    (cross-fitting only): the refit scored on the validation it was fitted on.
    """
    policies = fit(None)
    rows = {split: report_rows(policies, batched_exits(policies, data.features), data)
            for split, data in (("val", val), ("test", test))}
    if folds <= 1:
        return {**rows, "selection": IN_SAMPLE}
    oof = out_of_fold_exits(fit, fold_ids(val.num_examples, folds, seed), val.features)
    return {"val": report_rows(policies, oof, val), "test": rows["test"],
            "val_insample": rows["val"], "selection": selection_name(folds)}
