"""Run a study: each configuration once per seed, resumable, failures recorded and skipped over.

    seglab study                       # built-in quick study
    seglab study seed001 --data ../shared/camvid
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from pathlib import Path

from seglab.config import RunConfig, format_seconds
from seglab.errors import BadValue, Interrupted, SeglabError
from seglab.runs import RunDir, StudyDir, write_text
from seglab.study.executors import ClusterOptions, JobRequest, run_jobs
from seglab.study.spec import Study, StudyRun
from seglab.training.budget import Calibration, cost_key

log = logging.getLogger("seglab")


class StudyFolder(StudyDir):
    """A study's folder (runs.StudyDir) as the runner keeps it."""

    def run_dir(self, run: StudyRun) -> RunDir:
        return self.run(run.name)

    def failed(self) -> list[tuple[str, str]]:
        """(run name, error) of every run the index records as failed."""
        return [(name, r.get("error") or "no error recorded") for name, r in self.index_runs().items()
                if r.get("status") == "failed"]

    def record(self, study: Study, statuses: dict[str, dict]) -> None:
        """study.json: every run of the study with its status (pending until it has one)."""
        runs = [{"name": r.name, "config_name": r.config_name, "group": r.group, "baseline": r.baseline,
                 "seed": r.seed, "description": r.description, "dir": f"runs/{r.name}",
                 **statuses.get(r.name, {"status": "pending", "error": None})} for r in study.runs]
        self.write_index({"name": study.name, "description": study.description,
                          "primary_metric": study.primary_metric,  # the report's comparisons rest on it
                          "created": self.read_index().get("created", _now()), "updated": _now(), "runs": runs})


def run_status(run_dir: RunDir) -> str:
    info = run_dir.read_info()
    if info.get("status") == "finished" and run_dir.metrics("test").is_file():
        return "finished"
    return info.get("status", "pending")


def run_study(study: Study, out: str | Path = "runs/studies", only: list[str] | None = None,
              cluster: ClusterOptions | None = None) -> StudyFolder:
    """Train every run not finished yet, then leave the folder ready for ``build_report``."""
    from seglab.experiment import train

    folder = StudyFolder(Path(out) / study.name)
    folder.path.mkdir(parents=True, exist_ok=True)
    saved = folder.spec
    if saved.exists() and saved.read_text() != study.source:
        log.warning("study %s: the study file changed since the last invocation; finished runs are kept as they are",
                    study.name)
    write_text(saved, study.source)
    selected = [r for r in study.runs if not only or r.name in only or r.config_name in only]
    if only and not selected:
        raise BadValue("only", ",".join(only), f"no such run; runs: {', '.join(r.name for r in study.runs)}")

    statuses = {r.name: {"status": run_status(folder.run_dir(r)), "error": None} for r in study.runs}
    for name, st in folder.index_runs().items():  # keep recorded errors of earlier invocations
        if name in statuses and statuses[name]["status"] != "finished" and st.get("status") == "failed":
            statuses[name] = {"status": "failed", "error": st.get("error")}
    folder.record(study, statuses)

    todo = [r for r in selected if statuses[r.name]["status"] != "finished"]
    precheck(todo)
    calibrations = calibrate_study(folder, todo)
    log.info("study %s: %d runs, %d to train, folder %s", study.name, len(selected), len(todo), folder.path)
    t_start, finished = time.monotonic(), []
    if cluster is not None and cluster.executor != "here" and todo:
        _run_as_jobs(folder, study, todo, statuses, calibrations, cluster)
        todo = []
    for i, run in enumerate(todo, 1):
        left = f", about {format_seconds(_eta(finished, todo[i - 1:]))} left" if finished or _budgets(todo[i - 1:]) else ""
        announce(f"run {i}/{len(todo)} {run.name}  (elapsed {format_seconds(time.monotonic() - t_start)}{left})")
        statuses[run.name] = {"status": "running", "error": None}
        folder.record(study, statuses)
        t0 = time.monotonic()
        run_dir = folder.run_dir(run)
        cfg = run.config
        cfg.out_dir = str(run_dir.path.parent)
        try:
            train(cfg, resume=run_dir.last.is_file(), calibration=calibrations.get(cost_key(cfg)),
                  study=study.name)
            statuses[run.name] = {"status": "finished", "error": None}
        except (KeyboardInterrupt, Interrupted):
            statuses[run.name] = {"status": "pending", "error": None}
            folder.record(study, statuses)
            raise Interrupted("study interrupted; finished runs are kept: rerun the same command to go on") from None
        except Exception as e:  # noqa: BLE001 - a failed run is recorded and the study goes on
            message = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            log.error("run %s failed: %s", run.name, message)
            statuses[run.name] = {"status": "failed", "error": f"{type(e).__name__}: {message}"}
        finished.append((run, time.monotonic() - t0))
        folder.record(study, statuses)
    failed = [n for n, s in statuses.items() if s["status"] == "failed"]
    log.info("study %s: done in %s%s", study.name, format_seconds(time.monotonic() - t_start),
             f"; failed: {', '.join(failed)}" if failed else "")
    return folder


