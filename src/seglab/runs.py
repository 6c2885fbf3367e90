"""The run folder, the one contract for everything on disk: where each artefact lives, and typed readers
and writers for it. Training writes through ``RunDir``; evaluate, predict, the study comparison, figures
and the report read through it, so a format changes in one place. A trained model is read without
Lightning (``read_trained``), weights-only, so an untrusted checkpoint cannot run code.

    runs/<name>/
        config.yaml          fully resolved config
        classes.json         class names, display colours and mask values, index = model output
        run.json             status, timings, model facts, environment (and the MLflow or W&B run it logs to)
        metrics.csv          one row per validation
        metrics.json         test metrics of the best checkpoint (metrics_<split>.json for other splits)
        per_image_test.npz   one confusion matrix per test image (for bootstrap intervals), same checkpoint
        checkpoints/best.ckpt, checkpoints/last.ckpt
        logs/                Lightning's step-level log
        tb/, wandb/          TensorBoard's and W&B's logs, when train.loggers names them
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml

from seglab.config import RunConfig, from_dict, read_yaml, split_names
from seglab.data.classes import ClassSet
from seglab.errors import SeglabError, first_line


@dataclass(frozen=True)
class RunDir:
    path: Path

    @property
    def config(self) -> Path:
        return self.path / "config.yaml"

    @property
    def info(self) -> Path:
        return self.path / "run.json"

    @property
    def epochs_csv(self) -> Path:
        return self.path / "metrics.csv"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def best(self) -> Path:
        return self.checkpoints / "best.ckpt"

    @property
    def last(self) -> Path:
        return self.checkpoints / "last.ckpt"

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
            return read_trained(self.path).classes

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
        import numpy as np

        try:
            with np.load(self.per_image(split, tag)) as f:
                return f["matrices"].astype(np.int64), [str(x) for x in f["images"]]
        except (OSError, KeyError, ValueError):
            return None

    def write_per_image(self, matrices, images: list[str], split: str = "test", tag: str = "") -> None:
        """Atomically, like every writer here."""
        import numpy as np

        write_atomically(self.per_image(split, tag), lambda f: np.savez_compressed(
            f, matrices=np.asarray(matrices, np.int64), images=np.asarray(images, dtype=str)))

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


def read_json(path: Path) -> dict:
    """A JSON record as a dict; {} when it is missing or unreadable."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def read_metrics_csv(path: Path) -> list[dict]:
    """Rows of a metrics.csv with numbers parsed (empty cells become None)."""
    if not Path(path).exists():
        return []
    with Path(path).open() as f:
        return [{k: (float(v) if v not in ("", None) else None) for k, v in r.items()} for r in csv.DictReader(f)]


def write_json(path: Path, data: dict) -> None:
    """Write atomically, so an interrupted write never leaves a truncated file behind."""
    write_text(path, json.dumps(data, indent=2) + "\n")


def write_text(path: Path, text: str) -> None:
    """A UTF-8 text file (config, report), written atomically like write_json."""
    data = text.encode("utf-8")
    write_atomically(path, lambda f: f.write(data))


def write_atomically(path: Path, write) -> None:
    """``write(file)`` into a temporary file, flushed to disk, then renamed over ``path`` (atomic on one
    filesystem): a kill or a full disk mid-write leaves the earlier ``path`` whole, and a full disk is one
    line. Records, reports and checkpoints all go through here."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise SeglabError(f"{path}: could not write it ({first_line(e)}); "
                          f"{'the earlier file is left as it was' if path.exists() else 'nothing was written'}") \
            from None


def resolve_checkpoint(target: str | Path) -> tuple[Path, RunDir | None]:
    """A run folder (its best checkpoint, else its last) or a checkpoint file."""
    p = Path(target)
    if p.is_dir():
        run = RunDir(p)
        for ckpt in run.final_checkpoints():
            if ckpt.is_file():
                return ckpt, run
        raise SeglabError(f"{p}: no checkpoint in {run.checkpoints} (is this a seglab run folder?)")
    if p.is_file():
        run_path = p.parent.parent if p.parent.name == "checkpoints" else p.parent
        return p, RunDir(run_path) if (run_path / "config.yaml").exists() else None
    raise SeglabError(f"{p}: no such run folder or checkpoint file")


def load_checkpoint(path: Path) -> dict:
    """Load a checkpoint without running code from it (weights_only), so untrusted files are safe."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure means the file is not a usable checkpoint
        raise SeglabError(f"{path}: not a readable seglab checkpoint ({type(e).__name__}: "
                          f"{first_line(e, 200)})") from None
    if "hyper_parameters" not in ckpt or "config" not in ckpt.get("hyper_parameters", {}):
        raise SeglabError(f"{path}: not a seglab checkpoint (no seglab config inside)")
    return ckpt


@dataclass
class TrainedModel:
    """What a seglab checkpoint holds, read without Lightning: the run's config, its classes and the
    network's weights. ``build()`` makes the network; evaluation and the Predictor both start from here."""

    checkpoint: Path
    run: RunDir | None
    config: RunConfig
    classes: ClassSet
    class_weights: list[float] | None
    state_dict: dict  # the network's weights (the LightningModule's "model." entries)

    def build(self):
        """The network in eval mode on the CPU, its weights loaded (no download: weights come from here)."""
        from seglab.models import build_model

        model = build_model(self.config.model.spec, self.classes.num_classes, weights="none")
        try:
            model.load_state_dict(self.state_dict)
        except RuntimeError as e:
            raise SeglabError(f"{self.checkpoint}: weights do not fit model {self.config.model.spec} "
                              f"({first_line(e, 200)})") from None
        return model.eval()


def read_trained(target: str | Path) -> TrainedModel:
    """The trained model of a run folder (its final checkpoint) or of a checkpoint file."""
    path, run = resolve_checkpoint(target)
    ckpt = load_checkpoint(path)
    hp = ckpt["hyper_parameters"]
    try:
        cfg = from_dict(hp["config"])
    except SeglabError as e:
        raise SeglabError(f"{path}: its config is not valid for this seglab ({e})") from None
    weights = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    return TrainedModel(path, run, cfg, ClassSet.from_fields(hp), hp.get("class_weights"), weights)
