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
    """Alternates the candidate thread counts over a few steps, keeps the fastest, re-checks every ``recheck``.

    Args:
        candidates: thread counts to try (default: 1 and every usable CPU).
        trials: timed steps per candidate in each check (medians are compared).
        recheck: steps between checks; load from other programs comes and goes.
    """

    def __init__(self, candidates: list[int] | None = None, trials: int = 2, recheck: int = 200):
        self.candidates = candidates or sorted({1, usable_cpus()})
        self.trials, self.recheck = trials, recheck
        self.chosen = torch.get_num_threads()
        self._step = 0  # steps since the current check began
        self._times: dict[int, list[float]] = {}
        self._t0 = 0.0

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
                self.chosen = min(self.candidates, key=lambda c: statistics.median(self._times[c]))
        self._step = 0 if self._step + 1 >= self.recheck else self._step + 1

    def on_train_end(self, trainer, pl_module):
        torch.set_num_threads(self.chosen)
