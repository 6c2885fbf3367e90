"""Turn a training budget into a step count once, from a cost measurement that machine load cannot bias.

Why not stop on the wall clock: on a shared 2-core machine another program can take a core at any time;
a run that meets it then does a third fewer steps than its pair, and a comparison "at equal time" compares
machine noise. Why not CPU time of the multi-threaded run: OpenMP threads spin while they wait for a
descheduled partner, so it grows by half under load (measured: 1.43 -> 2.20 CPU-s per step).
What stays put is the CPU time of the same step on *one* thread (1.145 s alone, 1.19 s beside a busy
process): a core runs it or it waits, it does not spin. So a few steps are timed single-threaded and

    steps = budget seconds x threads the run will use / single-thread CPU seconds per step

A faster model still gets more steps (the point of an equal-time comparison); runs that share model,
crop, batch and precision share one calibration in a study, so a hypothesis and its baseline do
exactly the same work. On CUDA the GPU's wall time per step is measured instead (synchronised).

With ``train.max_time`` as well, the steps are capped at what fits into that wall-clock time: a few steps are
timed again at the run's own thread count, by the wall clock, and the budget never plans more steps than
fit into ``max_time`` less the calibration and a reserve for validations. The schedule then ends where it
was planned to, instead of being cut by the hard stop. This cap does depend on load; runs of a study that
share a calibration still share it, so they still do equal work.
"""

from __future__ import annotations

import copy
import logging
import math
import statistics
import time
from dataclasses import asdict, dataclass, replace

import lightning as L
import torch

from seglab.config import RunConfig
from seglab.training.plan import RunPlan, resolve_plan
from seglab.training.threads import usable_cpus
from seglab.training.trainer import make_trainer, quiet

log = logging.getLogger("seglab")

WARMUP_STEPS = 2  # the first steps pay for allocation and autotuning
TIMED_STEPS = 6  # median of these: single steps vary by a few percent
WALL_RESERVE = 0.05  # share of train.max_time not planned for steps: validations, checkpoints, later load


@dataclass
class Calibration:
    """What a budget was converted with; saved in run.json (and a study's calibration.json)."""

    budget: str  # as configured, e.g. "3m"
    clock: str  # "cpu-1thread" (CPU) or "cuda" (GPU wall time)
    seconds_per_step: float  # single-thread CPU seconds (CPU) or GPU seconds (CUDA) per optimizer step
    threads: int  # threads the run trains with: the budget buys budget x threads CPU-seconds
    steps: int  # optimizer steps the budget buys
    images_per_step: int
    key: str  # what the cost depends on; runs with equal keys share a calibration
    budget_steps: int | None = None  # steps the budget alone buys (``steps`` may be fewer: the wall cap)
    max_time: str | None = None  # train.max_time the steps were capped to fit, if any
    wall_seconds_per_step: float | None = None  # at the run's threads, by the wall clock (with max_time)
    calibration_seconds: float | None = None  # wall time the measurement took

    def to_dict(self) -> dict:
        return asdict(self)


def cost_key(cfg: RunConfig) -> str:
    """Settings that decide the cost of a training step (not loss, optimiser or augmentation choices)."""
    h, w = cfg.data.size
    t = cfg.train
    key = (f"{cfg.model.spec}|{h}x{w}|bs{cfg.data.batch_size}|{t.precision}|cl{int(t.channels_last)}|"
           f"{t.accelerator}|threads{t.threads}")
    key += f"|compile-{t.compile}" if t.compile else ""
    return key + (f"|max{t.max_time}" if t.max_time else "")  # the wall cap depends on it


def run_threads(cfg: RunConfig) -> int:
    """Threads the run will train with (``train.threads``: 0 and auto mean every usable core)."""
    t = cfg.train.threads
    return int(t) if isinstance(t, int) and t > 0 else usable_cpus()


def steps_for(budget_s: float, seconds_per_step: float, threads: int) -> int:
    return max(1, math.floor(budget_s * threads / seconds_per_step))


