"""Equal work: budgets become step counts, paired runs share data order and initial weights, one Trainer
factory for every path, and a console bar that tells the truth in 80 columns."""

from __future__ import annotations

import json

import lightning as L
import pytest
import torch
from fakes import run_cli
from tqdm import tqdm

from seglab.config import load_config
from seglab.training import budget
from seglab.training import trainer as trainer_module
from seglab.training.budget import cost_key, steps_for, steps_that_fit
from seglab.training.plan import resolve_plan
from seglab.training.progress import PlainProgress, RunProgressBar, describe
from seglab.training.run import build_module, prepare_data
from seglab.training.trainer import TRAINER_DEFAULTS, make_trainer


def cfg_for(data, **overrides):
    base = {"data.root": str(data), "data.size": "64x96", "data.batch_size": 2, "model.spec": "scratch:simplesegnet",
            "model.weights": "none"}
    return load_config(overrides={**base, **overrides})


def test_budget_converts_to_steps_by_single_thread_cost():
    assert steps_for(180, seconds_per_step=1.2, threads=2) == 300  # 180 s x 2 threads / 1.2 s
    assert steps_for(10, seconds_per_step=100.0, threads=1) == 1  # at least one step
    a = load_config(overrides={"model.spec": "fpn:resnet18", "train.loss": "ce"})
    b = load_config(overrides={"model.spec": "fpn:resnet18", "train.loss": "dice_ce", "train.optimizer": "adamw",
                               "data.scale_crop": False})
    assert cost_key(a) == cost_key(b)  # a recipe change costs the same: one calibration, identical steps
    for change in ({"data.batch_size": 4}, {"data.size": "128x128"}, {"model.spec": "unet:resnet18"},
                   {"train.precision": "32"}):
        assert cost_key(load_config(overrides={"model.spec": "fpn:resnet18", **change})) != cost_key(a)


def test_max_time_caps_a_budget_at_the_steps_that_fit(monkeypatch, tiny_camvid):
    """With train.max_time, a budget never plans more steps than the wall clock holds at the run's threads,
    so the schedule ends as planned instead of being cut by the hard stop."""
    import time

    timed = []

    def fake_time_steps(train_cfg, module, datamodule, steps, now):
        timed.append((train_cfg.threads, now))
        return [0.5] * steps if now is time.process_time else [2.0] * steps  # 0.5 CPU-s alone, 2 s wall at 2

    monkeypatch.setattr(budget, "time_steps", fake_time_steps)
    cpu2 = {"train.threads": 2, "train.accelerator": "cpu"}  # the CPU path, also on a machine with CUDA
    plain = budget.calibrate(cfg_for(tiny_camvid, **{"train.budget": "10m", **cpu2}), None, None)
    assert plain.steps == plain.budget_steps == 2400 and plain.wall_seconds_per_step is None  # 600 s x 2 / 0.5
    assert timed == [(1, time.process_time)]  # no wall-clock measurement without max_time
    capped = budget.calibrate(cfg_for(tiny_camvid, **{"train.budget": "10m", "train.max_time": "10m", **cpu2}),
                              None, None)
    assert timed[1:] == [(1, time.process_time), (2, time.perf_counter)]  # the run's own thread count
    assert capped.budget_steps == 2400 and capped.wall_seconds_per_step == 2.0 and capped.max_time == "10m"
    assert capped.steps == 284  # (600 s x 0.95 - the calibration's own time) / 2 s
    roomy = budget.calibrate(cfg_for(tiny_camvid, **{"train.budget": "1m", "train.max_time": "10h", **cpu2}),
                             None, None)
    assert roomy.steps == roomy.budget_steps == 240  # the budget decides when it fits
    assert steps_that_fit(3600, spent=30, wall_per_step=2.0) == 1695 and steps_that_fit(1, 5, 1.0) == 1
    assert cost_key(cfg_for(tiny_camvid, **{"train.max_time": "10m"})) != cost_key(cfg_for(tiny_camvid))
    old = {k: v for k, v in plain.to_dict().items() if k in ("budget", "clock", "seconds_per_step", "threads",
                                                              "steps", "images_per_step", "key")}
    assert budget.Calibration(**old).steps == 2400  # a study's calibration.json from before still loads


def test_short_runs_validate_at_least_ten_times(tiny_camvid):
    cfg = cfg_for(tiny_camvid, **{"train.steps": 409})
    dm, _ = prepare_data(cfg)
    images = len(dm.dataset("train"))
    assert resolve_plan(cfg, images).val_every == 40
    cfg = cfg_for(tiny_camvid, **{"train.epochs": 200})  # one step per epoch: once per epoch is plenty
    assert resolve_plan(cfg, images).val_every is None
    cfg = cfg_for(tiny_camvid, **{"train.budget": "1m", "train.budget_clock": "wall"})
    assert resolve_plan(cfg, images).val_every is None


