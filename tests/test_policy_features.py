"""Exit features and correctness against numpy hand computations."""

import numpy as np
import pytest

from jee.policy.features import FEATURE_NAMES, exit_data, exit_features, topk_correct


def _numpy_features(logits, conf):
    z = logits.astype(np.float64)
    z = z - z.max(-1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    srt = np.sort(p, axis=-1)[..., ::-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(p > 0, p * np.log(p), 0.0)
    return np.stack([srt[..., 0], srt[..., 0] - srt[..., 1], -plogp.sum(-1), conf], axis=-1)


def test_features_match_numpy():
    rng = np.random.default_rng(0)
    logits = (3 * rng.normal(size=(3, 50, 7))).astype(np.float32)
    conf = rng.uniform(0.01, 0.99, size=(3, 50)).astype(np.float32)
    got = np.asarray(exit_features(logits, conf))
    assert got.shape == (3, 50, len(FEATURE_NAMES))
    np.testing.assert_allclose(got, _numpy_features(logits, conf), rtol=1e-5, atol=1e-6)


def test_features_hand_values():
    # Uniform over 4 classes: max 1/4, margin 0, entropy log 4. One dominant class with the
    # rest ~e-1000: max 1, margin 1, entropy 0 (and no nan from 0 * log 0).
    logits = np.array([[0.0, 0.0, 0.0, 0.0], [1000.0, 0.0, 0.0, 0.0]], np.float32)
    got = np.asarray(exit_features(logits, np.array([0.2, 0.9], np.float32)))
    np.testing.assert_allclose(got[0], [0.25, 0.0, np.log(4.0), 0.2], atol=1e-6)
    np.testing.assert_allclose(got[1], [1.0, 1.0, 0.0, 0.9], atol=1e-6)


def test_topk_correct_matches_numpy_rank():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(2, 200, 10)).astype(np.float32)
    labels = rng.integers(0, 10, 200)
    # Rank of the label's logit = how many classes beat it (no ties with continuous noise).
    rank = (logits > np.take_along_axis(logits, labels[None, :, None], -1)).sum(-1)
    for k in (1, 3, 5):
        np.testing.assert_array_equal(np.asarray(topk_correct(logits, labels[None], k)), rank < k)


def test_top5_clipped_to_number_of_classes():
    # With 3 classes, "top-5" means top-3: always correct.
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(2, 30, 3)).astype(np.float32)
    labels = rng.integers(0, 3, 30)
    data = exit_data(logits, np.full((2, 30), 0.5, np.float32), labels, [0.5, 1.0])
    assert np.asarray(data.correct_top5).all()
    np.testing.assert_array_equal(np.asarray(data.correct), logits.argmax(-1) == labels)


def test_exit_data_container():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(3, 20, 5)).astype(np.float32)
    conf = rng.uniform(size=(3, 20)).astype(np.float32)
    data = exit_data(logits, conf, rng.integers(0, 5, 20), [0.3, 0.6, 1.1])
    assert (data.num_exits, data.num_examples) == (3, 20)
    assert data.feature_names[:len(FEATURE_NAMES)] == FEATURE_NAMES
    np.testing.assert_allclose(np.asarray(data.feature("conf")), conf)
    with pytest.raises(ValueError):
        exit_data(logits, conf[:2], np.zeros(20, int), [0.3, 0.6, 1.1])
    with pytest.raises(ValueError):
        exit_data(logits, conf, np.zeros(20, int), [0.3, 1.1])
