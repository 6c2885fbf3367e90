"""The hour on any machine: a wall-clock cap re-plans its steps as the pace drifts (the schedule keeps its
shape and still ends), and ``threads: auto`` re-checks soon after choosing fewer threads than cores."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from seglab.training import pace, threads
from seglab.training.schedule import ScheduleCallback, lr_factor


def fake_trainer(step: int = 0, max_steps: int = 100):
    return SimpleNamespace(global_step=step, should_stop=False, current_epoch=0, num_training_batches=1000,
                           fit_loop=SimpleNamespace(epoch_loop=SimpleNamespace(max_steps=max_steps)),
                           state=SimpleNamespace(fn="fit"), sanity_checking=False,
                           optimizers=[SimpleNamespace(param_groups=[{"lr": 1.0}])])


def test_replan_keeps_the_progress_and_ends_the_schedule_at_the_new_last_step():
    cb = ScheduleCallback("cosine", warmup=0.03, steps=100)
    trainer = fake_trainer(40)
    before = cb.progress(trainer)
    assert before == pytest.approx(0.4)  # never re-planned: step / steps
    cb.replan(trainer, 70)
    assert cb.progress(trainer) == pytest.approx(before)  # no jump in the learning rate
    assert trainer.fit_loop.epoch_loop.max_steps == 70  # Lightning now stops there
    trainer.global_step = 55
    assert cb.progress(trainer) == pytest.approx(0.4 + 15 * 0.6 / 30)
    trainer.global_step = 70
    assert cb.progress(trainer) == pytest.approx(1.0)
    assert lr_factor("cosine", cb.progress(trainer), 0.03) == pytest.approx(0.0, abs=1e-12)
    cb.on_train_batch_end(trainer, None, None, None, 0)
    assert trainer.should_stop

    resumed = ScheduleCallback("cosine", warmup=0.03, steps=100)  # as run.py builds it from config.yaml
    resumed.load_state_dict(cb.state_dict())
    trainer = fake_trainer(55, max_steps=100)
    resumed.on_train_start(trainer, None)
    assert trainer.fit_loop.epoch_loop.max_steps == 70 and resumed.steps == 70
    assert resumed.progress(trainer) == pytest.approx(0.7)


def test_an_old_checkpoint_without_a_plan_keeps_the_configs_steps():
    cb = ScheduleCallback("cosine", steps=100)
    cb.load_state_dict({"elapsed": 12.0})
    assert cb.steps == 100 and cb.anchor == (0, 0.0) and cb.elapsed_before == 12.0


def test_resuming_with_more_steps_trains_them_even_after_a_re_plan():
    """`seglab train --resume RUN --steps N`: the user's new length wins over the re-planned one."""
    cb = ScheduleCallback("cosine", steps=100)
    cb.replan(fake_trainer(40), 80)
    longer = ScheduleCallback("cosine", steps=300)  # config.yaml's steps raised for the resume
    longer.load_state_dict(cb.state_dict())
    assert longer.steps == 300 and longer.anchor == (0, 0.0)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def drive(replanner, schedule, trainer, clock, steps, seconds_per_step, val_every=None, val_seconds=0.0):
    """Train ``steps`` fake steps of ``seconds_per_step`` each, validating every ``val_every`` steps."""
    for _ in range(steps):
        if trainer.global_step >= schedule.steps:
            break
        clock.now += seconds_per_step
        trainer.global_step += 1
        schedule.on_train_batch_end(trainer, None, None, None, 0)
        replanner.on_train_batch_end(trainer, None, None, None, 0)
        if val_every and trainer.global_step % val_every == 0:
            replanner.on_validation_start(trainer, None)
            clock.now += val_seconds
            replanner.on_validation_end(trainer, None)


