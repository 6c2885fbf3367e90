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
