"""A run from start to finish: train it, score its test split, tell its trackers, mark it finished.

What ``seglab train``, ``seglab.train``, each run of a study and ``seglab bench quality`` do. It sits above
both halves so that training never imports evaluation: the loop knows nothing about how a finished model is
scored. ``build_config`` is the one way a user's input becomes a run's config, for the CLI and the Python API alike.
"""

from __future__ import annotations

from pathlib import Path

from seglab.config import RunConfig, expand_dotted, load_config, merge, preset_path
from seglab.errors import SeglabError
from seglab.evaluate import evaluate
from seglab.runs import RunDir
from seglab.training.budget import Calibration
from seglab.training.loggers import check_installed, log_test
from seglab.training.plan import check_names
from seglab.training.run import claim_run, load_run_config
from seglab.training.run import train as fit


def build_config(config: str | Path | None = None, preset: str | None = None, options: dict | None = None,
                 overrides: dict | None = None) -> RunConfig:
    """A checked RunConfig from what a user gave: seglab's defaults, then the YAML ``config`` or the built-in
    ``preset`` (not both), then ``options`` (config keys set by name: `seglab train`'s options, the API's
    keywords), then ``overrides`` (``--set``; last, so it can set anything). Both dicts take dotted keys
    ("train.lr") or nested sections; every key, value and name is checked, with one-line errors."""
    if preset is not None:
        if config is not None:
            raise SeglabError("--preset and --config: give one of them (options and --set still override either)")
        config = preset_path(preset)
    return check_names(load_config(config, merge(expand_dotted(options or {}), expand_dotted(overrides or {}))))


def resume(path: str | Path) -> RunDir:
    """Continue the interrupted (or shorter) run in folder ``path`` with the config it set out with, then score it."""
    path = Path(path)
    cfg = load_run_config(RunDir(path))
    cfg.name, cfg.out_dir = path.name, str(path.parent)
    return train(cfg, resume=True)


def train(cfg: RunConfig, resume: bool = False, calibration: Calibration | None = None,
          study: str | None = None) -> RunDir:
    """Fit ``cfg`` (see ``training.run.train``), then score the final checkpoint on test with the data already
    decoded, write metrics.json and per_image_test.npz, and give the scores to every experiment tracker. The
    folder's lock is held from training's first record to the run's "finished"."""
    check_names(cfg)  # the run's name is made of checked names
    check_installed(cfg.train.loggers)  # a missing tracker is named before any folder exists
    with claim_run(cfg):  # one writer from the first record to metrics.json, not just while training
        fitted = fit(cfg, resume=resume, calibration=calibration, study=study)
        if fitted.lead:
            metrics = evaluate(fitted.run.path, split="test", datamodule=fitted.datamodule)
            log_test(fitted.loggers, metrics, fitted.step, fitted.hparams)
            fitted.run.write_info(status="finished")
    return fitted.run
