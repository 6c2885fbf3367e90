"""The study's primary metric: the one number its comparisons, Holm correction, summary and best configuration
rest on (``primary_metric:`` in a study file, mIoU by default). The other metrics are shown beside it.

Why one metric and not all: every extra metric tested is another comparison, and picking the metric after
seeing the results is a garden of forking paths. A study says up front what it is about (one source
notebook argues in Dice, a boundary study in Boundary IoU), and only that metric decides.

Each metric is named here once: its words, where a run records its test and validation values, and which
per-image array (per_image_test.npz) the bootstrap resamples to give it an interval. The functions below
score a split from per-image arrays summed over its images, exactly as the evaluation does, vectorised over
leading axes so a bootstrap scores thousands of resampled splits in one call.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from seglab.metrics import mean_iou

DEFAULT = "miou"


@dataclass(frozen=True)
class Metric:
    """One metric a study can be about."""

    name: str  # as a study file spells it (primary_metric: ...)
    label: str  # in sentences and table heads: "test {label}"
    test_key: str  # RunRecord.value key of the test figure (records.METRICS)
    val_key: str  # RunRecord.value key of the validation figure (records.RUN_FACTS / VAL_COLUMNS)
    arrays: str  # the per-image array (per_image_test.npz key) its bootstrap resamples
    summary: str  # its key in metrics.json and in metrics.json's "intervals"


METRICS = {m.name: m for m in (
    Metric("miou", "mIoU", "test_miou", "val_miou", "matrices", "miou"),
    Metric("dice", "mean Dice", "mean_dice", "val_mean_dice", "matrices", "mean_dice"),
    Metric("boundary_iou", "Boundary IoU", "boundary_iou", "val_boundary_iou", "boundary", "boundary_iou"),
    Metric("pixel_accuracy", "pixel accuracy", "pixel_accuracy", "val_pixel_accuracy", "matrices", "pixel_accuracy"),
)}


def metric(name: str | None) -> Metric:
    """The metric a study file names (None: the default, mIoU); ValueError naming the choices otherwise."""
    if name is None:
        return METRICS[DEFAULT]
    if not isinstance(name, str) or name not in METRICS:
        raise ValueError(f"must be one of {', '.join(METRICS)}, got {name!r}")
    return METRICS[name]


# -- a split's value from per-image arrays summed over its images ---------------------------------------------
# TODO core: seglab.metrics.summary.SPLIT_METRICS holds these functions once issue 24's core lands; swap them.


def _nanmean_last(x: np.ndarray) -> np.ndarray:
    """Mean over the last axis of the entries that are not nan; nan where none is."""
    ok = ~np.isnan(x)
    n = ok.sum(-1)
    return np.where(n > 0, np.where(ok, x, 0.0).sum(-1) / np.maximum(n, 1), np.nan)


def mean_dice(mats) -> np.ndarray:
    """Class-mean Dice 2|A∩B| / (|A| + |B|) of (..., k, k) matrices; absent classes left out, as for mIoU."""
    m = np.asarray(mats, np.float64)
    tp = np.diagonal(m, axis1=-2, axis2=-1)
    both = m.sum(-1) + m.sum(-2)
    with np.errstate(invalid="ignore", divide="ignore"):
        return _nanmean_last(np.where(both > 0, 2 * tp / np.where(both > 0, both, 1.0), np.nan))


def pixel_accuracy(mats) -> np.ndarray:
    """Share of labelled pixels predicted right, of (..., k, k) matrices; nan with no labelled pixel."""
    m = np.asarray(mats, np.float64)
    total = m.sum((-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, np.trace(m, axis1=-2, axis2=-1) / np.where(total > 0, total, 1.0), np.nan)


def class_boundary_iou(counts) -> np.ndarray:
    """(..., C, 2) [intersection, union] boundary-band counts -> (..., C) IoU; nan where the union is 0."""
    c = np.asarray(counts, np.float64)
    inter, union = c[..., 0], c[..., 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1.0), np.nan)


def boundary_iou(counts) -> np.ndarray:
    """Class-mean Boundary IoU of (..., C, 2) counts, classes without any boundary pixel left out."""
    return _nanmean_last(class_boundary_iou(counts))


SPLIT = {"miou": mean_iou, "dice": mean_dice, "pixel_accuracy": pixel_accuracy, "boundary_iou": boundary_iou}


def split_value(m: Metric, summed) -> np.ndarray:
    """``m`` of a split given its per-image arrays (``m.arrays``) summed over images, shape (..., *array)."""
    return SPLIT[m.name](summed)

