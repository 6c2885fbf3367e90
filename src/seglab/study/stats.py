"""Noise estimates for a study's verdicts, so a difference is only called one when it beats the noise.

Two sources of noise are separate here. Test-set noise: the test images are a sample, so the split mIoU
would move with other images; a bootstrap over images (resampling per-image confusion matrices, then
summing them, exactly as the split mIoU is computed) measures it. Training noise: another seed gives
another model; a paired test across seeds measures it. Several comparisons at once are corrected with
Holm's step-down method.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from seglab.metrics import mean_iou
from seglab.metrics.summary import SPLIT_METRICS, resampled, split_value

MAX_EXACT_PAIRS = 20  # the exact sign-flip test enumerates 2**n patterns
ONE_SEED = "one seed per configuration: no training-noise estimate"
NO_SPREAD = "identical differences across seeds: no noise estimate"


@dataclass(frozen=True)
class Interval:
    """A point estimate with its bootstrap confidence interval (and p-value for a difference)."""

    estimate: float
    low: float
    high: float
    p_value: float | None
    n_resamples: int
    method: str


@dataclass(frozen=True)
class SeedTest:
    """Paired comparison across training seeds; ``reason`` says why no test was possible (else None)."""

    n: int
    diff: float
    low: float | None
    high: float | None
    p_value: float | None
    p_exact: float | None
    min_p_exact: float | None
    effect_size: float | None
    reason: str | None


miou = mean_iou  # mIoU of each matrix of a stack: the one IoU formula, in seglab.metrics


def _as_arrays(mats, metric: str = "miou") -> list[np.ndarray]:
    """One (n, ...) per-image array, or a list of them (one per seed) -> list of float64 arrays; confusion
    matrices (the arrays of mIoU, Dice and pixel accuracy) must be (n, k, k)."""
    arrays = [mats] if isinstance(mats, np.ndarray) else list(mats)
    if not arrays:
        raise ValueError("no per-image arrays given")
    out = []
    for a in arrays:
        a = np.asarray(a)
        if SPLIT_METRICS[metric].key == "matrices" and (a.ndim != 3 or a.shape[1] != a.shape[2]):
            raise ValueError(f"expected per-image matrices of shape (n, k, k), got {a.shape}")
        if a.ndim < 1:
            raise ValueError(f"expected per-image arrays of shape (n, ...), got {a.shape}")
        out.append(a.astype(np.float64))
    return out


def bootstrap_miou(mats, n_resamples: int = 9999, confidence: float = 0.95, seed: int = 0,
                   metric: str = "miou") -> Interval:
    """A split's figure (mIoU by default; any of seglab.metrics.SPLIT_METRICS from its summable per-image
    array) with a percentile bootstrap interval over test images (test-set noise only)."""
    (mats,) = _as_arrays(mats, metric)
    n = mats.shape[0]
    res = resampled(n, lambda idx: split_value(mats, metric, idx), n_resamples, confidence, seed)
    low, high = res.confidence_interval
    return Interval(float(split_value(mats, metric)), float(low), float(high), None, n_resamples,
                    f"percentile bootstrap over {n} test images")


def paired_bootstrap_diff(mats_a, mats_b, n_resamples: int = 9999, confidence: float = 0.95,
                          seed: int = 0, metric: str = "miou") -> Interval:
    """metric(A) - metric(B) on the same test images (mIoU by default), the same resampled images for both sides.

    Resampling both sides together keeps the image-to-image correlation (hard images are hard for
    both models), which an unpaired interval would ignore. Each side may be a list of per-seed arrays:
    the statistic is then the difference of the seed-mean figures. The p-value is the two-sided
    percentile-bootstrap one, consistent with whether the interval excludes 0. Arrays are the metric's
    summable per-image arrays (``seglab.metrics.summary.summable``): confusion matrices for mIoU, Dice and
    pixel accuracy, boundary counts for Boundary IoU.
    """
    side_a, side_b = _as_arrays(mats_a, metric), _as_arrays(mats_b, metric)
    sizes = {a.shape[0] for a in side_a + side_b}
    if len(sizes) != 1:
        raise ValueError(f"both sides must be scored on the same images; got image counts {sorted(sizes)}")
    n = sizes.pop()

    def statistic(idx):
        mean_a = np.mean([split_value(a, metric, idx) for a in side_a], axis=0)
        mean_b = np.mean([split_value(b, metric, idx) for b in side_b], axis=0)
        return mean_a - mean_b

    res = resampled(n, statistic, n_resamples, confidence, seed)
    estimate = float(statistic(np.arange(n)))
    dist = res.bootstrap_distribution
    # ties at 0 count on both sides, so identical models (all zeros) get p = 1
    p = float(min(1.0, 2 * min(np.mean(dist <= 0), np.mean(dist >= 0))))
    low, high = res.confidence_interval
    seeds = f", {len(side_a)} vs {len(side_b)} seeds" if len(side_a) + len(side_b) > 2 else ""
    return Interval(estimate, float(low), float(high), p, n_resamples,
                    f"paired percentile bootstrap over {n} test images{seeds}")


def _sign_flip_p(d: np.ndarray) -> float:
    """Exact two-sided p of the sign-flip permutation test (statistic |mean d|), all 2**n patterns."""
    n = len(d)
    if n > MAX_EXACT_PAIRS:
        raise ValueError(f"exact sign-flip test enumerates 2**n patterns; n={n} > {MAX_EXACT_PAIRS}")
    signs = 1 - 2 * ((np.arange(2**n)[:, None] >> np.arange(n)) & 1)
    means = np.abs(signs @ d) / n
    observed = abs(d.mean())
    return float(np.mean(means >= observed - 1e-12 * max(observed, 1e-300)))


def paired_seed_test(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> SeedTest:
    """Training noise: paired t-test of test mIoUs across seeds (a[i], b[i] share seed i).

    Also the exact sign-flip test, whose smallest reachable p-value (2 / 2**n) tells how many seeds a
    verdict needs at all: with 3 seeds no result can reach p < 0.05 by that test.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"need two equal-length, non-empty lists paired by seed; got {a.shape}, {b.shape}")
    d = a - b
    n = len(d)
    p_exact, min_p = _sign_flip_p(d), min(1.0, 2 / 2**n)
    if n < 2 or np.all(d == d[0]):
        reason = ONE_SEED if n < 2 else NO_SPREAD
        return SeedTest(n, float(d.mean()), None, None, None, p_exact, min_p, None, reason)
    res = stats.ttest_rel(a, b)
    ci = res.confidence_interval(confidence_level=confidence)
    sd = float(np.std(d, ddof=1))
    effect = float(d.mean() / sd) if sd > 0 else None
    return SeedTest(n, float(d.mean()), float(ci.low), float(ci.high), float(res.pvalue), p_exact, min_p,
                    effect, None)


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values, in input order; None entries pass through and are not counted.

    Controls the family-wise error over all comparisons of a study without Bonferroni's full penalty.
    """
    present = [i for i, p in enumerate(p_values) if p is not None]
    m = len(present)
    order = sorted(present, key=lambda i: p_values[i])
    out: list[float | None] = [None] * len(p_values)
    running = 0.0
    for j, i in enumerate(order):  # j is 0-based: factor m - j
        running = max(running, min(1.0, (m - j) * float(p_values[i])))
        out[i] = running
    return out


def seed_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float | None, float | None]:
    """The t-interval of the mean over seeds (training noise, not test-image noise); (None, None) with one
    seed or no spread."""
    if len(values) < 2 or np.std(values) == 0:
        return None, None
    low, high = stats.t.interval(confidence, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    return float(low), float(high)