def capped_run(monkeypatch, steps, max_time_s, spent_s, ceiling, val_every):
    """A cosine schedule of ``steps`` and its re-planner under a fake clock, training started."""
    clock = Clock()
    monkeypatch.setattr(pace.time, "monotonic", clock)
    monkeypatch.setattr("seglab.training.schedule.time.monotonic", clock)
    schedule = ScheduleCallback("cosine", steps=steps)
    trainer = fake_trainer(0, steps)
    schedule.on_train_start(trainer, None)
    replanner = pace.PaceReplanner(schedule, max_time_s=max_time_s, spent_s=spent_s, ceiling=ceiling,
                                   val_every=val_every)
    replanner.on_train_start(trainer, None)
    return clock, schedule, trainer, replanner


@pytest.mark.parametrize("actual, expect", [(1.3, "fewer"), (0.8, "more")])
def test_a_drifting_pace_moves_the_last_step_so_the_run_ends_within_the_cap(monkeypatch, actual, expect):
    """Planned at 1 s a step for a 600-s cap; the machine turns out 30% slower (or 20% faster). The re-planned
    run ends with its schedule complete, inside the cap, and never beyond the budget's steps."""
    planned = int(600 * (1 - pace.WALL_RESERVE))  # what the start-up timing planned
    ceiling = 700
    clock, schedule, trainer, replanner = capped_run(monkeypatch, planned, 600, 0.0, ceiling, val_every=100)
    drive(replanner, schedule, trainer, clock, 2000, actual, val_every=100, val_seconds=3.0)
    assert replanner.replans, "the drift was not noticed"
    final = trainer.global_step
    assert final == schedule.steps  # the run ended where its re-planned schedule ends
    assert schedule.progress(trainer) == pytest.approx(1.0)
    assert (final < planned) if expect == "fewer" else (planned < final <= ceiling)
    assert schedule.elapsed() <= 600  # the cap holds (validations included)
    assert schedule.elapsed() >= 600 * 0.95  # and little of it is left unused
    record = replanner.run_record()
    assert record["steps_planned"] == final and record["replans"][-1]["steps_after"] == final


def test_a_steady_pace_changes_nothing(monkeypatch):
    clock, schedule, trainer, replanner = capped_run(monkeypatch, 500, 600, 30.0, 900, val_every=None)
    # 500 steps in 600 s less the step-cost measurement and the validations' reserve, as budget.py plans
    per_step = (600 * (1 - pace.WALL_RESERVE) - 30.0) / 500
    drive(replanner, schedule, trainer, clock, 500, per_step)
    assert replanner.replans == [] and trainer.global_step == 500


def test_step_to_step_noise_does_not_keep_re_planning(monkeypatch):
    """Steps that scatter by +-15% around the planned pace (augmentation, the machine's noise) leave the plan
    nearly alone: the pace is a mean over the last few checks, and 2% of difference is tolerated."""
    import random

    rng = random.Random(0)
    clock, schedule, trainer, replanner = capped_run(monkeypatch, 1700, 3540, 50.0, 2100, val_every=None)
    per_step = (3540 * (1 - pace.WALL_RESERVE) - 50.0) / 1700
    for _ in range(1700):
        drive(replanner, schedule, trainer, clock, 1, per_step * rng.uniform(0.85, 1.15))
    checks = 1700 // replanner.every
    assert len(replanner.replans) <= checks // 10  # of about 50 checks, a few move the plan
    assert all(abs(r["steps_after"] - r["steps_before"]) <= 0.05 * r["steps_before"] for r in replanner.replans)
    assert abs(trainer.global_step - 1700) <= 0.03 * 1700


def test_a_blip_of_load_costs_steps_only_while_it_lasts(monkeypatch):
    """Five minutes at half speed in the middle of the hour: the plan drops while it lasts and climbs back
    after it, and the schedule still ends at the run's last step."""
    clock, schedule, trainer, replanner = capped_run(monkeypatch, 1700, 3540, 50.0, 2100, val_every=150)
    drive(replanner, schedule, trainer, clock, 600, 1.9, val_every=150, val_seconds=10.0)
    before_blip = schedule.steps
    drive(replanner, schedule, trainer, clock, 160, 3.8, val_every=150, val_seconds=10.0)
    during_blip = schedule.steps
    drive(replanner, schedule, trainer, clock, 5000, 1.9, val_every=150, val_seconds=10.0)
    assert during_blip < before_blip - 50  # the slow steps cost steps at the end
    assert trainer.global_step > during_blip  # and the planner gives back what the quiet pace can hold
    assert trainer.global_step == schedule.steps and schedule.progress(trainer) == pytest.approx(1.0)
    assert 50.0 + schedule.elapsed() <= 3540


