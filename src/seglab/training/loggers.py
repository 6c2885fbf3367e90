"""Experiment trackers: the Lightning loggers a run writes to, CSV always and ``train.loggers`` besides.

    seglab train --loggers tensorboard,mlflow ...
    tensorboard --logdir runs                                # every run's <run>/tb folder
    mlflow ui --backend-store-uri sqlite:///runs/mlflow.db   # the store beside the run folders

Every tracker gets the resolved config (Lightning logs the module's hparams when fitting starts), the step and
epoch metrics SegModule logs, and the test scores once the run is scored (``log_test``). A study groups its
runs: its name is the MLflow experiment and the W&B group. TensorBoard, MLflow and W&B are optional installs
(``pip install "seglab[mlflow]"``), checked before anything trains.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from importlib.util import find_spec

from lightning.pytorch.loggers import CSVLogger, Logger
from lightning.pytorch.utilities import rank_zero_only

from seglab.errors import SeglabError
from seglab.runs import RunDir


@dataclass
class Tracking:
    """What a tracker is told about its run: the folder, the study it belongs to (None outside a study) and
    whether the run is resumed (then it goes on in the tracker run it started, where run.json names one)."""

    run: RunDir
    study: str | None = None
    resume: bool = False

    def saved(self, tracker: str) -> dict:
        """What the first session recorded in run.json about its ``tracker`` run; nothing for a new run."""
        return (self.run.read_info().get(tracker) or {}) if self.resume else {}


def csv_logger(t: Tracking) -> Logger:
    return CSVLogger(t.run.path, name="logs")  # one version folder per session


def tensorboard_logger(t: Tracking) -> Logger:
    from lightning.pytorch.loggers import TensorBoardLogger

    # <run>/tb, no version folder: a resumed run goes on in the same TensorBoard run (its steps continue), and
    # `tensorboard --logdir runs` names each run by its folder. No hp_metric placeholder: log_test gives the
    # HParams tab the real test scores.
    return TensorBoardLogger(t.run.path, name="tb", version="", default_hp_metric=False)


def mlflow_logger(t: Tracking) -> Logger:
    from lightning.pytorch.loggers import MLFlowLogger

    # A local SQLite store beside the run folders unless MLFLOW_TRACKING_URI names another (a server).
    # Not a ./mlruns folder: MLflow 3 refuses its file store unless MLFLOW_ALLOW_FILE_STORE opts back in.
    store, server = t.run.path.resolve().parent, os.environ.get("MLFLOW_TRACKING_URI")
    uri = server or f"sqlite:///{store / 'mlflow.db'}"
    saved = t.saved("mlflow")
    logger = MLFlowLogger(
        experiment_name=t.study or "seglab", run_name=t.run.path.name, tracking_uri=uri,
        run_id=saved.get("run_id") if saved.get("tracking_uri") == uri else None,
        tags={"seglab.run_dir": str(t.run.path.resolve())},
        # without it a new experiment's artifacts would go to ./mlruns of whatever folder seglab runs in
        artifact_location=None if server else (store / "mlartifacts").as_uri(),
    )
    if logger.run_id is not None:  # None on other ranks than 0, which log nothing
        t.run.write_info(mlflow={"tracking_uri": uri, "run_id": logger.run_id})
    return logger


def wandb_logger(t: Tracking) -> Logger:
    import wandb
    from lightning.pytorch.loggers import WandbLogger

    if wandb.run is not None:  # left open by a failed run of the same study: Lightning would log into it
        wandb.finish(exit_code=1)

    # Offline (files under <run>/wandb, `wandb sync` uploads them) unless the user is set up to go online;
    # a WANDB_MODE they set themselves (online, offline, disabled) is wandb's to read.
    offline = "WANDB_MODE" not in os.environ and "WANDB_API_KEY" not in os.environ
    run_id = t.saved("wandb").get("id") or uuid.uuid4().hex[:12]  # kept for a resumed session
    if rank_zero_only.rank == 0:  # the lead process keeps the record (other processes log nothing)
        t.run.write_info(wandb={"id": run_id})
    return WandbLogger(project=os.environ.get("WANDB_PROJECT") or "seglab", name=t.run.path.name, group=t.study,
                       save_dir=str(t.run.path), offline=offline, id=run_id, resume="allow")


# train.loggers' choices. Each but csv needs the package of the same name, installed by the extra of that name.
LOGGERS: dict[str, Callable[[Tracking], Logger]] = {
    "csv": csv_logger, "tensorboard": tensorboard_logger, "mlflow": mlflow_logger, "wandb": wandb_logger,
}


def check_installed(names: list[str]) -> None:
    """A tracker whose package is missing stops the run before anything is read or trained."""
    for name in names:
        if name != "csv" and find_spec(name) is None:
            raise SeglabError(f"train.loggers: {name} is not installed; install it with "
                              f"pip install \"seglab[{name}]\", or leave it out of the loggers")


def build_loggers(names: list[str], run: RunDir, study: str | None = None, resume: bool = False) -> list[Logger]:
    """The run's loggers: CSV (logs/ in the run folder, as every run keeps) and then each of ``names`` once."""
    check_installed(names)
    tracking = Tracking(run, study, resume)
    return [LOGGERS[name](tracking) for name in dict.fromkeys(["csv", *names])]


def tracker_scores(metrics: dict) -> dict[str, float]:
    """metrics.json's headline numbers and per-class IoU as tracker metrics: test/miou, test/iou/Sky, ..."""
    scores = {f"test/{key}": metrics[key] for key in ("miou", "pixel_accuracy", "mean_dice")
              if metrics.get(key) is not None}
    for name, iou in zip(metrics["class_names"], metrics["per_class_iou"], strict=True):
        if iou is not None:  # a class in neither labels nor predictions has no IoU
            scores[f"test/iou/{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}"] = iou  # MLflow's allowed characters
    return scores


def log_test(loggers: list[Logger], metrics: dict, step: int, hparams: dict) -> None:
    """The run's test scores into every tracker at its last training step, then close the trackers (their
    run is finished: MLflow marks it so)."""
    from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

    scores = tracker_scores(metrics)
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):  # its HParams tab: the config beside the scores
            logger.log_hyperparams(hparams, metrics=scores, step=step)
        else:
            logger.log_metrics(scores, step=step)
        logger.finalize("success")
        if isinstance(logger, WandbLogger):  # Lightning leaves it open; the next run of a study needs its own
            logger.experiment.finish()
