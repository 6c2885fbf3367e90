"""Keep a wall-clock-capped run's steps fitting its hour as the machine's pace drifts.

``train.max_time`` caps the steps a compute budget buys at what fits into the cap, from a few steps timed
before training (budget.py). That timing is a prediction: on one host it was 10% optimistic, on another 10%
pessimistic, and a neighbour that takes a core for twenty minutes makes any start-up figure wrong. A wrong
prediction costs either way: too many steps, and the hard stop cuts the learning-rate schedule before it
has decayed (the weights scored are mid-schedule); too few, and minutes of the hour go unused.

So the pace is measured while training: every few dozen steps, the wall time per step over the last few
checks (validations excluded; they are counted separately) gives the steps that still fit before the cap, and
when those differ from the plan by more than ``tolerance`` the schedule is re-planned to end there
(``ScheduleCallback.replan``: the progress so far is kept, so the learning rate never jumps, and the
schedule still ends at its end). The budget's own steps stay the ceiling: a fast machine never trains
more than the budget bought. Each re-plan is recorded in run.json (``replans``).

Only a run that measured its own step cost re-plans: runs of a study or a tune that share one calibration
keep the same steps, since equal work is what makes their comparison fair.
"""

from __future__ import annotations

import math
import statistics
import time

import lightning as L

from seglab.training.budget import WALL_RESERVE
from seglab.training.schedule import ScheduleCallback

CHECKS = 50  # checks over a planned run: about one a minute in an hour
MIN_EVERY = 10  # steps between checks at least: a pace from fewer steps is mostly noise
SMOOTH = 3  # the pace is the mean over the last this many checks' steps: a minute's blip moves it a third
TOLERANCE = 0.02  # re-plan when the steps that fit differ from the plan by more than this share (at the end of
                  # a cosine, 2% of the schedule is at under 0.1% of the learning rate; of an hour, 1.2 minutes)
MARGIN = 0.01  # share of max_time kept back, once validations are timed, for checkpoints and the last step


class PaceReplanner(L.Callback):
    """Re-plans ``schedule``'s steps to fit ``max_time_s`` of wall time, of which ``spent_s`` went before
    training (the step-cost measurement), never above ``ceiling`` steps; validations come every
    ``val_every`` steps (None: once per epoch of ``epoch_steps``)."""

    def __init__(self, schedule: ScheduleCallback, max_time_s: float, spent_s: float, ceiling: int,
                 val_every: int | None, tolerance: float = TOLERANCE, every: int | None = None):
        self.schedule, self.max_time_s, self.spent_s, self.ceiling = schedule, max_time_s, spent_s, ceiling
        self.val_every, self.tolerance = val_every, tolerance
        self.every = every or max(MIN_EVERY, (schedule.steps or 0) // CHECKS)
        self.replans: list[dict] = []
        self.val_seconds, self.validations = 0.0, 0
        self._window: list[float] = []
        self._recent: list[list[float]] = []  # the last SMOOTH windows' step times
        self._last: float | None = None
        self._val_t0 = 0.0

    def on_train_start(self, trainer, pl_module):
        self._last, self._window, self._recent = None, [], []

    def on_validation_start(self, trainer, pl_module):
        if trainer.state.fn == "fit":
            self._val_t0 = time.monotonic()

    def on_validation_end(self, trainer, pl_module):
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            self.val_seconds += time.monotonic() - self._val_t0
            self.validations += 1
            self._last = None  # the interval that holds the validation (and its checkpoint) is not a step's

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        now = time.monotonic()
        if self._last is not None:
            self._window.append(now - self._last)
        self._last = now
        if len(self._window) >= self.every and not trainer.should_stop:
            self._recent = [*self._recent[-(SMOOTH - 1):], self._window]
            self.check(trainer, statistics.fmean(t for w in self._recent for t in w))
            self._window = []

    def held_back_seconds(self, step: int, steps: int) -> float:
        """Wall time not for training steps: until a validation has been timed, the share of the cap the
        start-up plan kept (so a steady pace confirms that plan); then the validations still to come, at the
        mean of those timed so far, and a margin for checkpoints."""
        if not self.validations:
            return WALL_RESERVE * self.max_time_s
        left = (steps - step) // self.val_every + 1 if self.val_every else 1  # the last step validates too
        return left * self.val_seconds / self.validations + MARGIN * self.max_time_s

    def steps_that_fit(self, step: int, seconds_per_step: float) -> int:
        """The total steps that end training within the cap at this pace, never above the budget's."""
        guess = self.schedule.steps or step + 1
        for _ in range(3):  # the validations still to come depend on the steps: settle both
            left = self.max_time_s - self.spent_s - self.schedule.elapsed() - self.held_back_seconds(step, guess)
            guess = step + max(1, math.floor(left / seconds_per_step))
        return min(self.ceiling, guess)

    def check(self, trainer: L.Trainer, seconds_per_step: float) -> None:
        step, planned = trainer.global_step, self.schedule.steps
        fits = max(step + 1, self.steps_that_fit(step, seconds_per_step))
        if abs(fits - planned) <= self.tolerance * planned:
            return
        self.replans.append({"step": step, "minute": round((self.spent_s + self.schedule.elapsed()) / 60, 2),
                             "seconds_per_step": round(seconds_per_step, 3), "steps_before": planned,
                             "steps_after": fits})
        self.schedule.replan(trainer, fits)

    def run_record(self) -> dict:
        """What run.json keeps of this: every re-plan, and the steps now planned."""
        return {"replans": list(self.replans), "steps_planned": self.schedule.steps}

    def state_dict(self):
        return {"replans": self.replans, "val_seconds": self.val_seconds, "validations": self.validations}

    def load_state_dict(self, state):
        self.replans = list(state.get("replans", []))
        self.val_seconds = float(state.get("val_seconds", 0.0))
        self.validations = int(state.get("validations", 0))
