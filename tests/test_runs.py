"""The run folder is the one contract for everything on disk: what RunDir writes, it reads back, typed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fakes import make_run

from seglab.config import DataConfig, ModelConfig, RunConfig, load_config
from seglab.data.classes import CAMVID11, ClassSet
from seglab.errors import SeglabError
from seglab.runs import RunDir, StudyDir, read_trained


def test_config_round_trips_as_the_dataclass(tmp_path):
    cfg = load_config(None, {"data.size": "64x96", "train.lr": 3e-4, "train.class_weights": "1,2",
                             "data.eval_size": "native"})
    run = RunDir(tmp_path / "r")
    run.write_config(cfg)
    back = run.read_config()
    assert back == cfg and back.data.size == (64, 96) and back.train.class_weights == [1.0, 2.0]


def test_a_config_no_longer_valid_is_one_line_naming_the_file(tmp_path):
    run = RunDir(tmp_path / "r")
    run.path.mkdir()
    run.config.write_text("train: {lr: -1}\n")
    with pytest.raises(SeglabError, match=r"config.yaml: config key 'train.lr': must be > 0"):
        run.read_config()
    with pytest.raises(SeglabError, match="no config.yaml"):
        RunDir(tmp_path / "empty").read_config()


def test_metrics_per_image_and_records_read_back_what_was_written(tmp_path):
    run = RunDir(tmp_path / "r")
    assert run.read_metrics("val") is None and run.read_per_image() is None and run.read_info() == {}
    run.write_metrics({"miou": 0.5}, "val")
    run.write_metrics({"miou": 0.4}, "test", "~tta-none")
    mats = np.arange(2 * 3 * 3).reshape(2, 3, 3)
    run.write_per_image(mats, ["a.png", "b.png"])
    run.write_info(status="running")
    run.write_info(steps=3)
    assert run.read_metrics("val") == {"miou": 0.5} and run.metrics("val").name == "metrics_val.json"
    assert run.read_metrics("test", "~tta-none") == {"miou": 0.4} and run.read_metrics("test") is None
    matrices, images = run.read_per_image()
    assert np.array_equal(matrices, mats) and images == ["a.png", "b.png"]
    assert run.read_info() == {"status": "running", "steps": 3}


def test_classes_come_from_classes_json_or_else_the_checkpoint(tmp_path):
    config = RunConfig(model=ModelConfig(spec="scratch:simplesegnet", weights="none"),
                       data=DataConfig(size=(64, 96))).to_dict()
    run = RunDir(make_run(tmp_path / "r", config))
    assert run.read_classes() == CAMVID11  # an older run: no classes.json, the checkpoint knows
    binary = ClassSet(("background", "crack"), ((0, 0, 0), (255, 0, 0)), values=(0, 255))
    run.write_classes(binary)
    assert run.read_classes() == binary


def test_read_trained_gives_config_classes_and_the_network_without_lightning(tmp_path):
    config = RunConfig(model=ModelConfig(spec="scratch:simplesegnet", weights="none"),
                       data=DataConfig(size=(64, 96))).to_dict()
    path = make_run(tmp_path / "r", config)
    trained = read_trained(path)
    assert trained.run == RunDir(path) and trained.checkpoint.name == "best.ckpt"
    assert trained.config.model.spec == "scratch:simplesegnet" and trained.classes == CAMVID11
    saved = torch.load(trained.checkpoint, weights_only=True)["state_dict"]
    net = trained.build()
    assert not net.training
    for name, tensor in net.state_dict().items():
        assert torch.equal(tensor, saved[f"model.{name}"])


def test_study_dir_index_is_empty_until_written(tmp_path):
    study = StudyDir(tmp_path / "s")
    assert study.read_index() == {} and study.index_runs() == {}
    study.write_index({"name": "s", "runs": [{"name": "a", "status": "finished"}, {"bad": 1}]})
    assert study.index_runs() == {"a": {"name": "a", "status": "finished"}}
    assert study.run("a").path == tmp_path / "s" / "runs" / "a"


def test_training_writes_the_classes_it_predicts(tiny_camvid, tmp_path):
    from fakes import train_run

    run = RunDir(train_run(tiny_camvid, tmp_path / "runs"))
    assert (run.path / "classes.json").is_file()
    assert run.read_classes() == CAMVID11 == read_trained(run.path).classes
