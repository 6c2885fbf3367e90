"""seglab tune: the search on a synthetic objective (pruning, kill and resume, parallel = sequential), the
tune file's checks as one-line errors, and a tiny real tune end to end."""

from __future__ import annotations

import json
import math
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from fakes import assert_one_line_error, run_cli

from seglab.errors import SeglabError
from seglab.tune.search import Rungs, create_study, finalists, search
from seglab.tune.space import load_tune

SPACE = {
    "name": "synthetic",
    "base": {"set": {"train.steps": 90, "model.spec": "scratch:simplesegnet"}},
    "trials": 12, "batch": 4, "rungs": 3, "reduction": 3, "finalists": 3, "seeds": 2, "seed": 7,
    "params": {
        "train.lr": {"log_uniform": [1.0e-4, 1.0e-1]},
        "train.loss": {"choice": ["ce", "dice_ce"]},
        "data.scale_crop": {"choice": [False, True]},
        "data.scale_range": {"choice": [[0.75, 1.25], [0.5, 2.0]], "when": {"data.scale_crop": True}},
    },
}


def write_space(tmp_path: Path, space: dict | None = None, **changes) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump({**(space or SPACE), **changes}, sort_keys=False))
    return path


def objective(overrides: dict, rung: int) -> float:
    """A noiseless function of the values with an optimum at lr 1e-2 and dice_ce; rung k adds k/10 (the
    later rung, the better: longer training)."""
    lr = overrides["train.lr"]
    value = 1.0 - (math.log10(lr) + 2) ** 2 / 10 + (0.1 if overrides["train.loss"] == "dice_ce" else 0.0)
    return round(value + rung / 10, 9)


class FakeWorker:
    """Records every (job, rung) it trains; optional random sleeps and a thread pool (jobs side by side);
    ``die_after`` raises KeyboardInterrupt once that many jobs have trained, like a killed search. ``disk``
    stands for the run folders: a job whose value is recorded there is read, not trained again, as
    TrainWorker reads a validation already in metrics.csv."""

    def __init__(self, parallel: bool = False, die_after: int | None = None, disk: dict | None = None):
        self.trained: list[tuple[str, int]] = []
        self.parallel, self.die_after = parallel, die_after
        self.disk = {} if disk is None else disk
        self.lock = threading.Lock()

    def one(self, job):
        if self.parallel:
            time.sleep(random.uniform(0, 0.02))
        with self.lock:
            if (job.key, job.rung) in self.disk:
                return self.disk[job.key, job.rung]
            if self.die_after is not None and len(self.trained) >= self.die_after:
                raise KeyboardInterrupt
            self.trained.append((job.key, job.rung))
            self.disk[job.key, job.rung] = objective(job.overrides, job.rung)
            return self.disk[job.key, job.rung]

    def __call__(self, jobs):
        if self.parallel:
            with ThreadPoolExecutor(4) as pool:
                values = list(pool.map(self.one, jobs))
        else:
            values = [self.one(j) for j in jobs]
        return {j.key: v for j, v in zip(jobs, values, strict=True)}


def run_search(tmp_path: Path, worker, name: str = "a"):
    spec = load_tune(write_space(tmp_path))
    rungs = Rungs(spec.rungs, spec.reduction)
    study = create_study(spec, f"sqlite:///{tmp_path / f'{name}.db'}", rungs)
    search(spec, study, rungs, worker)
    return spec, study


def outcome(study) -> list[tuple]:
    return [(t.number, t.state.name, tuple(sorted(t.params.items())), tuple(sorted(t.intermediate_values.items())))
            for t in study.get_trials()]


