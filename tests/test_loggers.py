"""Experiment trackers (train.loggers): what TensorBoard and MLflow's local store hold after a tiny run, a
study grouping its runs, and the one-line errors for an unknown tracker or a missing package. Offline."""

import json
import sys

import pytest
import yaml
from fakes import assert_one_line_error, run_cli, train_run

from seglab.training.loggers import tracker_scores


def mlflow_runs(store, experiment: str) -> dict:
    """{run name: mlflow Run} of ``experiment`` in the SQLite store ``store``, each name once."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{store}")
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, [e.name for e in client.search_experiments()]
    runs = client.search_runs([exp.experiment_id])
    names = [r.info.run_name for r in runs]
    assert len(set(names)) == len(names), names
    return dict(zip(names, runs, strict=True))


def test_tensorboard_holds_config_curves_and_test_scores(tiny_camvid, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    # 10 steps: the trainer logs step values every 10 steps
    run = train_run(tiny_camvid, tmp_path, "r", "--loggers", "csv,tensorboard", "--steps", "10")
    events = EventAccumulator(str(run / "tb"))
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"train/loss_step", "train/loss_epoch", "val/miou", "test/miou", "test/mean_dice"} <= scalars
    assert any(tag.startswith("test/iou/") for tag in scalars)
    miou = json.loads((run / "metrics.json").read_text())["miou"]
    assert [(s.step, pytest.approx(s.value)) for s in events.Scalars("test/miou")] == [(10, miou)]
    # the HParams tab: the resolved config, beside the test scores
    content = events.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hparams = start.session_start_info.hparams
    assert hparams["config/train/lr"].number_value == pytest.approx(1e-3)
    assert hparams["config/train/steps"].number_value == 10
    assert hparams["config/model/spec"].string_value == "scratch:simplesegnet"
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert "test/miou" in {m.name.tag for m in experiment.metric_infos}
    assert list((run / "logs").glob("version_0/metrics.csv"))  # the CSV log is always kept


def test_mlflow_local_store_holds_config_and_test_scores_and_resume_goes_on_in_it(monkeypatch, capsys,
                                                                                    tiny_camvid, tmp_path):
    pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)  # nothing may land in the folder seglab runs in
    out = tmp_path / "runs"
    run = train_run(tiny_camvid, out, "r", "--loggers", "mlflow")
    runs = mlflow_runs(out / "mlflow.db", "seglab")
    assert list(runs) == ["r"]
    found = runs["r"]
    assert found.info.status == "FINISHED"
    assert found.data.params["config/train/lr"] == "0.001"
    assert found.data.params["config/data/root"] == str(tiny_camvid.resolve())  # resolved, not as given
    metrics = json.loads((run / "metrics.json").read_text())
    assert found.data.metrics["test/miou"] == pytest.approx(metrics["miou"])
    assert found.data.metrics["test/pixel_accuracy"] == pytest.approx(metrics["pixel_accuracy"])
    assert "val/miou" in found.data.metrics and "train/loss_epoch" in found.data.metrics
    info = json.loads((run / "run.json").read_text())
    assert info["mlflow"]["run_id"] == found.info.run_id
    assert sorted(p.name for p in tmp_path.iterdir()) == ["camvid", "runs"]

    r = run_cli(capsys, "train", "--resume", run)
    assert r.code == 0, r.err[-3000:]
    again = mlflow_runs(out / "mlflow.db", "seglab")
    assert list(again) == ["r"] and again["r"].info.run_id == found.info.run_id


def test_a_study_groups_its_runs_in_one_mlflow_experiment(monkeypatch, capsys, tiny_camvid, tmp_path):
    pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    study = {"name": "tiny", "defaults": {"data": {"size": "64x96", "batch_size": 2},
                                          "model": {"spec": "scratch:simplesegnet"},
                                          "train": {"epochs": 1, "loggers": ["mlflow"]}},
             "runs": [{"name": "base", "group": "g", "baseline": True},
                      {"name": "adamw", "group": "g", "train": {"optimizer": "adamw"}}]}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    out = tmp_path / "studies"
    r = run_cli(capsys, "study", path, "--data", tiny_camvid, "--out", out, "--no-report")
    assert r.code == 0, r.err[-3000:]
    runs = mlflow_runs(out / "tiny" / "runs" / "mlflow.db", "tiny")
    assert sorted(runs) == ["adamw", "base"]
    assert {n: r.data.params["config/train/optimizer"] for n, r in runs.items()} == {"base": "adam", "adamw": "adamw"}
    assert all("test/miou" in r.data.metrics for r in runs.values())


def test_wandb_logs_offline_into_the_run_folder(monkeypatch, tiny_camvid, tmp_path):
    pytest.importorskip("wandb")
    for var in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_PROJECT"):
        monkeypatch.delenv(var, raising=False)
    run = train_run(tiny_camvid, tmp_path, "r", "--loggers", "wandb")
    run_id = json.loads((run / "run.json").read_text())["wandb"]["id"]
    [record] = (run / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb")
    data = record.read_bytes()  # protobuf records: keys are plain bytes in it
    assert b"test/miou" in data and b"val/miou" in data and b"scratch:simplesegnet" in data


@pytest.mark.parametrize("args,fragments", [
    (["--loggers", "csv,comet"], ["--loggers", "'comet'", "csv, tensorboard, mlflow, wandb"]),
    (["--set", "train.loggers=tensorboard,comet"], ["train.loggers", "'comet'", "csv, tensorboard, mlflow, wandb"]),
])
def test_an_unknown_tracker_is_a_one_line_error(capsys, tiny_camvid, tmp_path, args, fragments):
    r = run_cli(capsys, "train", "--data", tiny_camvid, "--out", tmp_path / "runs", *args)
    assert_one_line_error(r, *fragments)
    assert not (tmp_path / "runs").exists()


def test_a_missing_tracker_package_names_its_extra_before_anything_runs(monkeypatch, capsys, tiny_camvid,
                                                                        tmp_path):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if not installed: importing it fails
    r = run_cli(capsys, "train", "--data", tiny_camvid, "--out", tmp_path / "runs", "--loggers", "csv,mlflow")
    assert_one_line_error(r, "mlflow is not installed", 'pip install "seglab[mlflow]"')
    assert not (tmp_path / "runs").exists()

    study = {"name": "tiny", "defaults": {"train": {"loggers": ["mlflow"]}}, "runs": [{"name": "base"}]}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    r = run_cli(capsys, "study", path, "--data", tiny_camvid, "--out", tmp_path / "studies", "--no-report")
    assert_one_line_error(r, "run 'base'", 'pip install "seglab[mlflow]"', "nothing was trained")


def test_tracker_scores_are_metrics_json_numbers_under_allowed_names():
    metrics = {"miou": 0.5, "pixel_accuracy": 0.8, "mean_dice": None, "class_names": ["sky", "traffic light"],
               "per_class_iou": [0.25, None]}
    assert tracker_scores(metrics) == {"test/miou": 0.5, "test/pixel_accuracy": 0.8, "test/iou/sky": 0.25}
    metrics["per_class_iou"] = [0.25, 0.75]
    assert tracker_scores(metrics)["test/iou/traffic_light"] == 0.75
