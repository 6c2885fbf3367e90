"""The console's training progress: a bar on a terminal, plain lines in a log file.

On a terminal one bar covers the whole run, numbers first, and fits 80 columns:

    epoch 3/10  loss 0.412  val mIoU 47.9% |██████▏      | 102/419 steps [00:40<02:04]

Lightning's default bar restarts every epoch, shows ``Epoch 0/-2`` when the run is bounded by steps or
time, adds the logger's ``v_num``, and puts metrics last, where a narrow terminal cuts them mid-number.
Here the numbers come first (tqdm shortens the bar, never them) and mIoU is a percentage, as everywhere
else in seglab.

Anywhere else (a SLURM log, ``nohup``, CI, ``seglab train ... > train.log``) a bar is carriage returns that
nobody can read until the run ends, so training prints plain lines instead: one at the start, then every
``SEGLAB_PROGRESS_SECONDS`` (30) seconds and after every validation, and one at the end:

    start  40 steps planned (1 epoch of 91 steps)
    epoch 1/1  step 16/40  6.3 img/s  loss 1.885  ETA 15s
    epoch 1/1  step 20/40  6.3 img/s  loss 1.486  val mIoU 6.1%  ETA 18s
    ...
    done  epoch 1/1  step 40/40  6.4 img/s  loss 1.619  val mIoU 10.9%  in 36s

In a Jupyter notebook the cell's output redraws the bar as a terminal does, so a notebook gets the bar.

Both go to stdout, where Lightning draws its bars, so stdout alone decides which one a run gets; the lines
are flushed one by one and sit beside the scores ``seglab train`` prints there, while log messages and errors
stay on stderr. Validation and evaluation print no lines of their own.
"""

from __future__ import annotations

import math
import os
import sys
import time

from lightning.pytorch.callbacks import Timer, TQDMProgressBar
from lightning.pytorch.callbacks.progress.progress_bar import ProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import _update_n
from lightning.pytorch.utilities.data import extract_batch_size

from seglab.config import format_seconds
from seglab.errors import SeglabError
from seglab.training.schedule import ScheduleCallback

PROGRESS_SECONDS = "SEGLAB_PROGRESS_SECONDS"  # seconds between plain progress lines (default 30)


def plain_output() -> bool:
    """Plain lines unless stdout, where the bar would be drawn, is a terminal or a Jupyter cell's output."""
    return not (_is_tty(sys.stdout) or in_notebook())


def in_notebook() -> bool:
    """True in a Jupyter kernel (IPython's ZMQ shell): its cell output redraws a bar in place, as a terminal
    does (a widget where ipywidgets is installed, which Lightning's tqdm then uses)."""
    ipython = sys.modules.get("IPython")
    try:
        shell = ipython.get_ipython() if ipython is not None else None
    except Exception:  # noqa: BLE001 - an IPython too odd to ask: not a notebook
        return False
    return shell is not None and hasattr(shell, "kernel")


def progress_callback() -> ProgressBar:
    """The bar on a terminal, plain lines anywhere else: the one place that chooses."""
    return PlainProgress() if plain_output() else RunProgressBar()


def say(line: str) -> None:
    """One plain line on stdout, flushed at once (a SLURM log shows it now, not when a buffer fills)."""
    print(line, file=sys.stdout, flush=True)


def progress_seconds() -> float:
    """Seconds between plain lines: 30 unless SEGLAB_PROGRESS_SECONDS says otherwise (a long job may want
    fewer lines; tests want them at every step)."""
    raw = os.environ.get(PROGRESS_SECONDS, "").strip()
    try:
        seconds = float(raw) if raw else 30.0
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:
        raise SeglabError(f"{PROGRESS_SECONDS}={raw!r}: not a number of seconds; set e.g. 30, or unset it")
    return seconds