def test_search_prunes_by_successive_halving_and_ranks_finalists(tmp_path):
    worker = FakeWorker()
    spec, study = run_search(tmp_path, worker)
    states = [t.state.name for t in study.get_trials()]
    assert len(states) == spec.trials and "RUNNING" not in states
    assert states.count("PRUNED") >= 4 and states.count("COMPLETE") >= 1
    # a pruned trial trained no rung after the one it was pruned at, a completed one trained all three once
    per_trial = {}
    for key, rung in worker.trained:
        per_trial.setdefault(key, []).append(rung)
    for t in study.get_trials():
        rungs = per_trial[f"trial-{t.number:03d}"]
        assert rungs == list(range(len(t.intermediate_values)))
        assert (len(rungs) == 3) == (t.state.name == "COMPLETE")
        assert sorted(t.intermediate_values) == [1, 3, 9][:len(rungs)]  # the rungs' units of budget
    top = finalists(study, 3)
    furthest = [len(t.intermediate_values) for t in top]
    assert furthest == sorted(furthest, reverse=True)
    complete = [t for t in top if t.state.name == "COMPLETE"]
    assert [t.value for t in complete] == sorted((t.value for t in complete), reverse=True)
    # conditional parameter: drawn only where its condition holds
    for t in study.get_trials():
        assert ("data.scale_range" in t.params) == (t.params["data.scale_crop"] is True)


def test_parallel_and_sequential_searches_with_one_seed_give_the_same_trials(tmp_path):
    random.seed(3)
    _, sequential = run_search(tmp_path, FakeWorker(), "seq")
    _, parallel = run_search(tmp_path, FakeWorker(parallel=True), "par")
    assert outcome(parallel) == outcome(sequential)


@pytest.mark.parametrize("die_after", [1, 6, 13])
def test_a_killed_search_resumes_without_training_a_trial_twice(tmp_path, die_after):
    _, uninterrupted = run_search(tmp_path, FakeWorker(), "whole")
    dying = FakeWorker(die_after=die_after)
    with pytest.raises(KeyboardInterrupt):
        run_search(tmp_path, dying, "killed")
    resumed = FakeWorker(disk=dying.disk)
    _, study = run_search(tmp_path, resumed, "killed")
    both = dying.trained + resumed.trained
    assert len(both) == len(set(both)), "a (trial, rung) was trained twice"
    assert outcome(study) == outcome(uninterrupted)


def test_resuming_with_other_settings_is_refused(tmp_path):
    spec, _ = run_search(tmp_path, FakeWorker())
    other = load_tune(write_space(tmp_path, seed=8))
    with pytest.raises(SeglabError, match="other settings .*seed"):
        create_study(other, f"sqlite:///{tmp_path / 'a.db'}", Rungs(spec.rungs, spec.reduction))


def test_a_failed_trial_is_recorded_and_the_search_goes_on(tmp_path):
    class Failing(FakeWorker):
        def __call__(self, jobs):
            out = super().__call__(jobs)
            return {k: ("RuntimeError: loss is NaN" if k == "trial-001" else v) for k, v in out.items()}

    _, study = run_search(tmp_path, Failing())
    failed = [t for t in study.get_trials() if t.state.name == "FAIL"]
    assert [t.number for t in failed] == [1]
    assert failed[0].user_attrs["seglab_error"] == "RuntimeError: loss is NaN"
    assert sum(t.state.is_finished() for t in study.get_trials()) == SPACE["trials"]


def test_rungs_are_shares_of_the_full_runs_steps():
    rungs = Rungs(3, 3)
    assert rungs.units == [1, 3, 9]
    assert [rungs.steps(377, k) for k in range(3)] == [41, 125, 377]
    with pytest.raises(SeglabError, match="too short"):
        rungs.steps(5, 0)


@pytest.mark.parametrize(("params", "fragments"), [
    ({"train.lrr": {"log_uniform": [1e-4, 1e-2]}}, ("train.lrr", "unknown config key", "train.lr")),
    ({"train.lr": {"log_uniform": [1e-2, 1e-2]}}, ("train.lr", "empty")),
    ({"train.lr": {"uniform": [0.1, 0.01]}}, ("train.lr", "inverted")),
    ({"train.lr": {"log_uniform": [0.0, 0.1]}}, ("train.lr", "above 0")),
    ({"train.loss": {"choice": ["ce", 3]}}, ("train.loss", "choice 3")),
    ({"data.hflip": {"choice": [True, "sideways"]}}, ("data.hflip", "sideways")),
    ({"data.batch_size": {"uniform": [2, 8]}}, ("data.batch_size", "whole numbers", "int")),
    ({"train.seed": {"int": [0, 9]}}, ("train.seed", "sets train.seed itself")),
    ({"train.lr": {"between": [1, 2]}}, ("train.lr", "unknown key 'between'")),
    ({"data.scale_range": {"choice": [[0.5, 2.0]], "when": {"data.scale_crop": True}}},
     ("when", "data.scale_crop", "not a parameter listed before")),
    ({}, ("params", "at least one parameter")),
])
def test_bad_tune_files_are_one_line_errors(capsys, tmp_path, tiny_camvid, params, fragments):
    path = write_space(tmp_path, params=params)
    result = run_cli(capsys, "tune", path, "--data", tiny_camvid, "--out", tmp_path / "tunes")
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "tunes").exists(), "a refused tune file must leave nothing behind"