def run_named_study(name: str, data: str | None = None, out: str | Path = "runs/studies", only: list[str] | None = None,
                    repeats: int | None = None, report: bool = True, executor: str = "here", jobs: int | None = None,
                    partition: str | None = None, timeout_min: int = 24 * 60) -> tuple[StudyFolder, tuple | None]:
    """What ``seglab study`` and ``seglab.study`` do: load the study (built-in name or YAML), train what is not
    finished on ``executor``, and build its report when ``report``; failed runs stay in the folder's record.
    Returns the folder and the report's (report.md, report.html), or None without a report."""
    from seglab.study.executors import EXECUTORS
    from seglab.study.spec import load_study

    if executor not in EXECUTORS:
        raise BadValue("executor", executor, f"choose one of {', '.join(EXECUTORS)}")
    spec = load_study(name, data_root=data, repeats=repeats)
    cluster = ClusterOptions(executor, jobs=jobs, partition=partition, timeout_min=timeout_min)
    folder = run_study(spec, out=out, only=only, cluster=cluster)
    if report:
        from seglab.study.report import build_report

        return folder, build_report(folder.path, data_root=data)
    return folder, None


def _run_as_jobs(folder: StudyFolder, study: Study, todo: list[StudyRun], statuses: dict, calibrations: dict,
                 cluster: ClusterOptions) -> None:
    """The runs as submitit jobs (study/executors.py); their statuses are recorded here as each job ends."""
    requests = []
    for run in todo:
        run_dir, cfg = folder.run_dir(run), run.config
        if _still_running(run_dir):  # a job of an earlier invocation (its launcher died) trains it now
            raise SeglabError(f"run '{run.name}' is still training in a job of an earlier invocation ({run_dir.info} "
                              f"updated under {LIVE_SECONDS} s ago); wait for it to end, or cancel that job")
        cfg.out_dir = str(run_dir.path.parent)
        calibration = calibrations.get(cost_key(cfg))
        requests.append(JobRequest(run.name, cfg.to_dict(), run_dir.last.is_file(),
                                   calibration.to_dict() if calibration else None, study.name))
        statuses[run.name] = {"status": "running", "error": None}
    folder.record(study, statuses)

    def done(name: str, error: str | None) -> None:
        statuses[name] = {"status": "failed", "error": error} if error else {"status": "finished", "error": None}
        announce(f"run {name}: {'failed: ' + error if error else 'finished'}")
        folder.record(study, statuses)

    announce(f"{len(requests)} runs as {cluster.executor} jobs; their logs: {folder.path / 'jobs'}")
    try:
        run_jobs(requests, cluster, folder.path, done)
    except (KeyboardInterrupt, Interrupted):
        for name, st in statuses.items():
            if st["status"] == "running":
                statuses[name] = {"status": "pending", "error": None}
        folder.record(study, statuses)
        raise Interrupted("study interrupted; finished runs are kept: rerun the same command to go on") from None


LIVE_SECONDS = 90  # a training run rewrites run.json every 30 s (WorkMeter)


def _still_running(run_dir: RunDir) -> bool:
    try:
        fresh = time.time() - run_dir.info.stat().st_mtime < LIVE_SECONDS
    except OSError:
        return False
    return fresh and run_dir.read_info().get("status") == "running"


