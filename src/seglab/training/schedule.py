"""Learning-rate schedule driven by the run's progress p in [0, 1].

One function serves runs of known length (p = step / total steps: epochs, steps, or a compute budget
resolved into steps) and wall-clock budgets (p = elapsed / budget), so a cosine schedule spans the whole
run exactly once either way.
"""

from __future__ import annotations

import math
import time

import lightning as L

# How a train.budget is spent: compute (converted into steps before training by budget.py, equal work
# whatever the load) or wall (ScheduleCallback stops when the wall-clock time is spent).
BUDGET_CLOCKS = ("compute", "wall")

# How often the learning rate moves: every optimizer step (a smooth curve), or once per epoch, held for the
# epoch, as torch's CosineAnnealingLR(T_max=epochs) stepped after each epoch does (the notebooks' way).
SCHEDULER_INTERVALS = ("step", "epoch")

# Multiplier of the base learning rate at q in [0, 1], the progress after warm-up.
SCHEDULES = {
    "none": lambda q: 1.0,
    "cosine": lambda q: 0.5 * (1 + math.cos(math.pi * q)),
    "poly": lambda q: (1 - q) ** 0.9,
}


def lr_factor(schedule: str, progress: float, warmup: float = 0.0) -> float:
    """Multiplier of the base learning rate at ``progress`` (0 = start, 1 = end)."""
    p = min(max(progress, 0.0), 1.0)
    if warmup > 0 and p < warmup:
        return (p + 1e-3) / (warmup + 1e-3)  # linear warm-up, never exactly 0
    return SCHEDULES[schedule]((p - warmup) / (1 - warmup) if warmup > 0 else p)


class ScheduleCallback(L.Callback):
    """Sets the learning rate before every optimiser step (``interval="epoch"``: the value at the start of the
    epoch, held through it) and ends training when the run is complete:
    after ``steps`` optimizer steps, or when a wall-clock budget is spent. Stopping through
    ``trainer.should_stop`` (not only max_steps) makes Lightning validate once more at the very end, so the
    final weights are always scored. Elapsed time is saved in checkpoints so a resumed run keeps its budget."""

    def __init__(self, schedule: str = "none", warmup: float = 0.0, budget_s: float | None = None,
                 steps: int | None = None, interval: str = "step"):
        self.schedule, self.warmup, self.budget_s, self.steps = schedule, warmup, budget_s, steps
        self.configured = steps  # the config's steps: a resume with other steps (a longer run) plans anew
        self.per_epoch = interval == "epoch"  # config.checks refuses it with a wall-clock budget
        self.elapsed_before = 0.0  # seconds spent in earlier (interrupted) sessions of this run
        self._t0 = None
        self.base_lrs: list[float] | None = None
        # (step, progress) where the current plan of ``steps`` began: (0, 0) until ``replan`` moves it, so
        # progress is step / steps for a run never re-planned, and stays continuous across a re-plan.
        self.anchor = (0, 0.0)

    def elapsed(self) -> float:
        return self.elapsed_before + (time.monotonic() - self._t0 if self._t0 else 0.0)

    def progress_at(self, step: int, total: int) -> float:
        """Progress after ``step`` of ``total`` steps: linear from the anchor to 1 at ``total``."""
        s0, p0 = self.anchor
        if total <= s0:
            return 1.0
        return p0 + (step - s0) * (1.0 - p0) / (total - s0)

    def progress(self, trainer: L.Trainer) -> float:
        if self.budget_s:
            return self.elapsed() / self.budget_s
        total = self.steps or max(trainer.estimated_stepping_batches, 1)
        if self.per_epoch:  # the progress at the start of this epoch: epoch e of E trains at factor(e / E)
            return self.progress_at(trainer.current_epoch * trainer.num_training_batches, total)
        return self.progress_at(trainer.global_step, total)

    def replan(self, trainer: L.Trainer, steps: int) -> None:
        """End the run after ``steps`` optimizer steps instead: the progress reached so far is kept and the rest
        of the schedule is stretched or squeezed over the new remainder, so the learning rate moves on without a
        jump and still ends where the schedule ends (``pace.PaceReplanner`` calls it when a wall-clock cap's
        pace drifts)."""
        step = trainer.global_step
        self.anchor = (step, self.progress(trainer) if not self.per_epoch else self.progress_at(step, self.steps))
        self.steps = max(int(steps), step + 1)
        set_max_steps(trainer, self.steps)

    def on_train_start(self, trainer, pl_module):
        self._t0 = time.monotonic()
        if self.steps and trainer.fit_loop.epoch_loop.max_steps != self.steps:  # resumed after a re-plan
            set_max_steps(trainer, self.steps)
        self.base_lrs = [g.get("initial_lr", g["lr"]) for g in trainer.optimizers[0].param_groups]
        for g, lr in zip(trainer.optimizers[0].param_groups, self.base_lrs):
            g["initial_lr"] = lr

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        f = lr_factor(self.schedule, self.progress(trainer), self.warmup)
        for g, lr in zip(trainer.optimizers[0].param_groups, self.base_lrs):
            g["lr"] = lr * f

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._stop_if_spent(trainer)

    def on_train_epoch_end(self, trainer, pl_module):
        self._stop_if_spent(trainer)  # validation may have used up the rest: start no new epoch

    def _stop_if_spent(self, trainer):
        if (self.budget_s and self.elapsed() >= self.budget_s) or (self.steps and trainer.global_step >= self.steps):
            trainer.should_stop = True

    def state_dict(self):
        return {"elapsed": self.elapsed(), "steps": self.steps, "anchor": list(self.anchor),
                "configured": self.configured}

    def load_state_dict(self, state):
        """A re-planned run resumes with its re-planned steps and anchor, as long as it resumes with the steps
        it was configured with; given other steps (resumed to train longer), those stand, as before re-planning
        existed. Checkpoints of older seglab runs hold neither: the config's steps stand."""
        self.elapsed_before = float(state.get("elapsed", 0.0))
        if state.get("steps") and state.get("configured") == self.configured:
            self.steps = int(state["steps"])
            self.anchor = (int(state["anchor"][0]), float(state["anchor"][1]))


def set_max_steps(trainer: L.Trainer, steps: int) -> None:
    """Move the step at which Lightning ends training (lightning==2.6.6: the epoch loop holds it)."""
    trainer.fit_loop.epoch_loop.max_steps = int(steps)
