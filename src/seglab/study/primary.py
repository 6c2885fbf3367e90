"""The study's primary metric: the one number its comparisons, Holm correction, summary and best configuration
rest on (``primary_metric:`` in a study file, mIoU by default). The other metrics are shown beside it.

Why one metric and not all: every extra metric tested is another comparison, and picking the metric after
seeing the results is a garden of forking paths. A study says up front what it is about (one source
notebook argues in Dice, a boundary study in Boundary IoU), and only that metric decides.

Each metric is named here once: its words, where a run records its test and validation values, and which
per-image array (per_image_test.npz) the bootstrap resamples to give it an interval; the figure itself is
seglab.metrics.SPLIT_METRICS[summary], the function the evaluation computes it with.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT = "miou"


@dataclass(frozen=True)
class Metric:
    """One metric a study can be about."""

    name: str  # as a study file spells it (primary_metric: ...)
    label: str  # in sentences and table heads: "test {label}"
    test_key: str  # RunRecord.value key of the test figure (records.METRICS)
    val_key: str  # RunRecord.value key of the validation figure (records.RUN_FACTS / VAL_COLUMNS)
    arrays: str  # the per-image array (per_image_test.npz key) its bootstrap resamples
    summary: str  # its key in metrics.json, in metrics.json's "intervals" and in seglab.metrics.SPLIT_METRICS


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
