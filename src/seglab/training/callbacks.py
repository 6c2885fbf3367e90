"""Callbacks that write the run folder's human-readable records and count the work a run did."""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from seglab.runs import read_metrics_csv

# One row per validation (several per epoch in short runs, so every curve has enough points to read).
METRICS_COLUMNS = ["step", "epoch", "images", "train_loss", "val_loss", "val_miou", "val_pixel_accuracy",
                   "val_mean_dice", "val_mean_class_accuracy", "val_boundary_iou", "lr", "seconds"]


def fractional_epoch(trainer) -> float | None:
    """Optimizer steps / steps per epoch, e.g. 2.5 halfway through the third epoch."""
    per_epoch = trainer.num_training_batches
    if not per_epoch or not math.isfinite(per_epoch):
        return None
    return round(trainer.global_step / per_epoch, 4)


def images_seen(trainer) -> int | None:
    """Optimizer steps x batch size x processes (training batches are full: the loader drops a last partial
    batch; data.batch_size is per process)."""
    dm = trainer.datamodule
    return trainer.global_step * dm.cfg.batch_size * trainer.world_size if dm is not None else None


def decisions(trainer) -> dict:
    """What the callbacks that decide during training (thread counts, re-plans) want run.json to keep."""
    out = {}
    for cb in getattr(trainer, "callbacks", []):
        if hasattr(cb, "run_record"):
            out.update(cb.run_record())
    return out


class WorkMeter(L.Callback):
    """Counts what a run did: optimizer steps, images, epochs, wall and CPU seconds, time spent validating.
    Sessions of a resumed run add up: the totals so far travel in the checkpoint.

    ``record(totals)`` is called every ``every_s`` seconds of training (run.json), and ``spent`` is what an
    earlier session recorded there: a session killed after its last checkpoint still counts the time it
    spent, since a resumed run starts from at least that much instead of from the checkpoint's totals."""

    def __init__(self, record=None, every_s: float = 30.0, spent: dict | None = None):
        self.before = {"wall_seconds": 0.0, "cpu_seconds": 0.0, "val_seconds": 0.0}
        spent = spent or {}
        self._spent = {"wall_seconds": float(spent.get("train_seconds") or 0.0),
                       "cpu_seconds": float(spent.get("cpu_seconds") or 0.0),
                       "val_seconds": float(spent.get("val_seconds") or 0.0)}
        self._record, self._every, self._recorded = record, every_s, 0.0
        self._wall0 = self._cpu0 = self._val0 = 0.0
        self._val_session = 0.0
        self._trainer = None

    def on_train_start(self, trainer, pl_module):
        self._trainer = trainer
        self._wall0, self._cpu0, self._val_session = time.monotonic(), time.process_time(), 0.0
        self._recorded = self._wall0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        now = time.monotonic()
        if self._record is not None and trainer.is_global_zero and now - self._recorded >= self._every:
            self._recorded = now
            self._record(self.totals(trainer))

    def on_validation_start(self, trainer, pl_module):
        self._val0 = time.monotonic()

    def on_validation_end(self, trainer, pl_module):
        self._val_session += time.monotonic() - self._val0

    def totals(self, trainer) -> dict:
        """Work so far, for run.json (``epochs`` is fractional)."""
        wall = self.before["wall_seconds"] + (time.monotonic() - self._wall0 if self._wall0 else 0.0)
        cpu = self.before["cpu_seconds"] + (time.process_time() - self._cpu0 if self._wall0 else 0.0)
        val = self.before["val_seconds"] + self._val_session
        images = images_seen(trainer)
        train_wall = max(wall - val, 1e-9)
        return {"steps": trainer.global_step, "images_seen": images, "epochs": fractional_epoch(trainer),
                "train_seconds": round(wall, 1), "cpu_seconds": round(cpu, 1), "val_seconds": round(val, 1),
                "img_per_s": round(images / train_wall, 2) if images else None, **decisions(trainer)}

    def state_dict(self):
        if self._trainer is None:
            return dict(self.before)
        t = self.totals(self._trainer)
        return {"wall_seconds": t["train_seconds"], "cpu_seconds": t["cpu_seconds"], "val_seconds": t["val_seconds"]}

    def load_state_dict(self, state):
        self.before = {k: max(float(state.get(k, 0.0)), self._spent[k]) for k in self.before}


class ExactResume(L.Callback):
    """What Lightning does not carry across a resume by itself: the global random state (dropout draws from
    it) and the place inside the epoch's batches (checkpoints come at validations, several per epoch).
    Both travel in every checkpoint, so a killed run resumed from its last checkpoint trains the same
    batches with the same augmentations and dropout masks as a run that was never interrupted."""

    def __init__(self):
        self._restored: dict | None = None

    def state_dict(self):
        state = {"torch_rng": torch.get_rng_state()}
        if torch.cuda.is_available():
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state):
        self._restored = state

    def on_train_start(self, trainer, pl_module):
        if self._restored:  # restored last, right before training goes on: nothing draws in between
            torch.set_rng_state(self._restored["torch_rng"])
            if "cuda_rng" in self._restored and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(self._restored["cuda_rng"])
        # Batches of this epoch already trained, from the optimizer steps (one per batch): Lightning's own batch
        # counter lags by one when the checkpoint was saved at a batch's end (time-based checkpoints).
        done = trainer.global_step - trainer.current_epoch * trainer.num_training_batches
        sampler = getattr(trainer.datamodule, "train_sampler", None)
        if sampler is not None and 0 < done < trainer.num_training_batches:
            sampler.skip = done * trainer.datamodule.cfg.batch_size