def test_same_seed_pairs_initial_weights_and_data_order(tiny_camvid):
    """Two configurations of a study that share a seed differ only in what they set out to test."""
    a = cfg_for(tiny_camvid, **{"train.seed": 4})
    b = cfg_for(tiny_camvid, **{"train.seed": 4, "train.loss": "dice_ce", "train.optimizer": "adamw"})
    dm_a, _ = prepare_data(a)
    dm_b, _ = prepare_data(b)
    torch.rand(1000)  # random state used in between (e.g. by a calibration) must not matter
    ma, mb = build_module(a, dm_a, None), build_module(b, dm_b, None)
    sa, sb = ma.model.state_dict(), mb.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    torch.rand(1000)
    batches_a = [m for _, m in dm_a.train_dataloader()]
    torch.rand(7)
    batches_b = [m for _, m in dm_b.train_dataloader()]
    assert all(torch.equal(x, y) for x, y in zip(batches_a, batches_b, strict=True))
    other = build_module(cfg_for(tiny_camvid, **{"train.seed": 5}), dm_a, None).model.state_dict()
    assert not all(torch.equal(sa[k], other[k]) for k in sa)


@pytest.mark.slow
def test_one_trainer_factory_for_train_calibration_and_bench(capsys, monkeypatch, tiny_camvid, tmp_path):
    """Every Trainer seglab builds carries the same settings: `bench train` times what `train` runs."""
    made = []

    class Recording(L.Trainer):
        def __init__(self, **kwargs):
            made.append(kwargs)
            super().__init__(**kwargs)

    monkeypatch.setattr(trainer_module.L, "Trainer", Recording)
    r = run_cli(capsys, "train", "--data", tiny_camvid, "--model", "scratch:simplesegnet", "--size", "64x96",
                "--batch", "2", "--budget", "1s", "--out", tmp_path, "--name", "b")
    assert r.code == 0, r.err[-2000:]
    from seglab.bench.train_bench import run_train_bench

    run_train_bench(str(tiny_camvid), "scratch:simplesegnet", (64, 96), batch=2, steps=1, warmup=0, rounds=1,
                    threads=1, show=False)
    # calibration, training, then the benchmark's seglab path (scoring runs no Trainer: seglab.scoring)
    assert len(made) >= 3
    for kwargs in made:
        for key, value in TRAINER_DEFAULTS.items():
            assert kwargs[key] == value, (key, kwargs)
    trainer = make_trainer(resolve_plan(load_config()), logger=False)
    assert trainer.num_sanity_val_steps == 0 and trainer.log_every_n_steps == 10
    assert isinstance(trainer.progress_bar_callback, (RunProgressBar, PlainProgress))  # which: test_progress.py


def test_console_bar_reads_right_in_80_columns():
    text = describe(3, 10, 0.41234, 0.47912)
    assert text == "epoch 3/10  loss 0.412  val mIoU 47.9%"
    assert describe(1, None, None, None) == "epoch 1"
    assert "v_num" not in text and "-2" not in text
    line = tqdm.format_meter(102, 419, 40.0, ncols=80, prefix=text, bar_format=RunProgressBar.TRAIN_FORMAT)
    assert len(line) <= 80 and line.startswith(text + " |") and "102/419 steps" in line


def test_run_records_its_work_and_per_image_matrices(capsys, tiny_camvid, tmp_path):
    import numpy as np

    r = run_cli(capsys, "train", "--data", tiny_camvid, "--model", "scratch:simplesegnet", "--size", "64x96",
                "--batch", "2", "--steps", "4", "--out", tmp_path, "--name", "w")
    assert r.code == 0, r.err[-2000:]
    info = json.loads((tmp_path / "w" / "run.json").read_text())
    assert info["steps"] == info["steps_planned"] == 4 and info["images_seen"] == 8 and info["epochs"] == 4
    assert info["train_seconds"] > 0 and info["cpu_seconds"] > 0 and info["img_per_s"] > 0
    metrics = json.loads((tmp_path / "w" / "metrics.json").read_text())
    with np.load(tmp_path / "w" / "per_image_test.npz") as f:
        mats, names = f["matrices"], list(f["images"])
    assert mats.shape == (3, 11, 11) and names == sorted(p.name for p in (tiny_camvid / "test").iterdir())
    assert (mats.sum(0) == np.asarray(metrics["confusion_matrix"])).all()  # exactly the split's matrix
    assert all(m.sum() > 0 for m in mats)


@pytest.mark.parametrize("value", ["0", "-3"])
def test_bad_steps_are_one_line(capsys, value, tiny_camvid):
    from fakes import assert_one_line_error

    r = run_cli(capsys, "train", "--data", tiny_camvid, "--model", "scratch:simplesegnet", "--steps", value)
    assert_one_line_error(r, "--steps")


@pytest.mark.slow
def test_resume_keeps_the_steps_its_budget_bought(capsys, monkeypatch, tiny_camvid, tmp_path):
    """A study resumes an interrupted run from its study-file config (no steps in it): the run must do the
    steps saved in its config.yaml, not measure its cost again."""
    from seglab.training import run as run_module

    r = run_cli(capsys, "train", "--data", tiny_camvid, "--model", "scratch:simplesegnet", "--size", "64x96",
                "--batch", "2", "--budget", "1s", "--out", tmp_path, "--name", "b")
    assert r.code == 0, r.err[-2000:]
    steps = json.loads((tmp_path / "b" / "run.json").read_text())["steps"]

    def no_second_measurement(*args, **kwargs):
        raise AssertionError("calibrated again on resume")

    monkeypatch.setattr(run_module, "calibrate", no_second_measurement)
    cfg = cfg_for(tiny_camvid, **{"train.budget": "1s", "name": "b", "out_dir": str(tmp_path)})
    assert cfg.train.steps is None
    run_module.train(cfg, resume=True)
    assert cfg.train.steps == steps
    assert json.loads((tmp_path / "b" / "run.json").read_text())["steps"] == steps
