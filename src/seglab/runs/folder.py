"""Where each artefact of a run folder lives (``RunDir``) and of a study folder (``StudyDir``), with a typed
reader and writer for each, so a file's name and format are decided here and nowhere else (the layout is in
the package docstring).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from seglab.config import RunConfig, from_dict, read_yaml, split_names
from seglab.data.classes import ClassSet
from seglab.errors import SeglabError
from seglab.runs.files import (
    load_checkpoint,
    read_json,
    read_metrics_csv,
    write_atomically,
    write_json,
    write_text,
)
from seglab.runs.lock import LOCK_NAME, claim


def _file(*parts: str) -> property:
    """A fixed file or folder of the run, as a read-only property: the folder's layout in one list."""
    return property(lambda self: self.path.joinpath(*parts), doc="/".join(parts))


@dataclass(frozen=True)
class RunDir:
    """``runs/<name>/``: one run's files, each named once here."""

    path: Path

    config = _file("config.yaml")
    info = _file("run.json")
    epochs_csv = _file("metrics.csv")
    checkpoints = _file("checkpoints")
    best = _file("checkpoints", "best.ckpt")
    last = _file("checkpoints", "last.ckpt")
    lock = _file(LOCK_NAME)

    def claim(self):
        """Hold the folder's one-writer lock for a ``with`` block (seglab.runs.lock): a second process that
        would write the same run is refused in one line while this one runs."""
        return claim(self.path)

    def final_checkpoints(self) -> tuple[Path, Path]:
        """Checkpoints to score, in order of preference: the best on val, unless the model trained on val
        (data.train_splits), which leaves val no say: then its last weights."""
        try:
            splits = (yaml.safe_load(self.config.read_text()) or {}).get("data", {}).get("train_splits", "")
        except (OSError, UnicodeDecodeError, yaml.YAMLError, AttributeError):
            splits = ""
        return (self.last, self.best) if "val" in split_names(splits) else (self.best, self.last)

    # -- config ----------------------------------------------------------------------------------------

    def read_config(self) -> RunConfig:
        """The run's resolved config; one clear line when it is missing or no longer valid."""
        if not self.config.is_file():
            raise SeglabError(f"{self.path}: not a run folder (no config.yaml)")
        try:
            return from_dict(read_yaml(self.config))
        except SeglabError as e:
            raise SeglabError(f"{self.config}: {e}") from None

    def write_config(self, cfg: RunConfig) -> None:
        write_text(self.config, yaml.safe_dump(cfg.to_dict(), sort_keys=False))

    # -- classes ---------------------------------------------------------------------------------------

    def read_classes(self) -> ClassSet:
        """The classes the model predicts: classes.json, or (runs older than it) the final checkpoint's."""
        try:
            return ClassSet.from_dict(json.loads((self.path / "classes.json").read_text()))
        except (OSError, ValueError, KeyError, TypeError):
            ckpt = next((c for c in self.final_checkpoints() if c.is_file()), self.best)
            return ClassSet.from_fields(load_checkpoint(ckpt)["hyper_parameters"])

    def write_classes(self, classes: ClassSet) -> None:
        write_json(self.path / "classes.json", classes.to_dict())

    # -- per-validation records (metrics.csv) ----------------------------------------------------------

    def read_epochs(self) -> list[dict]:
        """Rows of metrics.csv, one per validation, numbers parsed (empty cells become None)."""
        return read_metrics_csv(self.epochs_csv)

    # -- metrics per split -----------------------------------------------------------------------------

    def metrics(self, split: str = "test", tag: str = "") -> Path:
        """metrics.json (test), metrics_<split>.json, or with a tag for other data: metrics_test@<data>.json."""
        return self.path / ("metrics.json" if split == "test" and not tag else f"metrics_{split}{tag}.json")

    def read_metrics(self, split: str = "test", tag: str = "") -> dict | None:
        """The split's metrics, or None when missing or unreadable (an unfinished run)."""
        try:
            return json.loads(self.metrics(split, tag).read_text())
        except (OSError, ValueError):
            return None

    def write_metrics(self, metrics: dict, split: str = "test", tag: str = "") -> Path:
        write_json(self.metrics(split, tag), metrics)
        return self.metrics(split, tag)

    def per_image(self, split: str = "test", tag: str = "") -> Path:
        """Per-image confusion matrices of the split's evaluation (they sum exactly to metrics.json's)."""
        return self.path / f"per_image_{split}{tag}.npz"

    def read_per_image(self, split: str = "test", tag: str = ""):
        """(matrices (n, k, k) int64, image names) of the split, or None when missing or unreadable."""
        arrays = self.read_per_image_arrays(split, tag)
        if arrays is None or "matrices" not in arrays or "images" not in arrays:
            return None
        return arrays["matrices"].astype(np.int64), [str(x) for x in arrays["images"]]

    def read_per_image_arrays(self, split: str = "test", tag: str = "") -> dict | None:
        """Every per-image array of the split's evaluation by name (``matrices``, ``boundary``, ``calibration``,
        ``calibration_t``, ``loss``, ``images``: seglab.metrics.summary reads them), or None when missing or
        unreadable. Older runs have only ``matrices`` and ``images``. Never unpickles (allow_pickle=False)."""
        try:
            with np.load(self.per_image(split, tag), allow_pickle=False) as f:
                return {k: f[k] for k in f.files}
        except (OSError, KeyError, ValueError, EOFError):
            return None

    def write_per_image(self, matrices, images: list[str], split: str = "test", tag: str = "",
                        **arrays) -> None:
        """The split's per-image arrays (``matrices`` and any others by name), atomically like every writer here."""
        extra = {k: np.asarray(v) for k, v in arrays.items() if v is not None}
        write_atomically(self.per_image(split, tag), lambda f: np.savez_compressed(
            f, matrices=np.asarray(matrices, np.int64), images=np.asarray(images, dtype=str), **extra))

    # -- run.json --------------------------------------------------------------------------------------

    def read_info(self) -> dict:
        return read_json(self.info)

    def write_info(self, **updates) -> dict:
        info = {**self.read_info(), **updates}
        write_json(self.info, info)
        return info


@dataclass
class StudyDir:
    """``runs/studies/<name>/``: study.yaml (the spec it runs), study.json (its runs and their status),
    calibration.json (step costs of its budgets), runs/<run>/ and the report files."""

    path: Path
    spec: Path = field(init=False)  # the study file as it was run
    index: Path = field(init=False)
    calibration: Path = field(init=False)

    def __post_init__(self):
        self.path = Path(self.path)
        self.spec, self.index, self.calibration = (self.path / f for f in ("study.yaml", "study.json",
                                                                            "calibration.json"))

    def run(self, name: str) -> RunDir:
        return RunDir(self.path / "runs" / name)

    def read_index(self) -> dict:
        """study.json, or {} when missing or unreadable (a study killed before its first record)."""
        return read_json(self.index)

    def index_runs(self) -> dict[str, dict]:
        """study.json's entries by run name."""
        runs = self.read_index().get("runs", [])
        return {r["name"]: r for r in runs if isinstance(r, dict) and r.get("name")}

    def write_index(self, index: dict) -> None:
        write_json(self.index, index)

    def read_calibration(self) -> dict:
        return read_json(self.calibration)

    def write_calibration(self, calibration: dict) -> None:
        write_json(self.calibration, calibration)
