"""Noise estimates of a study: mIoU definition, bootstrap over test images, seed tests, Holm correction."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from scipy import stats

from seglab.metrics import ConfusionMatrix
from seglab.study.stats import (
    NO_SPREAD,
    ONE_SEED,
    Interval,
    _sign_flip_p,
    bootstrap_miou,
    holm,
    miou,
    paired_bootstrap_diff,
    paired_seed_test,
)

B = 999  # resamples in tests: enough for the checks, fast

# Hand example: IoU = tp / (row + col - tp)
#   class 0: 5 / (6 + 7 - 5) = 5/8;  class 1: 3 / (6 + 5 - 3) = 3/8;  class 2: 4 / (5 + 5 - 4) = 2/3
#   mIoU = (5/8 + 3/8 + 2/3) / 3 = 5/9
HAND = np.array([[5, 1, 0], [2, 3, 1], [0, 1, 4]])
HAND_MIOU = 5 / 9


def synthetic(rng: np.random.Generator, n: int, k: int = 4, acc: float = 0.8, truth=None):
    """(n, k, k) per-image matrices: per-image accuracy around ``acc``, errors on the next two classes."""
    t = rng.integers(50, 500, (n, k)) if truth is None else truth
    a = np.clip(acc + rng.normal(0, 0.05, (n, 1)), 0.05, 0.99)
    correct = rng.binomial(t, a)
    wrong = t - correct
    mats = np.zeros((n, k, k), dtype=np.int64)
    c = np.arange(k)
    mats[:, c, c] = correct
    mats[:, c, (c + 1) % k] += wrong // 2
    mats[:, c, (c + 2) % k] += wrong - wrong // 2
    return mats


# --- miou -----------------------------------------------------------------------------------------


def test_miou_hand_example():
    assert float(miou(HAND)) == pytest.approx(HAND_MIOU, abs=1e-15)


def test_miou_excludes_absent_class_but_counts_predicted_only_class():
    absent = np.zeros((4, 4), dtype=np.int64)
    absent[:3, :3] = HAND
    # counted as 0 it would be 5/12, counted as 1 it would be 2/3
    assert float(miou(absent)) == pytest.approx(HAND_MIOU, abs=1e-15)
    predicted_only = absent.copy()
    predicted_only[0, 3] = 1  # class 3 never true, predicted once: IoU 0, counted
    # class 0 becomes 5 / (7 + 7 - 5) = 5/9; mIoU = (5/9 + 3/8 + 2/3 + 0) / 4
    assert float(miou(predicted_only)) == pytest.approx((5 / 9 + 3 / 8 + 2 / 3) / 4, abs=1e-15)


def test_miou_vectorised_shapes_and_nan():
    rng = np.random.default_rng(1)
    stack = rng.integers(0, 20, (2, 3, 5, 5))
    stack[1, 2] = 0  # nothing present
    out = miou(stack)
    assert out.shape == (2, 3) and out.dtype == np.float64
    for i, j in itertools.product(range(2), range(3)):
        if (i, j) == (1, 2):
            assert math.isnan(out[i, j])
        else:
            assert out[i, j] == float(miou(stack[i, j]))
    assert miou(np.zeros((0, 3, 3))).shape == (0,)


def test_miou_matches_confusion_matrix():
    rng = np.random.default_rng(2)
    for _ in range(20):
        m = rng.integers(0, 50, (6, 6))
        gone = rng.choice(6, size=2, replace=False)
        m[gone, :] = 0
        m[:, gone] = 0  # two classes absent from labels and predictions
        cm = ConfusionMatrix(6)
        cm.mat = torch.tensor(m)
        assert float(miou(m)) == pytest.approx(cm.compute()["miou"], rel=1e-12)


# --- bootstrap_miou -------------------------------------------------------------------------------


def test_bootstrap_matches_direct_scipy_call():
    mats = synthetic(np.random.default_rng(3), 40)

    def stat(idx, axis=-1):
        m = mats[idx].sum(axis=-3).astype(float)
        tp = np.diagonal(m, axis1=-2, axis2=-1)
        with np.errstate(invalid="ignore"):
            iou = tp / (m.sum(-1) + m.sum(-2) - tp)
        return np.nanmean(iou, axis=-1)

    ref = stats.bootstrap((np.arange(40),), stat, n_resamples=B, vectorized=True, method="percentile",
                          random_state=np.random.default_rng(7))
    got = bootstrap_miou(mats, n_resamples=B, seed=7)
    assert isinstance(got, Interval)
    assert got.low == pytest.approx(ref.confidence_interval.low, abs=1e-12)
    assert got.high == pytest.approx(ref.confidence_interval.high, abs=1e-12)
    assert got.estimate == pytest.approx(float(miou(mats.sum(0))), abs=1e-15)
    assert got.low < got.estimate < got.high
    assert got.p_value is None and got.n_resamples == B and "40 test images" in got.method


def test_bootstrap_identical_images_zero_width():
    one = synthetic(np.random.default_rng(4), 1)[0]
    got = bootstrap_miou(np.repeat(one[None], 30, axis=0), n_resamples=B)
    assert got.estimate == pytest.approx(float(miou(one)), abs=1e-12)
    assert got.low == pytest.approx(got.estimate, abs=1e-12)
    assert got.high == pytest.approx(got.estimate, abs=1e-12)


def test_bootstrap_more_images_narrower():
    rng = np.random.default_rng(5)
    small = bootstrap_miou(synthetic(rng, 20), n_resamples=B)
    large = bootstrap_miou(synthetic(rng, 400), n_resamples=B)
    assert (large.high - large.low) < (small.high - small.low) / 2  # expected ratio ~ sqrt(20)


# --- paired_bootstrap_diff ------------------------------------------------------------------------


def test_paired_identical_models():
    mats = synthetic(np.random.default_rng(6), 25)
    got = paired_bootstrap_diff(mats, mats.copy(), n_resamples=B)
    assert got.estimate == 0 and got.p_value == 1.0
    assert got.low == 0 and got.high == 0


def _clear_pair(n=30, seed=8):
    rng = np.random.default_rng(seed)
    truth = rng.integers(50, 500, (n, 4))
    good = synthetic(rng, n, acc=0.9, truth=truth)
    bad = synthetic(rng, n, acc=0.6, truth=truth)
    assert (miou(good) > miou(bad)).all()  # better on every image
    return good, bad


def test_paired_clear_difference():
    good, bad = _clear_pair()
    got = paired_bootstrap_diff(good, bad, n_resamples=B)
    assert got.estimate == pytest.approx(float(miou(good.sum(0)) - miou(bad.sum(0))), abs=1e-15)
    assert got.estimate > 0 and got.p_value < 0.01 and got.low > 0
    worse = paired_bootstrap_diff(bad, good, n_resamples=B)
    assert worse.p_value < 0.01 and worse.high < 0


def test_paired_difference_on_one_image_only_is_not_significant():
    # resamples without image 0 give a difference of exactly 0; those ties count on both sides
    good, bad = _clear_pair(n=20)
    one = bad.copy()
    one[0] = good[0]
    got = paired_bootstrap_diff(one, bad, n_resamples=B)
    assert got.estimate > 0 and got.low == 0
    assert 0.5 < got.p_value < 0.9  # about 2 * (1 - 1/20) ** 20 = 0.72


def test_paired_antisymmetric():
    rng = np.random.default_rng(9)
    a, b = synthetic(rng, 30, acc=0.75), synthetic(rng, 30, acc=0.72)
    assert paired_bootstrap_diff(a, b, n_resamples=B).estimate == -paired_bootstrap_diff(
        b, a, n_resamples=B).estimate


def test_paired_seed_lists():
    rng = np.random.default_rng(10)
    a1, a2, b1, b2 = (synthetic(rng, 30, acc=x) for x in (0.8, 0.78, 0.7, 0.65))
    assert paired_bootstrap_diff([a1], [b1], n_resamples=B) == paired_bootstrap_diff(a1, b1, n_resamples=B)
    two = paired_bootstrap_diff([a1, a2], [b1, b2], n_resamples=B)
    by_hand = (miou(a1.sum(0)) + miou(a2.sum(0))) / 2 - (miou(b1.sum(0)) + miou(b2.sum(0))) / 2
    assert two.estimate == pytest.approx(float(by_hand), abs=1e-15)
    assert two.low < two.estimate < two.high and "2 vs 2 seeds" in two.method
    with pytest.raises(ValueError, match="same images"):
        paired_bootstrap_diff(a1, b1[:-1], n_resamples=B)


# --- paired_seed_test -----------------------------------------------------------------------------


def test_seed_test_matches_ttest_rel_and_dz():
    a, b = [0.61, 0.63, 0.60, 0.64], [0.60, 0.60, 0.59, 0.61]
    got = paired_seed_test(a, b)
    ref = stats.ttest_rel(a, b)
    ci = ref.confidence_interval(0.95)
    assert got.p_value == pytest.approx(ref.pvalue, rel=1e-12)
    assert (got.low, got.high) == (pytest.approx(ci.low, rel=1e-12), pytest.approx(ci.high, rel=1e-12))
    # d = [.01, .03, .01, .03]: mean .02, sd (ddof=1) = sqrt(4 * .01**2 / 3) -> d_z = sqrt(3)
    assert got.diff == pytest.approx(0.02, abs=1e-12)
    assert got.effect_size == pytest.approx(math.sqrt(3), rel=1e-9)
    assert got.n == 4 and got.reason is None
    assert got.p_exact == 0.125 and got.min_p_exact == 0.125  # only all-plus and all-minus reach |mean|


def test_seed_test_exact_n3_floor():
    got = paired_seed_test([0.7, 0.72, 0.71], [0.6, 0.6, 0.6])
    assert got.p_exact == 0.25 and got.min_p_exact == 0.25
    assert got.p_value < 0.05  # the t-test can go below what the exact test can reach


def test_sign_flip_matches_enumeration():
    d = np.random.default_rng(11).normal(0.01, 0.02, 6)
    flips = [abs(np.dot(s, d)) for s in itertools.product((1, -1), repeat=6)]
    expected = Fraction(sum(f >= abs(d.sum()) - 1e-15 for f in flips), 2**6)
    assert _sign_flip_p(d) == pytest.approx(float(expected), abs=1e-15)
    assert 0 < _sign_flip_p(d) < 1


def test_seed_test_without_noise_estimate():
    one = paired_seed_test([0.7], [0.6])
    assert one.p_value is None and one.reason == ONE_SEED and one.n == 1
    assert one.diff == pytest.approx(0.1) and one.effect_size is None and one.low is None
    same = paired_seed_test([0.75, 0.5], [0.5, 0.25])  # exact binary values: d = [.25, .25]
    assert same.p_value is None and same.reason == NO_SPREAD and same.effect_size is None
    with pytest.raises(ValueError):
        paired_seed_test([0.7, 0.6], [0.6])


# --- holm -----------------------------------------------------------------------------------------


def test_holm_textbook():
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02], abs=1e-15)


def test_holm_none_passthrough_and_cap():
    assert holm([0.01, None, 0.04]) == [pytest.approx(0.02), None, pytest.approx(0.04)]  # m = 2
    assert holm([None]) == [None] and holm([]) == []
    assert holm([0.5, 0.6]) == [1.0, 1.0]
    assert holm([0.3, 0.9, 0.8]) == pytest.approx([0.9, 1.0, 1.0])


def test_holm_monotone():
    p = list(np.random.default_rng(12).uniform(0, 0.2, 15))
    adj = holm(p)
    order = np.argsort(p)
    assert all(adj[i] >= p[i] for i in range(15))
    assert all(adj[order[j]] <= adj[order[j + 1]] for j in range(14))
    assert max(adj) <= 1.0
