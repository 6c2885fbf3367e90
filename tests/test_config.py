import pytest

from seglab.config import RunConfig, load_config, parse_duration, parse_override
from seglab.errors import SeglabError
from seglab.sizes import parse_size


def test_defaults_yaml_then_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model:\n  spec: unet:resnet18\ntrain:\n  lr: 0.01\n  epochs: 7\ndata:\n  size: 192x256\n")
    cfg = load_config(path, {"train.lr": 3e-4, "data.batch_size": 2})
    assert cfg.model.spec == "unet:resnet18"
    assert cfg.train.lr == 3e-4 and cfg.train.epochs == 7  # override wins, YAML beats default
    assert cfg.data.size == (192, 256) and cfg.data.batch_size == 2
    assert cfg.train.optimizer == RunConfig().train.optimizer


def test_unknown_key_names_it_and_suggests(tmp_path):
    with pytest.raises(SeglabError, match=r"unknown config key 'train.lrr' \(did you mean 'train.lr'\?\)"):
        load_config(None, {"train.lrr": 1})
    with pytest.raises(SeglabError, match="unknown config key 'optimiser'"):
        load_config(None, {"optimiser": "adam"})


@pytest.mark.parametrize("key,value,match", [
    ("train.epochs", "many", "train.epochs"),
    ("train.lr", -1.0, "train.lr"),
    ("data.size", "100x100", "multiples of 32"),
    ("data.size", "big", "data.size"),
    ("train.class_weights", "inverse", "median-frequency"),
    ("train.budget", "soon", "bad duration"),
    ("train.warmup", 1.5, "train.warmup"),
    ("name", "a/b", "name"),
    ("train.compile", "sometimes", "train.compile.*true, false or auto"),
])
def test_bad_values_are_one_line_errors(key, value, match):
    with pytest.raises(SeglabError, match=match) as err:
        load_config(None, {key: value})
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("key,value,match", [
    ("train.optimizer", "lamb", "adam, adamw, sgd"),
    ("train.loss", "hinge", "'train.loss': bad value 'hinge'; choose one of ce, dice"),
    ("train.loggers", "csv,neptune", "'train.loggers': bad value 'neptune'"),
    ("train.accelerator", "tpu", "'train.accelerator'.*auto, cpu, cuda, cuda:N, mps"),
    ("data.layout", "coco2", "'data.layout'.*auto, camvid"),
    ("data.tta", "scales:1,2", "'data.tta'.*choose one of"),
])
def test_names_are_checked_by_the_dicts_that_implement_them(key, value, match):
    """config loads any name (it knows none); the run's plan checks each against its owner's dict."""
    from seglab.training.plan import check_names

    cfg = load_config(None, {key: value})
    with pytest.raises(SeglabError, match=match) as err:
        check_names(cfg)
    assert "\n" not in str(err.value)
    assert check_names(load_config()) is not None  # the defaults are all known names


def test_durations_are_parsed_once_and_keep_their_text():
    from seglab.config import Duration, from_dict

    cfg = load_config(None, {"train.budget": "4m", "train.max_time": "00:30:00"})
    assert cfg.train.budget == 240 and cfg.train.max_time == 1800  # seconds, for the code
    assert cfg.to_dict()["train"]["budget"] == "4m" and cfg.to_dict()["train"]["max_time"] == "00:30:00"
    assert from_dict(cfg.to_dict()) == cfg and str(from_dict(cfg.to_dict()).train.budget) == "4m"
    assert load_config(None, {"train.budget": "4m", "train.epochs": 3}).run_name().endswith("_4m")
    assert Duration(90) == 90 and str(Duration(90)) == "90s"
    with pytest.raises(SeglabError, match="must be a positive duration"):
        load_config(None, {"train.max_time": "0s"})


def test_bad_yaml_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train: [unclosed\n")
    with pytest.raises(SeglabError, match="bad.yaml: not valid YAML"):
        load_config(path)
    with pytest.raises(SeglabError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")


def test_parsers():
    assert parse_size("192x256") == (192, 256) and parse_size(64) == (64, 64) and parse_size([32, 64]) == (32, 64)
    assert parse_duration("10m") == 600 and parse_duration("1.5h") == 5400
    assert parse_duration("00:02:30") == 150
    assert parse_override("train.lr=3e-4") == ("train.lr", 3e-4)
    assert parse_override("train.class_weights=[1, 2]") == ("train.class_weights", [1, 2])
    with pytest.raises(SeglabError, match="KEY=VALUE"):
        parse_override("train.lr")


def test_run_name_encodes_setup():
    cfg = load_config(None, {"model.spec": "unet:resnet34", "data.size": "192x256", "train.epochs": 3,
                             "data.batch_size": 8})
    assert cfg.run_name() == "unet-resnet34_192x256_bs8_3ep"
    assert load_config(None, {"name": "mine"}).run_name() == "mine"


def test_config_round_trips_through_dict():
    from seglab.config import from_dict

    cfg = load_config(None, {"data.size": "64x96", "train.class_weights": [1, 2.5]})
    assert from_dict(cfg.to_dict()) == cfg
