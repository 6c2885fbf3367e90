"""The headline metrics of a split as functions of per-image arrays, and their bootstrap intervals.

Every headline figure is a function of per-image sums (confusion matrices, boundary counts, calibration
histograms, losses) added up over the split's images. Resampling images with replacement and adding up their
arrays is then exactly the split's figure for another draw of test images, so a 95% interval costs no model
run: ``bootstrap_intervals`` gives every evaluation's intervals, and the study's paired comparisons resample
the same way (``resampled``). The images are the unit of resampling because they, not pixels, are what the
test set sampled: neighbouring pixels are not independent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from seglab.metrics.boundary import mean_boundary_iou
from seglab.metrics.calibration import ece
from seglab.metrics.confusion import mean_iou

BATCH = 200  # resamples evaluated at once: bounds the memory of one bootstrap step
RESAMPLES = 9999
CONFIDENCE = 0.95


def _diag(m: np.ndarray) -> np.ndarray:
    return np.diagonal(m, axis1=-2, axis2=-1)


def mean_dice(mats) -> np.ndarray:
    """(..., k, k) -> (...) mean Dice over classes present in labels or predictions (2 TP / (T + P))."""
    m = np.asarray(mats, np.float64)
    tp, size = _diag(m), m.sum(-1) + m.sum(-2)
    present = size > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        dice = np.where(present, 2 * tp / np.where(present, size, 1.0), 0.0)
    n = present.sum(-1)
    return np.where(n > 0, dice.sum(-1) / np.maximum(n, 1), np.nan)


def pixel_accuracy(mats) -> np.ndarray:
    """(..., k, k) -> (...) correct labelled pixels over labelled pixels."""
    m = np.asarray(mats, np.float64)
    total = m.sum((-1, -2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, _diag(m).sum(-1) / np.where(total > 0, total, 1.0), np.nan)


def _loss_pairs(loss: np.ndarray) -> np.ndarray:
    """(n,) per-image losses (nan: an image with no labelled pixel) -> (n, 2) [loss, counted] to be summed."""
    loss = np.asarray(loss, np.float64)
    ok = np.isfinite(loss)
    return np.stack([np.where(ok, loss, 0.0), ok.astype(np.float64)], axis=-1)


def _mean_loss(pairs: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs[..., 1] > 0, pairs[..., 0] / np.where(pairs[..., 1] > 0, pairs[..., 1], 1), np.nan)


@dataclass(frozen=True)
class SplitMetric:
    """A headline metric: which per-image array it reads (a key of per_image_<split>.npz), how that array is
    made summable, and the figure of the array summed over images (vectorised over leading axes)."""

    name: str
    key: str
    of_sum: Callable[[np.ndarray], np.ndarray]
    prepare: Callable[[np.ndarray], np.ndarray] = np.asarray


SPLIT_METRICS: dict[str, SplitMetric] = {m.name: m for m in (
    SplitMetric("miou", "matrices", mean_iou),
    SplitMetric("mean_dice", "matrices", mean_dice),
    SplitMetric("pixel_accuracy", "matrices", pixel_accuracy),
    SplitMetric("boundary_iou", "boundary", mean_boundary_iou),
    SplitMetric("ece", "calibration", ece),
    SplitMetric("ece_calibrated", "calibration_t", ece),
    SplitMetric("loss", "loss", _mean_loss, _loss_pairs),
)}


def summable(arrays: dict[str, np.ndarray], name: str) -> np.ndarray | None:
    """(n, ...) float64 array of metric ``name`` ready to be summed over images, or None when absent."""
    metric = SPLIT_METRICS[name]
    if arrays.get(metric.key) is None:
        return None
    return np.asarray(metric.prepare(arrays[metric.key]), np.float64)


def split_value(per_image: np.ndarray, name: str, idx: np.ndarray | None = None) -> np.ndarray:
    """Metric ``name`` of the split made of images ``idx`` ((..., n) indices, drawn with replacement; None: every
    image once) of the summable ``per_image`` (n, ...). Summing ``per_image[idx]`` equals counts @ per_image,
    the counts being how often each image was drawn: the same numbers without an (..., n, ...) copy."""
    n, shape = per_image.shape[0], per_image.shape[1:]
    if idx is None:
        return SPLIT_METRICS[name].of_sum(per_image.sum(0))
    rows = idx.reshape(-1, idx.shape[-1])
    offsets = n * np.arange(len(rows))[:, None]
    counts = np.bincount((rows + offsets).ravel(), minlength=n * len(rows)).reshape(len(rows), n)
    summed = (counts @ per_image.reshape(n, -1)).reshape(*idx.shape[:-1], *shape)
    return SPLIT_METRICS[name].of_sum(summed)


def resampled(n: int, statistic: Callable[[np.ndarray], np.ndarray], n_resamples: int = RESAMPLES,
              confidence: float = CONFIDENCE, seed: int = 0):
    """scipy's percentile bootstrap over image indices 0..n-1 (``statistic`` maps (..., n) indices to figures)."""

    def stat(idx, axis=-1):
        return statistic(np.moveaxis(np.asarray(idx), axis, -1))

    return stats.bootstrap((np.arange(n),), stat, n_resamples=n_resamples, batch=BATCH, vectorized=True,
                           confidence_level=confidence, method="percentile",
                           random_state=np.random.default_rng(seed))


def bootstrap_intervals(arrays: dict[str, np.ndarray], names: Sequence[str] | None = None,
                        n_resamples: int = RESAMPLES, confidence: float = CONFIDENCE,
                        seed: int = 0) -> dict[str, tuple[float, float] | None]:
    """{metric: (low, high)} percentile-bootstrap intervals over the images of ``arrays`` (the per-image file's
    arrays) for each of ``names`` (default: every headline metric whose array is there). The same resamples
    for every metric (one seed), so their intervals describe the same alternative test sets. None for a
    metric whose figure is undefined in some resamples' (e.g. no labelled pixel) or with fewer than 2 images."""
    names = [n for n in (names or SPLIT_METRICS) if summable(arrays, n) is not None]
    out: dict[str, tuple[float, float] | None] = {}
    for name in names:
        per_image = summable(arrays, name)
        n = per_image.shape[0]
        if n < 2 or not np.isfinite(split_value(per_image, name)):
            out[name] = None
            continue
        with np.errstate(invalid="ignore"):
            res = resampled(n, lambda idx, a=per_image, m=name: split_value(a, m, idx), n_resamples, confidence,
                            seed)
        low, high = res.confidence_interval
        out[name] = (float(low), float(high)) if np.isfinite(low) and np.isfinite(high) else None
    return out
