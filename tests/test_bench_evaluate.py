"""``seglab bench evaluate``: the report's structure and consistency on a tiny synthetic run, never its timings
(the machine is shared), and that the run it times is left as it was."""

from __future__ import annotations

import hashlib
import json
import statistics
from pathlib import Path

import pytest
from fakes import assert_one_line_error, run_cli, train_run

from seglab.bench.evaluate_bench import fresh_copy, order


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    from fakes import make_camvid

    root = tmp_path_factory.mktemp("bench-evaluate")
    data = make_camvid(root / "camvid")
    return data, train_run(data, root / "runs")


def test_order_is_abba():
    assert order(1) == ["without", "with"]
    assert order(3) == ["without", "with", "with", "without", "without", "with"]
    assert order(2, ("a", "b", "c")) == ["a", "b", "c", "c", "b", "a"]
    for n in range(1, 6):
        sequence = order(n)
        assert sequence.count("with") == sequence.count("without") == n
        # a linear drift in load adds the same to both: their mean positions are equal after an even count
        if n % 2 == 0:
            positions = {c: sum(i for i, x in enumerate(sequence) if x == c) for c in ("with", "without")}
            assert positions["with"] == positions["without"]


def test_fresh_copy_holds_what_evaluate_reads(tmp_path, trained):
    _, run = trained
    before = snapshot(run)
    ckpt = fresh_copy(run, tmp_path / "copy")
    assert ckpt == tmp_path / "copy" / "checkpoints" / "best.ckpt"
    assert ckpt.read_bytes() == (run / "checkpoints" / "best.ckpt").read_bytes()
    for name in ("config.yaml", "run.json", "classes.json"):
        assert (tmp_path / "copy" / name).read_bytes() == (run / name).read_bytes()
    assert not (tmp_path / "copy" / "metrics.json").exists()  # nothing evaluate wrote before
    assert json.loads((run / "run.json").read_text())["calibration"]["temperature"] > 0  # training fitted one
    bare = fresh_copy(run, tmp_path / "bare", temperature=False).parent.parent
    assert "calibration" not in json.loads((bare / "run.json").read_text())
    assert snapshot(run) == before


def test_report_alternates_and_leaves_the_run_alone(tmp_path, trained):
    data, run = trained
    before = snapshot(run)
    out = tmp_path / "evaluate.json"
    r = run_cli(None, "bench", "evaluate", "--run", run, "--data", data, "--repeats", "2", "--warmup", "1",
                "--refit", "--out", out)
    assert r.code == 0, r.out + r.err
    report = json.loads(out.read_text())
    assert snapshot(run) == before  # never written to, though every call wrote metrics into its copy
    calls = report["calls"]
    assert [c["condition"] for c in calls] == ["with", "without", "with", "with+fit", "with+fit", "with",
                                               "without"]
    assert [c["timed"] for c in calls] == [False] + [True] * 6
    for name in ("with", "without", "with+fit"):
        seconds = [c["seconds"] for c in calls if c["timed"] and c["condition"] == name]
        assert report[name]["seconds"] == seconds and len(seconds) == 2 and all(s > 0 for s in seconds)
        assert report[name]["median_s"] == pytest.approx(statistics.median(seconds), abs=1e-3)
    assert report["ratio"] == pytest.approx(report["with"]["median_s"] / report["without"]["median_s"], rel=1e-3)
    assert report["ratio_with_fit"] == pytest.approx(report["with+fit"]["median_s"] / report["without"]["median_s"],
                                                     rel=1e-3)
    assert report["temperature_in_run_json"] > 0
    assert report["meets_target"] == (report["ratio"] <= report["target_ratio"] == 1.25)
    assert report["split"] == "test" and report["images"] == 3 and report["trained_here"] is None
    assert {"miou", "boundary_iou", "ece", "loss"} <= set(report["metrics_with"])  # the extras were computed
    machine = report["machine"]
    assert machine["logical_cpus"] >= 1 and "load_average_end" in machine and machine["cpu"]
    assert report["command"].startswith("seglab bench evaluate --run")
    assert "with / without" in r.out


def test_without_run_or_data_is_one_line(capsys):
    assert_one_line_error(run_cli(capsys, "bench", "evaluate"), "'--data'", "or give --run")


def test_an_evaluate_without_the_switch_is_one_line(capsys, monkeypatch, trained):
    import seglab.evaluate

    monkeypatch.setattr(seglab.evaluate, "evaluate", lambda target, split="test", quiet=False: {})
    assert_one_line_error(run_cli(capsys, "bench", "evaluate", "--run", trained[1]), "no extras= switch")


@pytest.mark.slow
def test_without_run_it_trains_the_quick_studys_cnn_first(tmp_path, trained):
    from seglab.bench.evaluate_bench import run_evaluate_bench

    report = run_evaluate_bench(str(trained[0]), None, repeats=1, warmup=0, steps=1, out=tmp_path / "e.json",
                                show=False)
    assert report["trained_here"]["study"] == "quick" and report["trained_here"]["steps"] == 1
    assert [c["condition"] for c in report["calls"]] == ["without", "with"] and report["images"] == 3
    assert report["ratio_with_fit"] is None and "with+fit" not in report
    assert json.loads((tmp_path / "e.json").read_text())["ratio"] == report["ratio"]