@pytest.mark.parametrize(("args", "fragments"), [
    (["--executor", "local", "--jobs", "13"], ("--jobs", "more parallel jobs than trials (12)")),
    (["--jobs", "2"], ("--jobs", "--executor local")),
    (["--executor", "cloud"], ("--executor", "cloud")),
    (["--trials", "2"], ("finalists", "more than the trials")),
])
def test_bad_tune_options_are_one_line_errors(capsys, tmp_path, tiny_camvid, args, fragments):
    result = run_cli(capsys, "tune", write_space(tmp_path), "--data", tiny_camvid, "--out", tmp_path / "t", *args)
    assert_one_line_error(result, *fragments)


def test_unknown_tune_names_and_top_level_keys(capsys, tmp_path):
    assert_one_line_error(run_cli(capsys, "tune", "quick-cn"), "quick-cn", "quick-cnn")
    assert_one_line_error(run_cli(capsys, "tune", write_space(tmp_path, trails=3)), "trails", "trials")
    assert_one_line_error(run_cli(capsys, "tune", write_space(tmp_path, base={"study": "quick", "run": "nope"})),
                          "no run 'nope'", "cnn")
    epochs = {"set": {"train.epochs": 3, "train.budget": None}}
    assert_one_line_error(run_cli(capsys, "tune", write_space(tmp_path, base=epochs)), "base", "compute budget")


def test_the_built_in_tune_searches_what_issue_25_names():
    from seglab.tune.space import resolve_tune_file

    spec = load_tune(resolve_tune_file("quick-cnn"))
    assert {p.key for p in spec.params} >= {"train.lr", "train.weight_decay", "train.loss", "data.scale_range"}
    assert spec.trials >= 16 and spec.base["model"]["spec"] == "fpn:efficientnet-lite0"
    assert str(spec.base["train"]["budget"]) == "4m"


@pytest.mark.slow
def test_a_tiny_real_tune_end_to_end(capsys, tmp_path, tiny_camvid):
    """Trials train to their rungs and resume from their checkpoints; the finalists re-run with fresh seeds;
    only the winner's re-runs are scored on test; winner.yaml trains; a second invocation trains nothing."""
    space = {"name": "tiny",
             "base": {"set": {"model.spec": "scratch:simplesegnet", "data.size": "64x96", "data.batch_size": 2,
                              "train.steps": 9, "train.threads": 1}},
             "trials": 4, "batch": 2, "rungs": 2, "reduction": 2, "finalists": 2, "seeds": 2,
             "params": {"train.lr": {"log_uniform": [1e-4, 1e-1]}, "train.loss": {"choice": ["ce", "dice_ce"]}}}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(space))
    out = tmp_path / "tunes"
    result = run_cli(capsys, "tune", path, "--data", tiny_camvid, "--out", out)
    assert result.code == 0, result.err[-3000:]
    folder = out / "tiny"
    record = json.loads((folder / "tune.json").read_text())
    assert record["rungs"]["steps"] == [4, 9]
    assert len(record["trials"]) == 4
    for t in record["trials"]:
        rows = [r["step"] for r in _csv(folder / "trials" / t["trial"] / "metrics.csv")]
        assert rows == [4, 9][:t["rungs_passed"]], "one validation per rung reached, resumed in one folder"
        info = json.loads((folder / "trials" / t["trial"] / "run.json").read_text())
        assert info["status"] == ("trained" if t["rungs_passed"] == 2 else "paused")
        assert not (folder / "trials" / t["trial"] / "metrics.json").exists(), "a trial is never scored on test"
    winner = record["winner"]
    assert len(record["finalists"]) == 2 and record["seeds"] == [1000, 1001]
    assert winner["rerun_mean"] == max(f["rerun_mean"] for f in record["finalists"])
    for f in record["finalists"]:
        for seed in record["seeds"]:
            run = folder / "reruns" / f"{f['trial']}-seed{seed}"
            assert yaml.safe_load((run / "config.yaml").read_text())["train"]["seed"] == seed
            assert (run / "metrics.json").exists() == (f["trial"] == winner["trial"]), "test: the winner only"
    assert [r["seed"] for r in winner["test"]["runs"]] == [1000, 1001]
    assert all(r["low"] <= r["value"] <= r["high"] for r in winner["test"]["runs"])
    report = (folder / "report.md").read_text()
    assert "## Finalists" in report and f"{winner['trial']} **(winner)**" in report and "## Search plots" in report
    assert (folder / "report.html").stat().st_size > 10_000
    assert (folder / "report_files" / "history.png").exists()
    # winner.yaml is a config seglab train takes
    from seglab.experiment import build_config

    cfg = build_config(folder / "winner.yaml")
    assert cfg.train.lr == pytest.approx(winner["params"]["train.lr"])
    # the same command again trains nothing: every value is recorded
    stamps = {p: p.stat().st_mtime for p in folder.rglob("last.ckpt")}
    assert run_cli(capsys, "tune", path, "--data", tiny_camvid, "--out", out).code == 0
    assert {p: p.stat().st_mtime for p in folder.rglob("last.ckpt")} == stamps


