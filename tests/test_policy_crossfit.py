"""Honest selection: folds, fits that never read their held-out fold, out-of-fold figures that
come only from fits without the example, and the old in-sample path when folds are off."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jee.policy.bolukbasi import fit_bolukbasi
from jee.policy.budget import budget_table
from jee.policy.crossfit import crossfit_sweep, fit_masks, fold_ids, out_of_fold_exits
from jee.policy.decisions import FeaturePolicy
from jee.policy.features import ALL_FEATURE_NAMES, ExitData, exit_data
from jee.policy.sweeps import (
    policy_report,
    sweep_rows,
    threshold_policies,
    threshold_sweep,
)
from jee.policy.synthetic import synthetic_exit_outputs

E, N, C = 3, 300, 10
LAMBDAS = np.geomspace(0.01, 5.0, 6)


@pytest.fixture(scope="module")
def splits():
    return (exit_data(*synthetic_exit_outputs(E, N, C, seed=11)),
            exit_data(*synthetic_exit_outputs(E, N, C, seed=12)))


def test_folds_are_balanced_seeded_and_cover_every_example():
    fold = fold_ids(103, 5, seed=3)
    assert sorted(np.bincount(fold).tolist()) == [20, 20, 21, 21, 21]
    np.testing.assert_array_equal(fold, fold_ids(103, 5, seed=3))
    assert not np.array_equal(fold, fold_ids(103, 5, seed=4))
    masks = fit_masks(fold)
    # Each example is held out (weight 0) in exactly one fold: its own.
    np.testing.assert_array_equal((masks == 0).sum(0), 1)
    np.testing.assert_array_equal(np.argmin(masks, axis=0), fold)
    with pytest.raises(ValueError):
        fold_ids(3, 5)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class _MemberPolicy(FeaturePolicy):
    """Instrument: feature 0 holds the example's index; exit 0 iff the fit read the example."""

    weights: jax.Array
    num_exits: int = jax.tree.static()
    name: str = jax.tree.static(default="member")

    def decide_features(self, k, features):
        return self.weights[features[:, 0].astype(jnp.int32)] > 0

    @property
    def params(self):
        return {}


def test_selection_never_reads_the_fit_part():
    # Disjoint parts by construction: an example's out-of-fold decision must come from a fit
    # whose fit part does not hold it, so this instrument keeps everyone past exit 0; scored
    # in sample (the old rule) everyone leaves at exit 0.
    n = 50
    features = np.zeros((E, n, 4), np.float32)
    features[:, :, 0] = np.arange(n)
    data = ExitData(features, np.ones((E, n), bool), np.ones((E, n), bool),
                    np.array([0.2, 0.5, 1.0], np.float32))

    def fit(weights):
        w = jnp.ones(n) if weights is None else weights
        return _MemberPolicy(w[None, :], E)  # one setting

    for folds in (2, 5, 7):
        oof = np.asarray(out_of_fold_exits(fit, fold_ids(n, folds), data.features))
        assert oof.shape == (1, n) and (oof > 0).all(), folds
    sweep = crossfit_sweep(fit, data, data, folds=5)
    assert sweep["val"][0]["exit_fractions"][0] == 0.0
    assert sweep["val_insample"][0]["exit_fractions"][0] == 1.0
    assert crossfit_sweep(fit, data, data, folds=0)["val"][0]["exit_fractions"][0] == 1.0


def _scramble(data: ExitData, held_out: np.ndarray, seed: int) -> ExitData:
    """``data`` with the held-out examples' features and correctness replaced by noise."""
    rng = np.random.default_rng(seed)
    features = np.array(data.features)
    features[:, held_out] = rng.normal(size=features[:, held_out].shape) * 3
    correct = np.array(data.correct)
    correct[:, held_out] = rng.uniform(size=correct[:, held_out].shape) < 0.5
    return dataclasses.replace(data, features=jnp.asarray(features),
                               correct=jnp.asarray(correct))


def test_fits_never_read_the_held_out_fold(splits):
    val, _ = splits
    fold = fold_ids(N, 5, seed=0)
    weights = jnp.asarray(fit_masks(fold)[2])
    other = _scramble(val, fold == 2, seed=1)
    for features in (ALL_FEATURE_NAMES[:4], ALL_FEATURE_NAMES):
        a = fit_bolukbasi(val, LAMBDAS, features=features, weights=weights)[0]
        b = fit_bolukbasi(other, LAMBDAS, features=features, weights=weights)[0]
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
        # Reading the held-out fold would change the fit: the scramble is not a no-op.
        full_a = fit_bolukbasi(val, LAMBDAS, features=features)[0]
        full_b = fit_bolukbasi(other, LAMBDAS, features=features)[0]
        assert not np.array_equal(np.asarray(full_a.coef), np.asarray(full_b.coef))
    for family in ("max_prob", "entropy_per_exit"):
        np.testing.assert_array_equal(
            np.asarray(threshold_policies(family, val, weights=weights).thresholds),
            np.asarray(threshold_policies(family, other, weights=weights).thresholds))


def test_all_ones_weights_fit_like_no_weights(splits):
    val, _ = splits
    a = fit_bolukbasi(val, LAMBDAS)[0]
    b = fit_bolukbasi(val, LAMBDAS, weights=np.ones(N, np.float32))[0]
    np.testing.assert_allclose(np.asarray(a.coef), np.asarray(b.coef), rtol=1e-3, atol=1e-4)
    np.testing.assert_array_equal(np.asarray(a.mode), np.asarray(b.mode))
    np.testing.assert_array_equal(
        np.asarray(threshold_policies("max_prob", val).thresholds),
        np.asarray(threshold_policies("max_prob", val, weights=np.ones(N)).thresholds))


def test_folds_off_is_the_old_in_sample_rule(splits):
    val, test = splits
    off = policy_report(val, test, lambdas=LAMBDAS, features="basic", crossfit_folds=0)
    on = policy_report(val, test, lambdas=LAMBDAS, features="basic", crossfit_folds=4)
    assert off["selection"] == "in-sample" and on["selection"] == "crossfit-4"
    # The old code path: fit on all of validation, rows on validation and test.
    old = sweep_rows(fit_bolukbasi(val, LAMBDAS)[0], val, test)
    assert off["families"]["bolukbasi"]["val"] == old["val"]
    assert off["families"]["bolukbasi"]["test"] == old["test"]
    old_t = sweep_rows(threshold_policies("max_prob", val), val, test)
    assert [r["accuracy"] for r in off["families"]["max_prob"]["val"]] == [
        r["accuracy"] for r in old_t["val"]]
    for family, curve in on["families"].items():
        # Cross-fitting changes only what selection reads: the refit (test rows, in-sample
        # validation rows) is the in-sample report's.
        assert curve["test"] == off["families"][family]["test"], family
        assert curve["val_insample"] == off["families"][family]["val"], family
        assert curve["selection"] == "crossfit-4"
    picks = {(b["family"], b["budget"]): b for b in budget_table(on, (0.5, 0.7))}
    pick = picks[("bolukbasi", 0.7)]
    assert pick["selection"] == "crossfit-4" and "val_insample_accuracy" in pick
    assert "val_insample_accuracy" not in budget_table(off, (0.7,))[0]


def test_crossfit_is_deterministic(splits):
    val, test = splits
    a = threshold_sweep("max_prob_per_exit", val, test, folds=5, seed=2)
    b = threshold_sweep("max_prob_per_exit", val, test, folds=5, seed=2)
    assert a == b
