"""Choose torch's intra-op thread count by timing training steps, and re-check as load changes.

On a 2-core machine that also runs other work, two OpenMP threads can be several times slower than one:
every parallel region (each op, often several per op) waits for its slowest thread, and a thread whose
core is taken by another process stalls the op until it is scheduled again. bf16 ops are short, so they
suffer most. On an idle machine two threads win. Which count is faster depends on the load, so it is
measured, not guessed. ``train.threads: auto`` adds it to CPU runs. It is opt-in because thread counts
change floating-point summation order: a run that switches counts does not repeat bit for bit.
"""

from __future__ import annotations

import os
import statistics
import time

import lightning as L
import torch


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class ThreadTuner(L.Callback):
    """Alternates the candidate thread counts over a few steps, keeps the fastest, re-checks every ``recheck``
    steps; after choosing fewer threads than the most, re-checks ``soon_s`` seconds later (then twice as long
    after each further such choice, up to ``recheck`` steps): the load that made fewer threads faster is often
    a blip, and a core left idle for 200 steps costs a quarter of an hour. Every check is recorded
    (``choices``; run.json's ``thread_choices``).

    Args:
        candidates: thread counts to try (default: 1 and every usable CPU).
        trials: timed steps per candidate in each check (medians are compared).
        recheck: steps between checks; load from other programs comes and goes.
        soon_s: seconds until the next check after choosing fewer threads than the most.
    """

    def __init__(self, candidates: list[int] | None = None, trials: int = 2, recheck: int = 200,
                 soon_s: float = 60.0):
        self.candidates = candidates or sorted({1, usable_cpus()})
        self.trials, self.recheck, self.soon_s = trials, recheck, soon_s
        self.chosen = torch.get_num_threads()
        self.choices: list[dict] = []
        self._step = 0  # steps since the current check began
        self._times: dict[int, list[float]] = {}
        self._t0 = 0.0
        self._started = None  # monotonic time training started (this session)
        self._decided_at: float | None = None  # when the last check chose fewer threads than the most
        self._wait_s = soon_s

    @property
    def check_steps(self) -> int:
        """Steps one check takes: an untimed one, then the trials."""
        return 1 + self.trials * len(self.candidates)

    def _trial(self) -> int | None:
        """The candidate this step tries, or None once the check is over (step 0 warms up, untimed)."""
        i = self._step - 1
        if i < 0 or i >= self.check_steps - 1:
            return None
        return self.candidates[i % len(self.candidates)]

    def on_train_start(self, trainer, pl_module):
        self._started = time.monotonic()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self._step == 0:
            self._times = {c: [] for c in self.candidates}
        candidate = self._trial()
        torch.set_num_threads(candidate or self.chosen)
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        candidate = self._trial()
        if candidate is not None:
            self._times[candidate].append(time.perf_counter() - self._t0)
            if self._step == self.trials * len(self.candidates):  # last trial: decide
                self._decide(trainer)
        self._step = 0 if self._next_check_due() else self._step + 1

    def _decide(self, trainer) -> None:
        medians = {c: statistics.median(self._times[c]) for c in self.candidates}
        self.chosen = min(self.candidates, key=medians.get)
        now = time.monotonic()
        if self.chosen < max(self.candidates):  # soon again, and later after each further such choice
            self._wait_s = self.soon_s if self._decided_at is None else min(2 * self._wait_s, 3600.0)
            self._decided_at = now
        else:
            self._decided_at, self._wait_s = None, self.soon_s
        self.choices.append({"step": getattr(trainer, "global_step", None),
                             "minute": round((now - (self._started or now)) / 60, 2),
                             "threads": self.chosen,
                             "seconds_per_step": {str(c): round(m, 3) for c, m in medians.items()}})

    def _next_check_due(self) -> bool:
        if self._step + 1 < self.check_steps:
            return False  # a check is under way
        if self._step + 1 >= self.recheck:
            return True
        return self._decided_at is not None and time.monotonic() - self._decided_at >= self._wait_s

    def run_record(self) -> dict:
        """What run.json keeps of this: every check's choice, at which step and minute of the session."""
        return {"thread_choices": list(self.choices)}

    def state_dict(self):
        return {"choices": self.choices}

    def load_state_dict(self, state):
        self.choices = list(state.get("choices", []))

    def on_train_end(self, trainer, pl_module):
        torch.set_num_threads(self.chosen)