TINY_SPACE = {"name": "tiny",
              "base": {"set": {"model.spec": "scratch:simplesegnet", "data.size": "64x96", "data.batch_size": 2,
                               "train.steps": 8, "train.threads": 1}},
              "trials": 4, "batch": 2, "rungs": 2, "reduction": 2, "finalists": 1, "seeds": 1,
              "params": {"train.lr": {"log_uniform": [1e-4, 1e-1]}, "train.loss": {"choice": ["ce", "dice_ce"]}}}


def _tiny_tune(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY_SPACE))
    return path


def _trials(folder: Path) -> list[tuple]:
    record = json.loads((folder / "tune.json").read_text())
    return [(t["trial"], t["state"], t["params"]["train.loss"], round(t["params"]["train.lr"], 12),
             tuple(t["values"])) for t in record["trials"]]


@pytest.mark.slow
def test_trials_as_local_jobs_side_by_side_are_the_trials_trained_here(capsys, tmp_path, tiny_camvid):
    """--executor local --jobs 2 trains a batch's trials as submitit processes, side by side; the search
    proposes, prunes and records the same trials as one that trains them here, one after another."""
    path = _tiny_tune(tmp_path)
    here = run_cli(capsys, "tune", path, "--data", tiny_camvid, "--out", tmp_path / "here")
    assert here.code == 0, here.err[-3000:]
    local = run_cli(capsys, "tune", path, "--data", tiny_camvid, "--out", tmp_path / "local",
                    "--executor", "local", "--jobs", "2")
    assert local.code == 0, local.err[-3000:]
    assert _trials(tmp_path / "local" / "tiny") == _trials(tmp_path / "here" / "tiny")
    assert list((tmp_path / "local" / "tiny" / "jobs").iterdir()), "submitit wrote its job logs"


