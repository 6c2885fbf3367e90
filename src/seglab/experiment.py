"""A run from start to finish: train it, score its test split, tell its trackers, mark it finished.

What ``seglab train``, each run of a study and ``seglab bench quality`` do. It sits above both halves so that
training never imports evaluation: the loop knows nothing about how a finished model is scored.
"""

from __future__ import annotations

from seglab.config import RunConfig
from seglab.evaluate import evaluate
from seglab.runs import RunDir
from seglab.training.budget import Calibration
from seglab.training.loggers import log_test
from seglab.training.run import train as fit


def train(cfg: RunConfig, resume: bool = False, calibration: Calibration | None = None,
          study: str | None = None) -> RunDir:
    """Fit ``cfg`` (see ``training.run.train``), then score the final checkpoint on test with the data already
    decoded, write metrics.json and per_image_test.npz, and give the scores to every experiment tracker."""
    fitted = fit(cfg, resume=resume, calibration=calibration, study=study)
    if fitted.lead:
        metrics = evaluate(fitted.run.path, split="test", datamodule=fitted.datamodule)
        log_test(fitted.loggers, metrics, fitted.step, fitted.hparams)
        fitted.run.write_info(status="finished")
    return fitted.run
