"""Study files and the runner: validation, resumability, and failures that do not stop the study."""

import json
import logging

import pytest
import yaml
from fakes import assert_one_line_error, run_cli

from seglab.errors import SeglabError
from seglab.study.spec import builtin_studies, load_study

TINY = {
    "name": "tiny",
    "defaults": {"data": {"size": "64x96", "batch_size": 2}, "model": {"spec": "scratch:simplesegnet"},
                 "train": {"epochs": 1}},
    "runs": [
        {"name": "base", "group": "g", "baseline": True},
        {"name": "adamw", "group": "g", "train": {"optimizer": "adamw", "scheduler": "cosine"}},
    ],
}


def write_study(tmp_path, study, name="study.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(study))
    return path


def test_builtin_studies_load_and_validate():
    assert {"quick", "seed000", "seed001", "precision"} <= builtin_studies().keys()
    quick = load_study("quick")
    assert [r.name for r in quick.runs] == ["cnn", "cnn+cosine", "transformer"]
    assert {r.group for r in quick.runs} == {"quick"} and [r.baseline for r in quick.runs] == [True, False, False]
    # equal work: one compute budget, converted into steps, for every run
    assert all(str(r.config.train.budget) == "4m" and r.config.train.budget_clock == "compute" for r in quick.runs)
    # offline: the CNN uses the ImageNet encoder seglab installs; the transformer is from scratch on purpose
    assert {r.name: (r.config.model.spec, r.config.model.weights) for r in quick.runs} == {
        "cnn": ("fpn:efficientnet-lite0", "imagenet"), "cnn+cosine": ("fpn:efficientnet-lite0", "imagenet"),
        "transformer": ("segformer:mit_b0", "none")}
    assert "from scratch" in quick.source and "on purpose" in quick.source
    assert len(load_study("quick", repeats=3).runs) == 9
    seed000 = load_study("seed000", data_root="/data/camvid")
    assert all(r.config.data.remap == "camvid6" and r.config.data.root == "/data/camvid" for r in seed000.runs)
    seed001 = load_study("seed001-fair")  # the faithful seed000 / seed001: tests/test_seed_studies.py
    specs = {r.config.model.spec for r in seed001.runs}
    assert {"unet:resnet34", "unet:mit_b0", "scratch:unet", "scratch:vit"} == specs
    assert {r.name for r in seed001.runs} >= {"unet-r34+aug", "unet-r34+adamw-cosine", "unet-r34+dice-ce",
                                              "unet-r34+all", "scratch-vit+all"}
    assert {r.config.model.spec for r in load_study("seed001").runs} == {
        "unet:resnet34", "unet:mit_b0", "scratch:unet:64", "scratch:vit:384"}


def test_repeats_make_one_run_per_seed(tmp_path):
    study = load_study(str(write_study(tmp_path, {**TINY, "repeats": 3})))
    assert [r.name for r in study.runs][:3] == ["base-s0", "base-s1", "base-s2"]
    assert [r.config.train.seed for r in study.runs][:3] == [0, 1, 2]
    assert {r.config_name for r in study.runs} == {"base", "adamw"}


@pytest.mark.parametrize("change,fragment", [
    ({"runs": [{"name": "a"}, {"name": "a"}]}, "two runs are named 'a'"),
    ({"colour": 1}, "unknown key 'colour'"),
    ({"runs": [{"name": "a", "trian": {}}]}, "run 'a': unknown key 'trian'"),
    ({"runs": [{"name": "a", "train": {"lr": "fast"}}]}, "run 'a': config key 'train.lr'"),
    ({"runs": [{"name": "a", "baseline": True}, {"name": "b", "baseline": True}]}, "already has baseline"),
    ({"repeats": 0}, "repeats"),
    ({"runs": [{"name": "a", "train": {"budget_clock": "sundial"}}]}, "train.budget_clock"),
    ({"runs": [{"name": "a", "train": {"steps": 0}}]}, "train.steps"),
    ({"runs": []}, "non-empty list"),
])
def test_bad_study_files(tmp_path, change, fragment):
    with pytest.raises(SeglabError, match=fragment.replace("(", r"\(").replace("+", r"\+")) as err:
        load_study(str(write_study(tmp_path, {**TINY, **change})))
    assert "\n" not in str(err.value)


def test_unknown_study_name_is_one_line(capsys):
    assert_one_line_error(run_cli(capsys, "study", "nosuchstudy"), "nosuchstudy", "quick")


def test_a_broken_run_stops_the_study_before_anything_trains(capsys, tmp_path, tiny_camvid):
    for broken, fragment in (({"model": {"spec": "unet:resnet1800"}}, "resnet1800"),
                             ({"data": {"train_splits": "train+extra"}}, "split 'extra' is missing")):
        study = {**TINY, "runs": [*TINY["runs"], {"name": "broken", "group": "g", **broken}]}
        out = tmp_path / "studies"
        r = run_cli(capsys, "study", write_study(tmp_path, study), "--data", tiny_camvid, "--out", out)
        assert_one_line_error(r, "run 'broken'", fragment, "nothing was trained")
        assert not list((out / "tiny").glob("runs/*/checkpoints"))


@pytest.mark.slow
def test_runner_is_resumable_and_records_failures(capsys, caplog, tmp_path, tiny_camvid):
    # A failure only training can find: the loss turns infinite at a learning rate of 1e30.
    study = {**TINY, "runs": [*TINY["runs"], {"name": "broken", "group": "g", "train": {"lr": 1e30, "epochs": 3}}]}
    path = write_study(tmp_path, study)
    out = tmp_path / "studies"
    r = run_cli(capsys, "study", path, "--data", tiny_camvid, "--out", out, "--no-report")
    assert r.code == 1, r.err[-3000:]  # a study whose runs failed says so in its exit code
    assert "error: 1 run failed: broken (" in r.err and "loss became" in r.err and "Traceback" not in r.err
    index = json.loads((out / "tiny" / "study.json").read_text())
    status = {x["name"]: x for x in index["runs"]}
    assert status["base"]["status"] == "finished" and status["adamw"]["status"] == "finished"
    assert status["broken"]["status"] == "failed" and "loss became" in status["broken"]["error"]
    assert (out / "tiny" / "runs" / "base" / "metrics.json").is_file()
    assert (out / "tiny" / "study.yaml").read_text() == path.read_text()

    ckpt = out / "tiny" / "runs" / "base" / "checkpoints" / "best.ckpt"
    stamp = ckpt.stat().st_mtime_ns
    caplog.clear()
    caplog.set_level(logging.INFO, logger="seglab")
    r = run_cli(capsys, "study", path, "--data", tiny_camvid, "--out", out, "--no-report")
    assert r.code == 1, r.err[-3000:]
    assert ckpt.stat().st_mtime_ns == stamp  # a finished run is never re-run
    assert "3 runs, 1 to train" in caplog.text  # only the failed one is tried again
    assert "run 1/1 broken" in r.out  # captured output is a log file: the header goes with the progress lines

    # the report of what finished, through the CLI, naming the failed run
    r = run_cli(capsys, "report", out / "tiny", "--data", tiny_camvid)
    assert r.code == 0, r.err[-3000:]
    html = (out / "tiny" / "report.html").read_text()
    assert "adamw" in html and "broken" in html and "loss became" in html


def test_report_on_folder_without_runs_is_one_line(capsys, tmp_path):
    assert_one_line_error(run_cli(capsys, "report", tmp_path), str(tmp_path))



def test_eta_adds_measured_overhead_to_budgets(tmp_path):
    from seglab.study.runner import _eta

    study = {**TINY, "defaults": {**TINY["defaults"], "train": {"budget": "2m"}}}
    runs = load_study(str(write_study(tmp_path, study))).runs
    assert _eta([], runs) == pytest.approx(2 * (120 + 60))  # nothing measured yet: 60 s overhead each
    assert _eta([(runs[0], 150.0)], runs[1:]) == pytest.approx(120 + 30)  # measured: 30 s over budget


@pytest.mark.slow
def test_budgeted_study_calibrates_once_per_cost_and_pairs_runs(capsys, caplog, tmp_path, tiny_camvid):
    """Runs that differ only in recipe share one measured step cost, so they do exactly the same steps; the
    measurement is kept for a resumed study; a broken run stops the study before anything trains."""
    study = {**TINY, "defaults": {**TINY["defaults"], "train": {"budget": "2s"}},
             "runs": [*TINY["runs"], {"name": "bigger", "group": "g", "data": {"batch_size": 3}}]}
    path = write_study(tmp_path, study)
    out = tmp_path / "studies"
    r = run_cli(capsys, "study", path, "--data", tiny_camvid, "--out", out, "--no-report")
    assert r.code == 0, r.err[-3000:]
    cal = json.loads((out / "tiny" / "calibration.json").read_text())
    assert len(cal) == 2  # base and adamw share a cost; batch 3 is another
    infos = {n: json.loads((out / "tiny" / "runs" / n / "run.json").read_text()) for n in ("base", "adamw", "bigger")}
    assert infos["base"]["steps"] == infos["adamw"]["steps"] == infos["base"]["budget"]["steps"] > 0
    assert infos["base"]["budget"] == infos["adamw"]["budget"] != infos["bigger"]["budget"]
    for info in infos.values():
        b = info["budget"]
        assert info["steps"] == info["steps_planned"] == b["steps"]
        assert b["steps"] == max(1, int(2 * b["threads"] / b["seconds_per_step"]))
        assert info["images_seen"] == b["steps"] * info["batch_size"] and info["cpu_seconds"] > 0
    config = yaml.safe_load((out / "tiny" / "runs" / "base" / "config.yaml").read_text())
    assert config["train"]["steps"] == infos["base"]["steps"] and config["train"]["budget"] == "2s"

    # a study with a broken run fails before training anything, naming the run
    broken = {**study, "name": "broken",
              "runs": [*study["runs"], {"name": "typo", "group": "g", "model": {"spec": "unet:resnet1800"}}]}
    r = run_cli(capsys, "study", write_study(tmp_path, broken, "broken.yaml"), "--data", tiny_camvid, "--out", out,
                "--no-report")
    assert_one_line_error(r, "run 'typo'", "resnet1800")
    assert not (out / "broken" / "runs").exists()


@pytest.mark.slow
def test_repeated_study_reports_seed_paired_verdicts(capsys, tmp_path, tiny_camvid):
    """End to end: two seeds per configuration, budgets, per-image matrices, and a report whose comparison
    rests on the seed-paired test (training noise), with the test-image interval beside it."""
    from seglab.study.compare import SEED_TEST, load_results

    study = {**TINY, "defaults": {**TINY["defaults"], "train": {"budget": "1s"}}, "repeats": 2}
    out = tmp_path / "studies"
    r = run_cli(capsys, "study", write_study(tmp_path, study), "--data", tiny_camvid, "--out", out)
    assert r.code == 0, r.err[-3000:]
    res = load_results(out / "tiny")
    row = next(row for row in res.rows if row.config_name == "adamw")
    assert row.delta.test == SEED_TEST and row.delta.seeds.n == 2 and row.delta.images is not None
    steps = {r.info["steps"] for r in res.runs}
    assert len(steps) == 1  # one cost, one calibration: every run did the same work
    text = (out / "tiny" / "report.md").read_text()
    assert "paired t-test across training seeds" in text.lower() and "± " in text.replace("\u00a0", " ")


@pytest.mark.parametrize("where", ["config", "study"])
def test_non_utf8_files_are_one_line(capsys, tmp_path, tiny_camvid, where):
    path = tmp_path / f"{where}.yaml"
    path.write_bytes("name: café\nruns: [{name: a}]\n".encode("latin-1"))
    args = ["train", "--config", path, "--data", tiny_camvid] if where == "config" else ["study", path]
    assert_one_line_error(run_cli(capsys, *args), str(path), "UTF-8")


@pytest.mark.parametrize("name", ["..", "."])
def test_names_cannot_leave_their_folder(capsys, tmp_path, tiny_camvid, name):
    r = run_cli(capsys, "train", "--data", tiny_camvid, "--model", "scratch:simplesegnet", "--epochs", "1",
                "--out", tmp_path / "runs", "--name", name)
    assert_one_line_error(r, "name")
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "config.yaml").exists()
    with pytest.raises(SeglabError, match="run name"):
        load_study(str(write_study(tmp_path, {**TINY, "runs": [{"name": name, "group": "g"}]})))