class MetricsCSV(L.Callback):
    """Appends one row per validation to ``metrics.csv``: where the run is (step, fractional epoch, images),
    the mean training loss since the previous row, the validation metrics, the learning rate and the
    seconds since the previous row."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._losses: list[float] = []
        self._t0 = 0.0

    def on_train_start(self, trainer, pl_module):
        """On resume, drop rows of steps the checkpoint does not hold (an interrupt can land between this
        callback's row and Lightning's checkpoint); they will be trained again."""
        self._t0 = time.monotonic()
        if trainer.global_rank != 0 or not self.path.exists():
            return
        rows = read_metrics_csv(self.path)
        keep = [r for r in rows if r["step"] is not None and r["step"] <= trainer.global_step]
        with self.path.open(newline="") as f:
            header = next(csv.reader(f), [])
        if len(keep) != len(rows) or header != METRICS_COLUMNS:  # a run begun by an older seglab: its columns
            with self.path.open("w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=METRICS_COLUMNS)
                w.writeheader()
                w.writerows({**r, "step": int(r["step"]), "images": int(r["images"] or 0)} for r in keep)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs  # none for an all-void batch
        if loss is not None:
            self._losses.append(float(loss))

    def state_dict(self):
        """The losses since the last row travel in checkpoints taken between rows (time-based ones), so a
        resumed run writes the same next row as one never interrupted."""
        return {"losses": list(self._losses)}

    def load_state_dict(self, state):
        self._losses = [float(v) for v in state.get("losses", [])]

    def on_validation_end(self, trainer, pl_module):
        if trainer.global_rank != 0 or trainer.sanity_checking or trainer.state.fn != "fit":
            return
        m = trainer.callback_metrics

        def get(key):
            return round(float(m[key]), 6) if key in m else None

        finite = [v for v in self._losses if math.isfinite(v)]
        row = {
            "step": trainer.global_step,
            "epoch": fractional_epoch(trainer),
            "images": images_seen(trainer),
            "train_loss": round(sum(finite) / len(finite), 6) if finite else None,
            "val_loss": get("val/loss"),
            "val_miou": get("val/miou"),
            "val_pixel_accuracy": get("val/pixel_accuracy"),
            "val_mean_dice": get("val/mean_dice"),
            "val_mean_class_accuracy": get("val/mean_class_accuracy"),
            "val_boundary_iou": get("val/boundary_iou"),
            "lr": trainer.optimizers[0].param_groups[0]["lr"],
            "seconds": round(time.monotonic() - self._t0, 2),
        }
        self._losses, self._t0 = [], time.monotonic()
        new = not self.path.exists()
        with self.path.open("a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=METRICS_COLUMNS)
            if new:
                w.writeheader()
            w.writerow(row)




class CompileTraining(L.Callback):
    """Runs the training steps' forward pass through ``torch.compile`` (``train.compile``), and keeps in
    run.json how long the first step took: that is when Inductor compiles the forward and backward graphs."""

    def __init__(self):
        self.first_step_s, self._start = None, None

    def on_fit_start(self, trainer, pl_module):
        pl_module.compile_training()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.first_step_s is None and self._start is None:
            self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.first_step_s is None and self._start is not None:
            self.first_step_s = round(time.perf_counter() - self._start, 1)

    def run_record(self) -> dict:
        return {"compile": {"first_step_seconds": self.first_step_s}}


class TimedCheckpoint(ModelCheckpoint):
    """last.ckpt every ``train_time_interval`` of training, except after a batch that a validation (or the end
    of training) follows: Lightning resumes after the checkpoint's batch, so a run killed during that validation
    would resume past it and lose its record. The validation's own checkpoint comes a moment later instead."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        fit = trainer.fit_loop  # lightning==2.6.6 internals; tests/test_resume.py kills runs around them
        if trainer.should_stop or fit.epoch_loop._should_check_val_fx(fit._data_fetcher):
            return
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)


class StopAt(L.Callback):
    """Ends this invocation of training after optimizer step ``step`` while the schedule stays planned for the
    whole run (``train.steps``): a tuning rung is a prefix of the full run, and resuming it (with a later
    ``step``, or none) continues exactly where it stopped. Lightning validates when a callback stops training
    (``should_stop``), and that validation writes the metrics.csv row and the checkpoints the rung is read from."""

    def __init__(self, step: int):
        self.step = int(step)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step >= self.step:
            trainer.should_stop = True