@pytest.mark.slow
def test_a_killed_tune_resumes_with_the_same_command_and_trains_no_trial_twice(tmp_path, tiny_camvid):
    """SIGKILL while trials train (no chance to clean up), then the same command: the tune completes, and
    every trial's metrics.csv holds one validation per rung it reached, never a step twice."""
    import os
    import signal
    import subprocess
    import sys

    path = _tiny_tune(tmp_path)
    out = tmp_path / "tunes"
    command = [sys.executable, "-m", "seglab.cli", "tune", str(path), "--data", str(tiny_camvid), "--out", str(out)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    target = out / "tiny" / "trials" / "trial-002" / "config.yaml"  # the second batch has begun
    deadline = time.monotonic() + 300
    while not target.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "tiny" / "tune.json").exists()
    again = subprocess.run(command, check=False, capture_output=True, text=True, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    record = json.loads((out / "tiny" / "tune.json").read_text())
    assert len(record["trials"]) == 4 and {t["state"] for t in record["trials"]} <= {"complete", "pruned"}
    for t in record["trials"]:
        steps = [r["step"] for r in _csv(out / "tiny" / "trials" / t["trial"] / "metrics.csv")]
        assert steps == [4, 8][:t["rungs_passed"]], (t["trial"], steps)


def _csv(path: Path) -> list[dict]:
    from seglab.runs import read_metrics_csv

    return read_metrics_csv(path)


@pytest.mark.slow
def test_the_python_api_tunes_and_shows_the_tune(tmp_path, tiny_camvid):
    import seglab
    import seglab.tune  # the package of the same name: still the API call once imported

    space = {"name": "api", "base": {"set": {"model.spec": "scratch:simplesegnet", "data.size": "64x96",
                                             "data.batch_size": 2, "train.steps": 3, "train.threads": 1}},
             "trials": 2, "batch": 2, "rungs": 1, "finalists": 1, "seeds": 1,
             "params": {"train.lr": {"log_uniform": [1e-3, 1e-1]}}}
    path = tmp_path / "api.yaml"
    path.write_text(yaml.safe_dump(space))
    result = seglab.tune(path, data=str(tiny_camvid), out=tmp_path / "tunes")
    assert isinstance(result, seglab.Tune) and result.path == tmp_path / "tunes" / "api"
    assert list(result.trials.index) == ["trial-000", "trial-001"]
    assert set(result.trials["state"]) == {"complete"} and "train.lr" in result.trials.columns
    assert result.finalists["winner"].tolist() == [True]
    assert result.winner_config.is_file() and len(result.winner_runs) == 1
    page = result._repr_html_()
    assert "Finalists" in page and result.winner["trial"] in page and "data:image/png;base64" in page
    with pytest.raises(SeglabError, match="more parallel jobs than trials"):
        seglab.tune(path, data=str(tiny_camvid), out=tmp_path / "tunes", executor="local", jobs=3)


def test_a_tune_whose_every_trial_failed_says_so_in_one_line(capsys, tmp_path, tiny_camvid, monkeypatch):
    from seglab.tune.worker import TrainWorker

    monkeypatch.setattr(TrainWorker, "__call__", lambda self, jobs: {j.key: "RuntimeError: boom" for j in jobs})
    result = run_cli(capsys, "tune", _tiny_tune(tmp_path), "--data", tiny_camvid, "--out", tmp_path / "t")
    assert_one_line_error(result, "every trial failed", "RuntimeError: boom")
    assert not (tmp_path / "t" / "tiny" / "tune.json").exists()
    assert not (tmp_path / "t" / "tiny" / "winner.yaml").exists()


@pytest.mark.slow
def test_a_run_stopped_at_a_rung_and_resumed_is_the_run_never_stopped(tmp_path, tiny_camvid):
    """stop_at ends an invocation with the schedule planned for the whole run; resumed, the run reaches
    the same learning rates and the same validation as one trained in one go (what a promoted trial is)."""
    from seglab.config import from_dict
    from seglab.runs import RunDir
    from seglab.training.run import train

    def cfg(name):
        return from_dict({"name": name, "out_dir": str(tmp_path), "data": {"root": str(tiny_camvid),
                          "size": "64x96", "batch_size": 2}, "model": {"spec": "scratch:simplesegnet"},
                          "train": {"steps": 8, "val_points": 1, "threads": 1, "scheduler": "cosine",
                                    "optimizer": "adamw", "warmup": 0.25}})

    train(cfg("whole"))
    paused = train(cfg("rungs"), stop_at=3)
    assert paused.step == 3 and RunDir(tmp_path / "rungs").read_info()["status"] == "paused"
    train(cfg("rungs"), resume=True, stop_at=6)
    train(cfg("rungs"), resume=True)
    whole, rungs = RunDir(tmp_path / "whole").read_epochs(), RunDir(tmp_path / "rungs").read_epochs()
    assert [r["step"] for r in whole] == [8] and [r["step"] for r in rungs] == [3, 6, 8]
    assert rungs[-1]["lr"] == pytest.approx(whole[-1]["lr"])
    assert rungs[-1]["val_miou"] == pytest.approx(whole[-1]["val_miou"], abs=1e-6)
    assert RunDir(tmp_path / "rungs").read_info()["status"] == "trained"