def test_a_saved_calibration_is_reused_for_the_same_budget_and_remeasured_for_another(tmp_path, monkeypatch):
    """calibration.json keeps the budget as written ("4m"); a config's budget is seconds. A resumed study (or
    a tune's next batch) must read the saved steps, not measure again and give later runs other steps."""
    import seglab.training.run as run_module
    from seglab.config import from_dict
    from seglab.study.runner import calibrate_configs
    from seglab.training.budget import Calibration, cost_key

    cfg = from_dict({"train": {"budget": "4m"}, "model": {"spec": "scratch:simplesegnet"}})
    saved = Calibration("4m", "cpu-1thread", 1.5, 2, 320, 8, cost_key(cfg))
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps({cost_key(cfg): saved.to_dict()}))
    measured = []

    def measure(c):
        measured.append(str(c.train.budget))
        return Calibration(str(c.train.budget), "cpu-1thread", 1.0, 2, 999, 8, cost_key(c))

    monkeypatch.setattr(run_module, "calibrate_config", measure)
    assert calibrate_configs(path, [("run 'a'", "a", cfg)])[cost_key(cfg)].steps == 320
    assert measured == []
    other = from_dict({"train": {"budget": "90s"}, "model": {"spec": "scratch:simplesegnet"}})
    assert calibrate_configs(path, [("run 'b'", "b", other)])[cost_key(other)].steps == 999
    assert measured == ["90s"]