def announce(line: str) -> None:
    """Which run starts: logged on a terminal; in a log file, on stdout with the run's progress lines
    (training.progress), so ``seglab study ... > study.log`` says whose lines follow."""
    from seglab.training.progress import plain_output, say

    if plain_output():
        say(line)
    else:
        log.info(line)


def precheck(runs: list[StudyRun]) -> None:
    """Everything about the runs that can fail before training fails now, naming the run: each dataset opens
    with the splits its runs need (train splits, val, test) and each model spec builds for its classes. A
    typo in the last run never waits for the first runs to finish."""
    from seglab.data.open import open_data
    from seglab.models import build_model
    from seglab.training.loggers import check_installed

    sources: dict[tuple, object] = {}
    built: set[tuple[str, int]] = set()
    for run in runs:
        cfg = run.config
        try:
            check_installed(cfg.train.loggers)
            key = (cfg.data.root, cfg.data.layout, str(cfg.data.remap), cfg.data.classes_file)
            if key not in sources:
                sources[key] = open_data(cfg.data)
            source = sources[key]
            for split in dict.fromkeys([*cfg.data.trains_on(), "val", "test"]):
                source.split(split)
            if (cfg.model.spec, source.classes.num_classes) not in built:
                build_model(cfg.model.spec, source.classes.num_classes, weights="none")
                built.add((cfg.model.spec, source.classes.num_classes))
        except SeglabError as e:
            raise SeglabError(f"run '{run.name}': {e}; nothing was trained") from None


def calibrate_study(folder: StudyFolder, runs: list[StudyRun]) -> dict[str, Calibration]:
    """One budget calibration per step cost (model, crop, batch, precision), measured before the first run
    trains and kept in ``calibration.json``: a hypothesis and its baseline get exactly the same steps, a
    resumed study reuses the numbers, and a broken run (a typo in a model spec) stops the study before
    anything trains."""
    return calibrate_configs(folder.calibration, [(f"run '{r.name}'", r.config_name, r.config) for r in runs])


def calibrate_configs(path: Path, configs: list[tuple[str, str, RunConfig]]) -> dict[str, Calibration]:
    """The calibrations of ``configs`` ((where, label, config) each), one per step cost, read from the JSON
    file ``path`` where measured before for the same budget and measured (and added to it) where not: what
    a study and a tune (``seglab tune``: every trial of a cost gets the same steps) share."""
    from seglab.runs import read_json, write_json
    from seglab.training.run import calibrate_config, needs_calibration

    saved = read_json(path)
    out: dict[str, Calibration] = {}
    for where, label, cfg in configs:
        key = cost_key(cfg)
        if not needs_calibration(cfg) or key in out:
            continue
        if isinstance(saved.get(key), dict) and _same_budget(saved[key].get("budget"), cfg.train.budget):
            out[key] = Calibration(**saved[key])
            continue
        log.info("measuring the step cost of %s (%s) for its %s budget", label, cfg.model.spec, cfg.train.budget)
        try:
            out[key] = calibrate_config(cfg)
        except SeglabError as e:
            raise SeglabError(f"{where}: {e}") from None
        saved[key] = out[key].to_dict()
        write_json(path, saved)
    return out


def _same_budget(saved, budget) -> bool:
    """Whether a saved calibration's budget ("4m", as written) is ``budget`` (a Duration: seconds)."""
    from seglab.config import Duration

    try:
        return Duration(saved) == budget
    except (TypeError, ValueError):
        return False


def _eta(finished: list[tuple[StudyRun, float]], remaining: list[StudyRun]) -> float:
    """Seconds left: a budgeted run takes its budget times the ratio of duration to budget measured on
    finished runs (a compute budget runs longer than its nominal time on a busy machine, and decoding,
    validation and test scoring come on top; 1.5 until measured); others take the mean duration."""
    def budget(run: StudyRun) -> float | None:
        return run.config.train.budget  # seconds (a Duration), or None

    ratios = [d / budget(r) for r, d in finished if budget(r)]
    ratio = sum(ratios) / len(ratios) if ratios else 1.5
    mean = sum(d for _, d in finished) / len(finished) if finished else None
    total = 0.0
    for r in remaining:
        b = budget(r)
        total += b * ratio if b else (mean or 0.0)
    return total


def _budgets(runs: list[StudyRun]) -> bool:
    return any(r.config.train.budget for r in runs)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
