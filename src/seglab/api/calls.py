"""The API's calls: ``train``, ``evaluate``, ``study``, ``check_data``. Each goes through the same functions as
its command (``experiment.build_config`` and ``experiment.train``, ``evaluate.evaluate``, ``study.runner.
run_named_study``, ``data.check_source``), so a key, a value or a name is accepted or refused exactly as
``seglab train`` / ``seglab study`` would; only the way the keys arrive differs (keywords instead of options)."""

from __future__ import annotations

import contextlib
import difflib
import signal
import threading
from pathlib import Path
from typing import Any

from seglab.api.notebook import one_line_errors
from seglab.api.results import DataCheck, Metrics, Run, Study, Tune
from seglab.config import config_fields, parse_override
from seglab.errors import BadValue, Interrupted, SeglabError

# keyword -> config key, for every config field that names a `seglab train` option (--eval-size -> eval_size)
OPTIONS = {f.metadata["cli"].lstrip("-").replace("-", "_"): key for key, f, _ in config_fields()
           if f.metadata.get("cli")}
SECTIONS = tuple(dict.fromkeys(key.split(".")[0] for key, _, _ in config_fields() if "." in key))


def config_keys(config: str | Path | None = None, preset: str | None = None,
                set: dict | list[str] | None = None, **keys: Any) -> tuple[dict, dict]:
    """(options, overrides) for ``experiment.build_config`` from the API's keywords (see ``train``)."""
    options: dict = {}
    for name, value in keys.items():
        if value is None:  # as an option left out
            continue
        if name in SECTIONS and isinstance(value, dict):
            options = _merge(options, {name: value})
        elif name in OPTIONS:
            options = _merge(options, _nested(OPTIONS[name], value))
        elif "." in name:  # **{"data.size": "64x96"}: a dotted key, as in set=
            set = {**_as_dict(set), name: value}
        else:
            close = difflib.get_close_matches(name, [*OPTIONS, *SECTIONS], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise SeglabError(f"unknown keyword {name!r}{hint}; any config key goes in set={{'section.key': value}}")
    return options, _as_dict(set)


def _as_dict(overrides: dict | list[str] | tuple | None) -> dict:
    """set= as a dict of dotted keys: a dict as it is; "KEY=VALUE" strings read as --set reads them."""
    if overrides is None:
        return {}
    if isinstance(overrides, dict):
        return dict(overrides)
    if isinstance(overrides, str):
        overrides = [overrides]
    return dict(parse_override(str(s)) for s in overrides)


def _nested(key: str, value) -> dict:
    *parents, last = key.split(".")
    out: dict = {last: value}
    for p in reversed(parents):
        out = {p: out}
    return out


def _merge(base: dict, extra: dict) -> dict:
    from seglab.config import merge

    return merge(base, extra)


@contextlib.contextmanager
def _interruptible():
    """Lightning answers Ctrl-C by ignoring SIGINT for the rest of the process (it expects to exit); a notebook
    goes on, so the handler it had is put back, and the next interrupt of a cell works again."""
    main = threading.current_thread() is threading.main_thread()
    handler = signal.getsignal(signal.SIGINT) if main else None
    try:
        yield
    finally:
        if main and handler is not None:
            signal.signal(signal.SIGINT, handler)


def train(config: str | Path | None = None, *, preset: str | None = None, resume: str | Path | Run | None = None,
          set: dict | list[str] | None = None, **keys: Any) -> Run:
    """Train one model, as ``seglab train`` does, and return its ``Run`` (trained and scored on test).

    Args:
        config: a YAML config file (``--config``).
        preset: a built-in config instead, e.g. ``"camvid-cpu-60m"`` (``--preset``).
        resume: a run folder (or ``Run``) to continue, as ``--resume``: after an interrupt, with the config it
            set out with; give no other keys.
        set: any config keys, ``{"train.weight_decay": 1e-4}`` or ``["train.weight_decay=1e-4"]`` (``--set``;
            applied last).
        **keys: ``seglab train``'s options by name (``data="../shared/camvid"``, ``model="unet:resnet18"``,
            ``epochs=3``, ``size="192x256"``, ``batch=8``, ``lr=1e-3``, ``name=``, ``out=``, ...) and whole
            config sections as dicts (``data={"hflip": False}``, ``train={"epochs": 1}``); a dotted key
            (``**{"data.size": "64x96"}``) is the same as ``set=``.

    Returns:
        The run folder as a ``Run``.

    Raises:
        seglab.config.ConfigError: a bad key or value, with the text ``seglab train`` prints.
        seglab.errors.Interrupted: the cell was interrupted; ``train(resume=...)`` continues the run.
    """
    from seglab import experiment

    one_line_errors()
    if resume is not None:
        given = [k for k, v in {"config": config, "preset": preset, "set": set, **keys}.items() if v is not None]
        if given:
            raise SeglabError(f"resume= continues a run with the config it set out with; leave out "
                              f"{', '.join(given)}")
        path = Path(getattr(resume, "path", resume))
        with _interruptible(), _resumable(path):
            experiment.resume(path)
        return Run(path)
    options, overrides = config_keys(config, preset, set, **keys)
    cfg = experiment.build_config(config, preset, options, overrides)
    path = Path(cfg.out_dir) / cfg.run_name()
    with _interruptible(), _resumable(path):
        experiment.train(cfg)
    return Run(path)


@contextlib.contextmanager
def _resumable(path: Path):
    """An interrupted run says how to go on from Python (the training loop's message names the command)."""
    try:
        yield
    except (Interrupted, KeyboardInterrupt):
        raise Interrupted(f"interrupted; the run folder is kept: continue it with "
                          f"seglab.train(resume={str(path)!r})") from None


def evaluate(run: str | Path | Run, split: str = "test", *, data: str | None = None, batch: int | None = None,
             eval_size: str | tuple[int, int] | None = None, tta: str | None = None) -> Metrics:
    """Score a run (folder, ``Run`` or checkpoint) on ``split``, as ``seglab evaluate`` does, writing the same
    metrics file; returns the split's ``Metrics``.

    Args:
        run: run folder, ``Run`` or .ckpt file.
        split: train, val or test.
        data: another copy of the dataset (default: the one the run trained on).
        batch: images per forward pass.
        eval_size: model input size, ``"HxW"`` or ``"native"`` (default: the run's setting).
        tta: test-time augmentation: none, flip, flip+scales, ... (default: the run's setting).
    """
    from seglab import sizes
    from seglab.evaluate import evaluate as score

    one_line_errors()
    if isinstance(eval_size, str):
        try:
            eval_size = sizes.model_size(eval_size, allow_native=True)  # the --eval-size option's own parser
        except ValueError as e:
            raise BadValue("eval_size", eval_size, str(e)) from None
    target = getattr(run, "path", run)
    with _interruptible():
        metrics = score(target, split=split, data_root=data, batch_size=batch, eval_size=eval_size, tta=tta,
                        quiet=True)
    return Metrics(metrics)


def study(name: str = "quick", *, data: str | None = None, out: str | Path = "runs/studies",
          only: str | list[str] | None = None, repeats: int | None = None, report: bool = True,
          executor: str = "here", jobs: int | None = None, partition: str | None = None,
          timeout_min: int = 24 * 60) -> Study:
    """Train every run of a study not yet finished (resumable), then write its report, as ``seglab study``
    does; returns the ``Study``. Runs that fail are recorded and reported (``Study.failed``), as the command
    does, and a warning names them; rerunning the same call retries them.

    Args:
        name: a built-in study (quick, camvid-cpu, seed000, seed001, precision) or a study YAML.
        data: dataset folder (default: the study's, else ``$SEGLAB_DATA`` or the download).
        out: the folder that holds study folders.
        only: run names to train now (a list or "a,b").
        repeats: seeds per configuration (overrides the study file's).
        report: build report.md and report.html when done.
        executor: here, local or slurm (``--executor``).
        jobs: runs at a time for local and slurm.
        partition: SLURM partition.
        timeout_min: minutes a run's job may take (local, slurm).
    """
    import warnings

    from seglab.study.runner import run_named_study

    one_line_errors()
    if isinstance(only, str):
        only = only.split(",")
    try:
        with _interruptible():
            folder, _ = run_named_study(name, data=data, out=out, only=only, repeats=repeats, report=report,
                                        executor=executor, jobs=jobs, partition=partition,
                                        timeout_min=timeout_min)
    except (Interrupted, KeyboardInterrupt):
        raise Interrupted("study interrupted; finished runs are kept: call seglab.study again with the same "
                          "arguments to go on") from None
    result = Study(folder.path)
    if result.failed:
        warnings.warn(f"{len(result.failed)} run(s) failed: " + "; ".join(f"{n} ({e})" for n, e in result.failed)
                      + "; call seglab.study again to retry them", stacklevel=2)
    return result


def tune(space: str | Path, *, data: str | None = None, trials: int | None = None, out: str | Path = "runs/tunes",
         storage: str | None = None, executor: str = "here", jobs: int | None = None, partition: str | None = None,
         timeout_min: int = 24 * 60, report: bool = True) -> Tune:
    """A hyperparameter search, as ``seglab tune`` runs it; returns the ``Tune``. Resumable: the same call
    after an interrupt or a kill goes on with no trial trained twice.

    Args:
        space: a tune file (YAML: base config, parameters, trials, rungs, finalists, seeds) or a built-in
            tune's name (quick-cnn).
        data: dataset folder (default: the base config's, else ``$SEGLAB_DATA`` or the download).
        trials: trials to run (overrides the tune file's).
        out: the folder that holds tune folders.
        storage: an Optuna storage URL (default: SQLite in the tune folder).
        executor: here, local or slurm (``--executor``).
        jobs: trials at a time for local and slurm.
        partition: SLURM partition.
        timeout_min: minutes a trial's job may take (local, slurm).
        report: build report.md and report.html when done.
    """
    from seglab.tune.runner import run_tune

    one_line_errors()
    try:
        with _interruptible():
            folder, _ = run_tune(space, data=data, trials=trials, out=out, storage=storage, executor=executor,
                                 jobs=jobs, partition=partition, timeout_min=timeout_min, report=report)
    except (Interrupted, KeyboardInterrupt):
        raise Interrupted("tune interrupted; every trial's progress is kept: call seglab.tune again with the same "
                          "arguments to go on") from None
    return Tune(folder.path)


def check_data(path: str | Path, layout: str = "auto", remap: str | None = None) -> DataCheck:
    """What ``seglab data check`` reports for a dataset folder: counts per split, sizes, label histogram,
    class shares, warnings and every problem (``DataCheck.problems``; empty when training can go ahead)."""
    from seglab.data import check_source, open_source

    one_line_errors()
    return DataCheck(check_source(open_source(path, layout, remap)))