def test_thread_tuner_rechecks_soon_after_choosing_fewer_threads(monkeypatch):
    """A blip makes one thread look faster at the first check; a minute later two threads are faster again
    and the tuner goes back to them, long before its 200-step re-check. Every check is recorded."""
    clock = {"perf": 0.0, "mono": 0.0}
    monkeypatch.setattr(threads.time, "perf_counter", lambda: clock["perf"])
    monkeypatch.setattr(threads.time, "monotonic", lambda: clock["mono"])
    before = torch.get_num_threads()
    tuner = threads.ThreadTuner(candidates=[1, 2], trials=2, recheck=200, soon_s=60.0)
    trainer = SimpleNamespace(global_step=0)
    tuner.on_train_start(trainer, None)
    used = []
    try:
        for step in range(60):
            tuner.on_train_batch_start(trainer, None, None, 0)
            used.append(torch.get_num_threads())
            busy = step < 5  # the blip: two threads are slow only during the first check
            cost = (3.0 if busy else 1.0) if used[-1] == 2 else 2.0
            clock["perf"] += cost
            clock["mono"] += cost
            trainer.global_step = step + 1
            tuner.on_train_batch_end(trainer, None, None, None, 0)
    finally:
        torch.set_num_threads(before)
    first, second = tuner.choices[:2]
    assert first["threads"] == 1 and first["seconds_per_step"] == {"1": 2.0, "2": 3.0}
    assert second["threads"] == 2  # re-checked about a minute (30 one-thread steps) later
    assert second["step"] - first["step"] <= 40
    assert tuner.chosen == 2 and used[-1] == 2
    assert tuner.run_record() == {"thread_choices": tuner.choices}
    restored = threads.ThreadTuner(candidates=[1, 2])
    restored.load_state_dict(tuner.state_dict())
    assert restored.choices == tuner.choices  # a resumed run keeps the earlier sessions' record


@pytest.mark.slow
def test_a_capped_run_that_slows_down_re_plans_and_records_it(capsys, monkeypatch, tiny_camvid, tmp_path):
    """A real run under a 25-second cap whose steps turn slow after the start-up timing: run.json records
    the re-plans, the run ends at its re-planned last step with the schedule run out, within the cap."""
    import time as real_time

    import lightning as L
    from fakes import run_cli

    from seglab.training import run as run_module

    class SlowDown(L.Callback):  # another program takes the machine once training has begun
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step > 20:
                real_time.sleep(0.05)

    real_pace = run_module.pace_replanner

    def with_slowdown(*args, **kwargs):
        return [*real_pace(*args, **kwargs), SlowDown()]

    monkeypatch.setattr(run_module, "pace_replanner", with_slowdown)
    r = run_cli(capsys, "train", "--data", tiny_camvid, "--model", "scratch:simplesegnet", "--size", "64x96",
                "--batch", "2", "--budget", "10m", "--set", "train.max_time=25s", "--set", "train.threads=1",
                "--set", "train.scheduler=cosine",
                "--out", tmp_path, "--name", "capped")
    assert r.code == 0, r.err[-2000:]
    info = json.loads((tmp_path / "capped" / "run.json").read_text())
    first_plan = info["budget"]["steps"]
    assert info["replans"] and info["replans"][0]["steps_before"] == first_plan
    assert info["steps"] == info["steps_planned"] < first_plan
    assert info["train_seconds"] + info["budget"]["calibration_seconds"] <= 25 * 1.1
    rows = (tmp_path / "capped" / "metrics.csv").read_text().splitlines()
    header, last = rows[0].split(","), rows[-1].split(",")
    assert float(last[header.index("lr")]) < 1e-3 * 1e-2  # the cosine ran out (base lr 1e-3)
