"""A study's runs as submitit jobs (its local executor, as a cluster would run them): the same results as in
sequence, and the study folder as the only record."""

from __future__ import annotations

import pytest
import yaml
from fakes import assert_one_line_error, make_camvid, run_cli

from seglab.runs import StudyDir

pytest.importorskip("submitit")

STUDY = {"name": "jobs", "defaults": {"data": {"size": "64x96", "batch_size": 2},
                                      "model": {"spec": "scratch:simplesegnet", "weights": "none"},
                                      "train": {"steps": 4, "seed": 3, "threads": 1}},
         "runs": [{"name": "a", "group": "g", "baseline": True},
                  {"name": "b", "group": "g", "train": {"optimizer": "adamw", "lr": 3e-3}}]}


def results(study: StudyDir) -> dict:
    out = {}
    for name in ("a", "b"):
        run = study.run(name)
        rows = [{k: v for k, v in r.items() if k != "seconds"} for r in run.read_epochs()]
        metrics = run.read_metrics("test")
        out[name] = (metrics["miou"], metrics["confusion_matrix"], rows)
    return out


@pytest.mark.slow
def test_local_jobs_give_the_same_results_as_one_after_another(capsys, tmp_path):
    data = make_camvid(tmp_path / "camvid", n_per_split=4)
    spec = tmp_path / "jobs.yaml"
    spec.write_text(yaml.safe_dump(STUDY))
    here = run_cli(capsys, "study", spec, "--data", data, "--out", tmp_path / "here", "--no-report")
    assert here.code == 0, here.err[-3000:]
    jobs = run_cli(capsys, "study", spec, "--data", data, "--out", tmp_path / "jobs", "--executor", "local",
                   "--jobs", "2")
    assert jobs.code == 0, jobs.err[-3000:]
    as_jobs = StudyDir(tmp_path / "jobs" / "jobs")
    assert results(as_jobs) == results(StudyDir(tmp_path / "here" / "jobs"))
    assert {n: r["status"] for n, r in as_jobs.index_runs().items()} == {"a": "finished", "b": "finished"}
    assert (as_jobs.path / "report.html").is_file() and any((as_jobs.path / "jobs").iterdir())  # job logs
    trained_at = as_jobs.run("a").metrics("test").stat().st_mtime_ns
    again = run_cli(capsys, "study", spec, "--data", data, "--out", tmp_path / "jobs", "--executor", "local")
    assert again.code == 0 and "jobs; their logs" not in again.out  # finished runs are kept, none retrained
    assert as_jobs.run("a").metrics("test").stat().st_mtime_ns == trained_at


def test_an_unknown_executor_is_one_line(capsys, tmp_path):
    spec = tmp_path / "jobs.yaml"
    spec.write_text(yaml.safe_dump(STUDY))
    r = run_cli(capsys, "study", spec, "--out", tmp_path / "o", "--executor", "nowhere")
    assert_one_line_error(r, "'--executor'", "here, local, slurm")


def test_a_run_still_training_in_an_earlier_job_is_not_trained_twice(capsys, tmp_path):
    from seglab.runs import RunDir

    data = make_camvid(tmp_path / "camvid", n_per_split=4)
    spec = tmp_path / "jobs.yaml"
    spec.write_text(yaml.safe_dump(STUDY))
    RunDir(tmp_path / "o" / "jobs" / "runs" / "b").write_info(status="running")  # just now, by a live job
    r = run_cli(capsys, "study", spec, "--data", data, "--out", tmp_path / "o", "--executor", "local")
    assert_one_line_error(r, "run 'b' is still training")
    assert not (tmp_path / "o" / "jobs" / "runs" / "a" / "metrics.json").exists()  # nothing was submitted


def test_local_jobs_take_one_gpu_each_and_never_more_at_once_than_gpus(monkeypatch):
    """On a machine with 3 GPUs, 5 runs go out as jobs on GPUs 0, 1, 2; the next waits for a free one."""
    import torch

    from seglab.study.executors import ClusterOptions, JobRequest, _run_local

    class Job:
        def __init__(self, gpu):
            self.gpu, self.polls = gpu, 0

        def done(self):
            self.polls += 1
            return self.polls > 1  # each job ends at its second look

        def exception(self):
            return None

    class Executor:
        def __init__(self):
            self.params, self.started, self.live, self.most_live = {}, [], set(), 0

        def update_parameters(self, **params):
            self.params = params

        def submit(self, fn, request):
            gpu = self.params["visible_gpus"][0]
            assert self.params["gpus_per_node"] == 1 and gpu not in self.live  # a free GPU, one per job
            self.live.add(gpu)
            self.most_live = max(self.most_live, len(self.live))
            self.started.append((request.name, gpu))
            return Job(gpu)

    executor, ended = Executor(), []

    def done(name, error):
        ended.append((name, error))
        executor.live.discard(dict(executor.started)[name])

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    monkeypatch.setattr("seglab.study.executors.time.sleep", lambda s: None)
    requests = [JobRequest(f"r{i}", {}, False, None, "s") for i in range(5)]
    _run_local(executor, requests, ClusterOptions("local"), done)
    assert [g for _, g in executor.started[:3]] == [0, 1, 2] and executor.most_live == 3
    assert sorted(n for n, _ in ended) == [f"r{i}" for i in range(5)] and all(e is None for _, e in ended)