def describe(epoch: int, epochs: int | None, loss: float | None, val_miou: float | None) -> str:
    """'epoch 3/10  loss 0.412  val mIoU 47.9%' (epoch 1-based; parts without a value are left out)."""
    return "  ".join([_epoch(epoch, epochs), *_scores(loss, val_miou)])


def progress_line(epoch: int, epochs: int | None, step: int, steps: int | None, img_per_s: float | None,
                  loss: float | None, val_miou: float | None, eta_s: float | None) -> str:
    """'epoch 3/10  step 120/412  12.3 img/s  loss 0.412  val mIoU 47.9%  ETA 3m10s' (parts without a value
    are left out)."""
    parts = [_epoch(epoch, epochs), f"step {step}/{steps}" if steps else f"step {step}"]
    if img_per_s:
        parts.append(f"{img_per_s:.1f} img/s")
    parts += _scores(loss, val_miou)
    if eta_s is not None:
        parts.append(f"ETA {format_seconds(eta_s)}")
    return "  ".join(parts)


def _epoch(epoch: int, epochs: int | None) -> str:
    return f"epoch {epoch}/{epochs}" if epochs else f"epoch {epoch}"


def _scores(loss: float | None, val_miou: float | None) -> list[str]:
    parts = []
    if loss is not None and math.isfinite(loss):
        parts.append(f"loss {loss:.3f}")
    if val_miou is not None:
        parts.append(f"val mIoU {100 * val_miou:.1f}%")
    return parts


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _is_tty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # replaced by an object without isatty, or closed
        return False


def _total_steps(trainer) -> int | None:
    total = trainer.estimated_stepping_batches  # inf for wall-clock budgets
    return int(total) if math.isfinite(total) else None


def _epochs(trainer) -> int | None:
    total, per_epoch = _total_steps(trainer), trainer.num_training_batches
    if total is None or not per_epoch or not math.isfinite(per_epoch):
        return None
    return math.ceil(total / per_epoch)


def _numbers(trainer) -> dict:
    """The epoch (1-based, never past the last) and the latest loss and validation mIoU."""
    m, epochs = trainer.progress_bar_metrics, _epochs(trainer)
    loss, miou = m.get("train/loss_step", m.get("train/loss_epoch")), m.get("val/miou")
    epoch = trainer.current_epoch + 1
    return {"epoch": min(epoch, epochs) if epochs else epoch, "epochs": epochs,
            "loss": None if loss is None else float(loss), "val_miou": None if miou is None else float(miou)}


class RunProgressBar(TQDMProgressBar):
    TRAIN_FORMAT = "{desc} |{bar}| {n_fmt}/{total_fmt} steps [{elapsed}<{remaining}]"  # validation keeps the default

    def get_metrics(self, trainer, pl_module) -> dict:
        return {}  # everything is in the description: no postfix, no v_num

    def _describe(self, trainer) -> str:
        n = _numbers(trainer)
        return describe(trainer.current_epoch + 1, n["epochs"], n["loss"], n["val_miou"])

    def on_train_start(self, trainer, pl_module):
        self.train_progress_bar = self.init_train_tqdm()
        self.train_progress_bar.bar_format = self.TRAIN_FORMAT
        self.train_progress_bar.total = _total_steps(trainer)
        self.train_progress_bar.initial = 0
        _update_n(self.train_progress_bar, trainer.global_step)  # a resumed run starts where it stopped

    def on_train_epoch_start(self, trainer, *_):
        self.train_progress_bar.set_description_str(self._describe(trainer), refresh=False)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        n = trainer.global_step
        if self._should_update(n, self.train_progress_bar.total or 0):
            self.train_progress_bar.set_description_str(self._describe(trainer), refresh=False)
            _update_n(self.train_progress_bar, n)

    def on_train_epoch_end(self, trainer, pl_module):
        if not self.train_progress_bar.disable:
            self.train_progress_bar.set_description_str(self._describe(trainer))

    def on_validation_end(self, trainer, pl_module):
        super().on_validation_end(trainer, pl_module)
        if trainer.state.fn == "fit" and not self.train_progress_bar.disable:
            self.train_progress_bar.set_description_str(self._describe(trainer))


