"""``seglab tune``: search, re-run the finalists over fresh seeds, score the winner on test once, report.

    seglab tune quick-cnn --data ../shared/camvid           # the built-in tune of the quick study's CNN
    seglab tune my-space.yaml --data ../shared/camvid --trials 32 --executor local --jobs 2

Why the re-runs: the best of N noisy trials on val is the best partly by luck (the winner's curse), so its
search score overstates it. The top ``finalists`` trials are trained again with ``seeds`` fresh seeds each
at the full budget; the winner is the best by the mean of those re-runs, compared paired by seed, and the
finalists' table sets each one's search score beside its re-run mean, which measures the selection bias.
Only the winner is scored on test, once per re-run: no decision is made after test has been looked at.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from pathlib import Path

from seglab.config import format_seconds
from seglab.environment import environment
from seglab.errors import BadValue, SeglabError
from seglab.runs import read_json, write_json, write_text
from seglab.study import primary
from seglab.study.executors import EXECUTORS, ClusterOptions
from seglab.study.runner import announce
from seglab.tune.folder import TuneDir
from seglab.tune.search import Job, Rungs, create_study, finalists, overrides_of, search, standing, trial_name
from seglab.tune.space import TuneSpec, load_tune, resolve_tune_file
from seglab.tune.worker import TrainWorker

log = logging.getLogger("seglab")

RERUN_SEED_OFFSET = 1000  # re-run seeds: the base seed + 1000 + r, never a seed the search trained with


def run_tune(space: str | Path, data: str | None = None, trials: int | None = None,
             out: str | Path = "runs/tunes", storage: str | None = None, executor: str = "here",
             jobs: int | None = None, partition: str | None = None, timeout_min: int = 24 * 60,
             report: bool = True) -> tuple[TuneDir, tuple | None]:
    """What ``seglab tune`` and ``seglab.tune`` do; returns the tune folder and (report.md, report.html)."""
    if executor not in EXECUTORS:
        raise BadValue("executor", executor, f"choose one of {', '.join(EXECUTORS)}")
    spec = load_tune(resolve_tune_file(space), data_root=data, trials=trials)
    if jobs is not None and jobs > spec.trials:
        raise BadValue("jobs", jobs, f"more parallel jobs than trials ({spec.trials}); at most {spec.trials}")
    if jobs is not None and executor == "here":
        raise BadValue("jobs", jobs, "runs side by side need --executor local or slurm; here trains one at a time")
    folder = TuneDir(Path(out) / spec.name)
    folder.path.mkdir(parents=True, exist_ok=True)
    if folder.spec.exists() and folder.spec.read_text() != spec.source:
        log.warning("tune %s: the tune file changed since the last invocation; trials already trained keep "
                    "their values", spec.name)
    write_text(folder.spec, spec.source)
    cluster = ClusterOptions(executor, jobs=jobs, partition=partition, timeout_min=timeout_min)
    worker = TrainWorker(spec, folder, cluster)
    rungs = Rungs(spec.rungs, spec.reduction)
    started = time.monotonic()

    # The base's step cost first: a broken dataset or model fails before any trial exists, and a budget
    # too short for the rungs is said now, not at trial 0's first rung.
    base = worker.config(Job("base", {}, spec.rungs - 1, rungs))
    full = worker.full_steps(base, worker.calibrations([("base", base)]))
    rung_steps = [rungs.steps(full, k) for k in range(rungs.count)]
    storage = storage or folder.storage
    study = create_study(spec, storage, rungs)
    announce(f"tune {spec.name}: {spec.trials} trials, rungs at steps {', '.join(map(str, rung_steps))} "
             f"of {full}; folder {folder.path}")
    search(spec, study, rungs, worker)
    searched = time.monotonic()

    chosen = finalists(study, spec.finalists)
    if not chosen:
        errors = [t.user_attrs.get("seglab_error") for t in study.get_trials(deepcopy=False)]
        raise SeglabError(f"tune {spec.name}: every trial failed (first: {next(filter(None, errors), 'no error recorded')}); "
                          f"nothing to re-run. Fix the cause and rerun with a new --out or name")
    seed0 = base.train.seed
    seeds = [seed0 + RERUN_SEED_OFFSET + r for r in range(spec.seeds)]
    rerun_jobs = [Job(f"{trial_name(t.number)}-seed{s}", overrides_of(t, spec.params), rungs.count - 1, rungs, s)
                  for t in chosen for s in seeds]
    announce(f"tune {spec.name}: re-running finalists {', '.join(trial_name(t.number) for t in chosen)} "
             f"with seeds {', '.join(map(str, seeds))}")
    values = worker(rerun_jobs)
    failed = {k: v for k, v in values.items() if isinstance(v, str)}
    if failed:
        raise SeglabError("re-runs failed: " + "; ".join(f"{k} ({v})" for k, v in failed.items())
                          + "; rerun the same command to retry them")
    rows = [finalist_row(t, [values[f"{trial_name(t.number)}-seed{s}"] for s in seeds], rungs, rung_steps)
            for t in chosen]
    winner = max(rows, key=lambda r: (r["rerun_mean"], -r["number"]))
    compare_to_winner(rows, winner)
    rerun = time.monotonic()
    test = score_winner(folder, spec, winner, seeds)
    record = {
        "name": spec.name, "description": spec.description, "metric": spec.metric,
        "metric_label": primary.metric(spec.metric).label, "storage": storage,
        "rungs": {"units": rungs.units, "reduction": spec.reduction, "steps": rung_steps, "full_steps": full},
        "calibration": read_json(folder.calibration),
        "trials": [trial_row(t, rungs) for t in study.get_trials(deepcopy=False)],
        "seeds": seeds, "finalists": rows, "winner": {**winner, "test": test},
        "seconds": {"search": round(searched - started, 1), "reruns": round(rerun - searched, 1),
                    "test": round(time.monotonic() - rerun, 1)},
        "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": environment(),  # the host's step cost is in calibration; what ran it is here
    }
    write_json(folder.record, record)
    write_winner(folder, spec, winner)
    announce(f"tune {spec.name}: winner {winner['trial']} (val {winner['rerun_mean']:.4f} over "
             f"{len(seeds)} seeds); test {test['label']} {_pct(test['mean'])}; "
             f"{format_seconds(time.monotonic() - started)}")
    if not report:
        return folder, None
    from seglab.tune.report import build_tune_report

    return folder, build_tune_report(folder.path)


def trial_row(trial, rungs: Rungs) -> dict:
    """A trial as tune.json keeps it: its values, how far it got and what was decided at each rung."""
    values = {str(u): v for u, v in sorted(trial.intermediate_values.items())}
    passed, value = standing(trial)
    return {"number": trial.number, "trial": trial_name(trial.number), "state": trial.state.name.lower(),
            "params": dict(trial.params), "values": values, "rungs_passed": max(passed, 0),
            "value": None if passed < 0 else value, "error": trial.user_attrs.get("seglab_error"),
            "batch": trial.user_attrs.get("seglab_batch")}


def finalist_row(trial, reruns: list[float], rungs: Rungs, rung_steps: list[int]) -> dict:
    import numpy as np

    from seglab.study.stats import seed_interval

    passed, value = standing(trial)
    mean = float(np.mean(reruns))
    low, high = seed_interval(reruns)
    return {"number": trial.number, "trial": trial_name(trial.number), "state": trial.state.name.lower(),
            "params": dict(trial.params), "search_value": value, "search_rung": passed,
            "search_steps": rung_steps[passed - 1], "reruns": reruns, "rerun_mean": mean,
            "rerun_low": low, "rerun_high": high, "bias": value - mean if passed == rungs.count else None}


def compare_to_winner(rows: list[dict], winner: dict) -> None:
    """Each finalist's re-runs against the winner's, paired by seed: mean difference and t-interval."""
    from seglab.study.stats import paired_seed_test

    for row in rows:
        row["winner"] = row is winner
        if row is winner:
            row["vs_winner"] = None
            continue
        t = paired_seed_test(row["reruns"], winner["reruns"])
        row["vs_winner"] = {"mean": t.diff, "low": t.low, "high": t.high, "p": t.p_value,
                            "why_none": t.reason}


def score_winner(folder: TuneDir, spec: TuneSpec, winner: dict, seeds: list[int]) -> dict:
    """The winner's re-runs scored on test, each once (an earlier invocation's metrics.json is read again,
    not recomputed); the mean over seeds with its t-interval, and each run's bootstrap interval."""
    import numpy as np

    from seglab.evaluate import evaluate
    from seglab.study.stats import seed_interval

    metric = primary.metric(spec.metric)
    runs = []
    for seed in seeds:
        run = folder.run(f"{winner['trial']}-seed{seed}", rerun=True)
        metrics = run.read_metrics("test")
        if not metrics:
            announce(f"scoring {run.path.name} on test (the tune's only look at test)")
            metrics = evaluate(run.path, split="test", quiet=True)
        interval = (metrics.get("intervals") or {}).get(metric.summary) or [None, None]
        runs.append({"seed": seed, "run": str(run.path), "value": metrics.get(metric.summary),
                     "low": interval[0], "high": interval[1], "miou": metrics.get("miou")})
    values = [r["value"] for r in runs]
    low, high = seed_interval(values)
    return {"metric": metric.summary, "label": metric.label, "runs": runs, "mean": float(np.mean(values)),
            "low": low, "high": high}


def write_winner(folder: TuneDir, spec: TuneSpec, winner: dict) -> None:
    """winner.yaml: the base with the winner's values, as ``seglab train --config`` takes it (its budget, not
    the steps it bought here: another machine measures its own)."""
    import yaml

    by_key = {p.key: p for p in spec.params}
    overrides = {k: by_key[k].value_of(v) for k, v in winner["params"].items() if k in by_key}
    cfg = spec.config(overrides, f"{spec.name}-winner", "runs").to_dict()
    cfg.pop("plan", None)
    header = (f"# seglab tune {spec.name}: the winner, {winner['trial']} ({', '.join(f'{k}={v}' for k, v in overrides.items())})\n"
              f"# seglab train --config {folder.winner}\n")
    write_text(folder.winner, header + yaml.safe_dump(cfg, sort_keys=False))


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"
