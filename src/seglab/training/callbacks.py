"""Callbacks that write the run folder's human-readable records."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import lightning as L

EPOCH_COLUMNS = ["epoch", "train_loss", "val_loss", "val_miou", "val_pixel_accuracy", "val_mean_dice",
                 "val_mean_class_accuracy", "lr", "seconds"]


class EpochCSV(L.Callback):
    """Appends one row per finished epoch to ``metrics.csv`` (after validation, so the row is complete)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._t0 = 0.0

    def on_train_start(self, trainer, pl_module):
        """On resume, drop rows of epochs the checkpoint does not hold (an interrupt can land between
        this callback's row and Lightning's checkpoint of the same epoch); they will be trained again."""
        if trainer.global_rank != 0 or not self.path.exists():
            return
        rows = read_epoch_csv(self.path)
        keep = [r for r in rows if r["epoch"] <= trainer.current_epoch]
        if len(keep) != len(rows):
            with self.path.open("w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=EPOCH_COLUMNS)
                w.writeheader()
                w.writerows({**r, "epoch": int(r["epoch"])} for r in keep)

    def on_train_epoch_start(self, trainer, pl_module):
        self._t0 = time.monotonic()

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.global_rank != 0:
            return
        m = trainer.callback_metrics

        def get(key):
            return round(float(m[key]), 6) if key in m else None

        row = {
            "epoch": trainer.current_epoch + 1,
            "train_loss": get("train/loss_epoch"),
            "val_loss": get("val/loss"),
            "val_miou": get("val/miou"),
            "val_pixel_accuracy": get("val/pixel_accuracy"),
            "val_mean_dice": get("val/mean_dice"),
            "val_mean_class_accuracy": get("val/mean_class_accuracy"),
            "lr": trainer.optimizers[0].param_groups[0]["lr"],
            "seconds": round(time.monotonic() - self._t0, 2),
        }
        new = not self.path.exists()
        with self.path.open("a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=EPOCH_COLUMNS)
            if new:
                w.writeheader()
            w.writerow(row)


def read_epoch_csv(path: Path) -> list[dict]:
    """Rows of ``metrics.csv`` with numbers parsed (empty cells become None)."""
    if not Path(path).exists():
        return []
    with Path(path).open() as f:
        return [{k: (float(v) if v not in ("", None) else None) for k, v in r.items()} for r in csv.DictReader(f)]
