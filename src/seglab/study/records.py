"""One run of a study as its folder holds it: the study index's entry, run.json, the test metrics, the
config and (on demand) the per-image arrays (confusion matrices, boundary counts, ...), with a status that
says what can be trusted. Validation figures other than mIoU come from metrics.csv's row of the best
validation mIoU: that row's checkpoint is the one scored on test.
A run killed or failed mid-way is a normal record here, not an error, so a report can show what is there.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

from seglab.errors import SeglabError
from seglab.runs import RunDir
from seglab.study import stats

# Aggregated per configuration: key -> where it comes from (metrics.json key, or run.json key).
METRICS = {"test_miou": "miou", "pixel_accuracy": "pixel_accuracy", "mean_dice": "mean_dice",
           "boundary_iou": "boundary_iou", "test_loss": "loss", "ece": "ece", "ece_calibrated": "ece_calibrated"}
# Validation figures: key -> metrics.csv column, read at the row of the best val_miou (the scored checkpoint).
VAL_COLUMNS = {"val_mean_dice": "val_mean_dice", "val_pixel_accuracy": "val_pixel_accuracy",
               "val_boundary_iou": "val_boundary_iou"}
RUN_FACTS = {"val_miou": "best_val_miou", "train_seconds": "train_seconds", "epochs": "epochs", "steps": "steps",
             "images_seen": "images_seen", "cpu_seconds": "cpu_seconds", "img_per_s": "img_per_s"}


@dataclass
class RunRecord:
    """One run (one seed) of the study, with whatever its folder holds."""

    name: str
    config_name: str
    group: str
    baseline: bool
    seed: int
    status: str  # finished | failed | running | pending | incomplete (finished but no test metrics)
    error: str | None
    run_dir: RunDir
    info: dict  # run.json
    test: dict | None  # metrics.json
    config: dict | None  # config.yaml
    _intervals: dict = field(default_factory=dict, repr=False, compare=False)  # interval() by metric name

    @property
    def finished(self) -> bool:
        return self.status == "finished"

    @property
    def loss(self) -> str | None:
        return ((self.config or {}).get("train") or {}).get("loss")

    def value(self, key: str) -> float | None:
        """A metric of this run by aggregated key (see METRICS, VAL_COLUMNS and RUN_FACTS); None when the run
        does not record it (older runs have no Boundary IoU, calibration or test loss)."""
        if key in METRICS:
            return (self.test or {}).get(METRICS[key])
        if key in VAL_COLUMNS:
            return (self.best_val_row or {}).get(VAL_COLUMNS[key])
        if key == "val_miou" and self.info.get("best_val_miou") is None:
            vals = [r["val_miou"] for r in self.epochs() if r.get("val_miou") is not None]
            return max(vals) if vals else None
        return self.info.get(RUN_FACTS[key])

    def epochs(self) -> list[dict]:
        """metrics.csv: one row per validation."""
        return self.run_dir.read_epochs()

    @functools.cached_property
    def best_val_row(self) -> dict | None:
        """metrics.csv's row with the best validation mIoU: the checkpoint (best.ckpt) scored on test."""
        rows = [r for r in self.epochs() if r.get("val_miou") is not None]
        return max(rows, key=lambda r: r["val_miou"]) if rows else None

    @functools.cached_property
    def per_image(self):
        """(n, k, k) per-image test confusion matrices, or None (older runs, unfinished runs)."""
        found = self.run_dir.read_per_image("test") if self.finished else None
        return None if found is None else found[0]

    @functools.cached_property
    def arrays(self) -> dict | None:
        """Every per-image test array (matrices, boundary, calibration, loss, images), or None."""
        return self.run_dir.read_per_image_arrays("test") if self.finished else None

    def image_arrays(self, key: str):
        """One per-image test array by per_image_test.npz key ("matrices", "boundary"), or None."""
        if key == "matrices":
            return self.per_image
        return (self.arrays or {}).get(key)

    def interval(self, m) -> stats.Interval | None:
        """95% bootstrap interval over test images of metric ``m`` (a study.primary.Metric): computed from the
        per-image arrays, as the comparisons are, else metrics.json's recorded interval, else None."""
        if m.name not in self._intervals:
            found = self.image_arrays(m.arrays)
            if m.name == "miou" and found is not None and len(found):
                iv = self.test_interval
            elif found is not None and len(found):
                iv = stats.bootstrap_miou(found, metric=m.summary)
            else:
                iv = self.recorded_interval(m.summary)
            self._intervals[m.name] = iv
        return self._intervals[m.name]

    def recorded_interval(self, key: str) -> stats.Interval | None:
        """metrics.json's ``intervals[key]`` (written by evaluate) as an Interval, or None."""
        test = self.test or {}
        low_high = (test.get("intervals") or {}).get(key)
        if not isinstance(low_high, (list, tuple)) or len(low_high) != 2 or None in low_high:
            return None
        about = test.get("interval") or {}
        return stats.Interval(test.get(key), float(low_high[0]), float(low_high[1]), None,
                              int(about.get("resamples") or 0), str(about.get("method") or "bootstrap"))

    @functools.cached_property
    def test_interval(self) -> stats.Interval | None:
        """95% bootstrap interval of this run's test mIoU over test images."""
        return None if self.per_image is None else stats.bootstrap_miou(self.per_image)

    def work(self) -> float | None:
        """Images this run trained on."""
        return self.info.get("images_seen")

    def planned_work(self) -> float | None:
        """Images its budget (or step or epoch count) intended."""
        steps, batch = self.info.get("steps_planned"), self.info.get("batch_size")
        return steps * batch if steps and batch else None


def load_run(study_dir: Path, entry: dict) -> RunRecord:
    """The run of one study.json entry, its status checked against its files."""
    run_dir = RunDir(study_dir / entry.get("dir", f"runs/{entry['name']}"))
    info, test = run_dir.read_info(), run_dir.read_metrics("test")
    status, error = entry.get("status", "pending"), entry.get("error")
    if test is not None and info.get("status") == "finished":
        status = "finished"
    elif status == "finished":  # the index says finished but the test metrics are missing or unreadable
        status, error = "incomplete", error or f"{run_dir.metrics('test').name} missing or unreadable"
    if status == "failed" and not error:
        error = info.get("error")
    return RunRecord(entry["name"], entry.get("config_name", entry["name"]), entry.get("group", "default"),
                     bool(entry.get("baseline", False)), int(entry.get("seed", 0)), status, error, run_dir, info,
                     test, _config_dict(run_dir))


def _config_dict(run_dir: RunDir) -> dict | None:
    """The run's config as plain values (the report shows what differs from the defaults), or None."""
    try:
        return run_dir.read_config().to_dict()
    except SeglabError:
        return None
