"""One run of a study as its folder holds it: the study index's entry, run.json, the test metrics, the
config and (on demand) the per-image confusion matrices, with a status that says what can be trusted.
A run killed or failed mid-way is a normal record here, not an error, so a report can show what is there.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from seglab.errors import SeglabError
from seglab.runs import RunDir
from seglab.study import stats

# Aggregated per configuration: key -> where it comes from (metrics.json key, or run.json key).
METRICS = {"test_miou": "miou", "pixel_accuracy": "pixel_accuracy", "mean_dice": "mean_dice"}
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

    @property
    def finished(self) -> bool:
        return self.status == "finished"

    @property
    def loss(self) -> str | None:
        return ((self.config or {}).get("train") or {}).get("loss")

    def value(self, key: str) -> float | None:
        """A metric of this run by aggregated key (see METRICS and RUN_FACTS)."""
        if key in METRICS:
            return (self.test or {}).get(METRICS[key])
        if key == "val_miou" and self.info.get("best_val_miou") is None:
            vals = [r["val_miou"] for r in self.epochs() if r.get("val_miou") is not None]
            return max(vals) if vals else None
        return self.info.get(RUN_FACTS[key])

    def epochs(self) -> list[dict]:
        """metrics.csv: one row per validation."""
        return self.run_dir.read_epochs()

    @functools.cached_property
    def per_image(self):
        """(n, k, k) per-image test confusion matrices, or None (older runs, unfinished runs)."""
        found = self.run_dir.read_per_image("test") if self.finished else None
        return None if found is None else found[0]

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