class PlainProgress(ProgressBar):
    """Plain progress lines for logs (see the module docstring). A ProgressBar, so Lightning adds no bar of
    its own; it prints during training only."""

    def __init__(self, every_s: float | None = None):
        super().__init__()
        self.every_s = progress_seconds() if every_s is None else every_s
        self.enabled = True
        self._t0 = self._last = self._val_s = self._val0 = 0.0
        self._step0 = self._images = self._epoch = 0

    def disable(self) -> None:
        self.enabled = False

    def enable(self) -> None:
        self.enabled = True

    def on_train_start(self, trainer, pl_module):
        self._t0 = self._last = time.monotonic()
        self._step0, self._images, self._val_s = trainer.global_step, 0, 0.0
        self._say(self._plan(trainer))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._images += extract_batch_size(batch) * trainer.world_size  # every process's, as run.json counts
        self._epoch = trainer.current_epoch + 1  # at the end, a run stopped by time has counted one more
        if time.monotonic() - self._last >= self.every_s:
            self._say(self._line(trainer))

    def on_validation_start(self, trainer, pl_module):
        self._val0 = time.monotonic()

    def on_validation_end(self, trainer, pl_module):
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            self._val_s += time.monotonic() - self._val0
            self._say(self._line(trainer))

    def on_train_end(self, trainer, pl_module):
        n = _numbers(trainer)
        line = progress_line(self._epoch or n["epoch"], n["epochs"], trainer.global_step, _total_steps(trainer),
                             self._img_per_s(), n["loss"], n["val_miou"], None)
        self._say(f"done  {line}  in {format_seconds(time.monotonic() - self._t0)}")

    def _say(self, line: str) -> None:
        self._last = time.monotonic()
        if self.enabled:
            say(line)

    def _plan(self, trainer) -> str:
        total, per_epoch = _total_steps(trainer), trainer.num_training_batches
        budget = self._time_left(trainer)
        if total is None:
            plan = f"start  training for {format_seconds(budget)}" if budget is not None else "start  training"
        else:
            epochs = f" ({_count(_epochs(trainer), 'epoch')} of {_count(per_epoch, 'step')})" \
                if math.isfinite(per_epoch) else ""
            plan = f"start  {_count(total, 'step')} planned{epochs}"
        return plan + (f", resuming at step {trainer.global_step}" if trainer.global_step else "")

    def _line(self, trainer) -> str:
        n = _numbers(trainer)
        return progress_line(n["epoch"], n["epochs"], trainer.global_step, _total_steps(trainer),
                             self._img_per_s(), n["loss"], n["val_miou"], self._eta(trainer))

    def _img_per_s(self) -> float | None:
        """Training images per second of this session, validation time left out (as run.json counts it)."""
        seconds = time.monotonic() - self._t0 - self._val_s
        return self._images / seconds if self._images and seconds > 0 else None

    def _eta(self, trainer) -> float | None:
        """Seconds left: the remaining steps at this session's pace (validations included), or the time left
        of a wall-clock budget or ``train.max_time``, whichever ends the run first."""
        etas = [] if (left := self._time_left(trainer)) is None else [left]
        total, done = _total_steps(trainer), trainer.global_step - self._step0
        if total is not None and done > 0:
            etas.append((total - trainer.global_step) * (time.monotonic() - self._t0) / done)
        return max(0.0, min(etas)) if etas else None

    @staticmethod
    def _time_left(trainer) -> float | None:
        left = []
        for cb in trainer.callbacks:
            if isinstance(cb, ScheduleCallback) and cb.budget_s:
                left.append(cb.budget_s - cb.elapsed())
            elif isinstance(cb, Timer) and (remaining := cb.time_remaining()) is not None:
                left.append(remaining)
        return min(left) if left else None
