"""The console's training bar: one bar for the whole run, numbers first, fits an 80-column terminal.

    epoch 3/10  loss 0.412  val mIoU 47.9% |██████▏      | 102/419 steps [00:40<02:04]

Lightning's default bar restarts every epoch, shows ``Epoch 0/-2`` when the run is bounded by steps or
time, adds the logger's ``v_num``, and puts metrics last, where a narrow terminal cuts them mid-number.
Here the numbers come first (tqdm shortens the bar, never them) and mIoU is a percentage, as everywhere
else in seglab.
"""

from __future__ import annotations

import math

from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import _update_n


def describe(epoch: int, epochs: int | None, loss: float | None, val_miou: float | None) -> str:
    """'epoch 3/10  loss 0.412  val mIoU 47.9%' (epoch 1-based; parts without a value are left out)."""
    parts = [f"epoch {epoch}/{epochs}" if epochs else f"epoch {epoch}"]
    if loss is not None and math.isfinite(loss):
        parts.append(f"loss {loss:.3f}")
    if val_miou is not None:
        parts.append(f"val mIoU {100 * val_miou:.1f}%")
    return "  ".join(parts)


class RunProgressBar(TQDMProgressBar):
    TRAIN_FORMAT = "{desc} |{bar}| {n_fmt}/{total_fmt} steps [{elapsed}<{remaining}]"  # validation keeps the default

    def _total_steps(self, trainer) -> int | None:
        total = trainer.estimated_stepping_batches  # inf for wall-clock budgets
        return int(total) if math.isfinite(total) else None

    def _epochs(self, trainer) -> int | None:
        total, per_epoch = self._total_steps(trainer), trainer.num_training_batches
        if total is None or not per_epoch or not math.isfinite(per_epoch):
            return None
        return math.ceil(total / per_epoch)

    def get_metrics(self, trainer, pl_module) -> dict:
        return {}  # everything is in the description: no postfix, no v_num

    def _describe(self, trainer) -> str:
        m = trainer.progress_bar_metrics
        loss = m.get("train/loss_step", m.get("train/loss_epoch"))
        miou = m.get("val/miou")
        return describe(trainer.current_epoch + 1, self._epochs(trainer), None if loss is None else float(loss),
                        None if miou is None else float(miou))

    def on_train_start(self, trainer, pl_module):
        self.train_progress_bar = self.init_train_tqdm()
        self.train_progress_bar.bar_format = self.TRAIN_FORMAT
        self.train_progress_bar.total = self._total_steps(trainer)
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