class StepClock(L.Callback):
    """Records the cost of each training step, from the end of one step to the end of the next (so data
    loading and augmentation count), by the clock ``now``, and the thread count the steps ran with."""

    def __init__(self, now):
        self.now, self.costs, self._last, self.threads = now, [], None, 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        t = self.now()
        if self._last is not None:
            self.costs.append(t - self._last)
        self._last, self.threads = t, torch.get_num_threads()


def cuda_time() -> float:
    torch.cuda.synchronize()
    return time.perf_counter()


def time_steps(plan: RunPlan, module: L.LightningModule, datamodule, steps: int, now) -> list[float]:
    """Cost of ``steps`` training steps of a copy of ``module`` (the caller's module is left untouched)
    under ``plan``'s device, precision and threads. Global random state is restored afterwards; the
    caller re-seeds the augmentation stream it shares."""
    clock = StepClock(now)
    saved_threads = torch.get_num_threads()
    trainer = make_trainer(plan, max_steps=steps + 1, max_epochs=-1, limit_val_batches=0, logger=False,
                           enable_checkpointing=False, enable_progress_bar=False, callbacks=[clock], devices=1)
    try:
        with quiet(), torch.random.fork_rng():
            trainer.fit(copy.deepcopy(module), train_dataloaders=datamodule.train_dataloader())
    finally:
        torch.set_num_threads(saved_threads)
    return clock.costs


def wall_seconds_per_step(cfg: RunConfig, module: L.LightningModule, datamodule, timed: int = TIMED_STEPS) -> float:
    """Median wall-clock seconds of ``timed`` training steps at the run's own thread count (after warm-up)."""
    wall = time_steps(replace(resolve_plan(cfg), threads=run_threads(cfg)), module, datamodule,
                      WARMUP_STEPS + timed, time.perf_counter)
    return statistics.median(wall[WARMUP_STEPS:] or wall)


def steps_that_fit(max_time_s: float, spent: float, wall_per_step: float) -> int:
    """Steps that fit into ``max_time_s`` seconds after ``spent`` seconds, with WALL_RESERVE of it kept back."""
    seconds = max_time_s * (1 - WALL_RESERVE) - spent
    return max(1, math.floor(seconds / wall_per_step))


def calibrate(cfg: RunConfig, module: L.LightningModule, datamodule) -> Calibration:
    """Time a few training steps of a copy of ``module`` and convert ``cfg.train.budget`` into steps (capped
    to fit ``cfg.train.max_time`` when that is set)."""
    start = time.perf_counter()
    plan = resolve_plan(cfg)
    cuda = plan.accelerator == "cuda"
    threads = run_threads(cfg)
    costs = time_steps(plan if cuda else replace(plan, threads=1), module, datamodule, WARMUP_STEPS + TIMED_STEPS,
                       cuda_time if cuda else time.process_time)
    per_step = statistics.median(costs[WARMUP_STEPS:] or costs)
    steps = budget_steps = steps_for(cfg.train.budget, per_step, 1 if cuda else threads)
    wall_per_step = None
    if cfg.train.max_time:
        # the GPU's synchronised step time is already wall-clock time
        wall_per_step = per_step if cuda else wall_seconds_per_step(cfg, module, datamodule)
        steps = min(budget_steps, steps_that_fit(cfg.train.max_time, time.perf_counter() - start, wall_per_step))
    max_time = str(cfg.train.max_time) if cfg.train.max_time else None  # as written, e.g. "59m"
    cal = Calibration(str(cfg.train.budget), "cuda" if cuda else "cpu-1thread", per_step, 1 if cuda else threads,
                      steps, cfg.data.batch_size, cost_key(cfg), budget_steps, max_time,
                      wall_per_step, round(time.perf_counter() - start, 1))
    log.info("budget %s: %.3f %s-seconds per step x %d thread%s -> %d steps (%d images)", cal.budget, per_step,
             "GPU" if cuda else "single-thread CPU", cal.threads, "s" if cal.threads > 1 else "", budget_steps,
             budget_steps * cal.images_per_step)
    if steps < budget_steps:
        log.info("max_time %s: %.3f wall-seconds per step at %d thread%s -> %d steps fit (%d images)",
                 cfg.train.max_time, wall_per_step, threads, "s" if threads > 1 else "", steps,
                 steps * cal.images_per_step)
    return cal
