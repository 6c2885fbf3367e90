"""The LightningModule: one shared step for train and val, val metrics from one confusion matrix (the test split
is scored by seglab.scoring, outside the training loop)."""

from __future__ import annotations

import math

import lightning as L
import torch

from seglab.config.schema import RunConfig
from seglab.data.classes import ClassSet
from seglab.errors import SeglabError
from seglab.metrics import ConfusionMatrix, boundary_counts, mean_boundary_iou
from seglab.models import build_model
from seglab.runs import TrainedModel
from seglab.scoring import to_label_size
from seglab.training.losses import build_loss
from seglab.training.optimizers import build_optimizer


class SegModule(L.LightningModule):
    """Organises (does not abstract) training: the model, the loss, the optimiser and the metrics.

    ``cfg`` is the run's resolved config (its plain-dict copy is saved in every checkpoint as
    ``hparams.config``); ``classes`` names the classes, their colours and mask values; ``class_weights`` are
    resolved before construction (e.g. median-frequency from the train labels). ``model``: the network when
    it comes trained (``from_trained``); None builds it from ``cfg.model``, fetching encoder weights.
    """

    def __init__(self, cfg: RunConfig, classes: ClassSet, class_weights: list[float] | None = None,
                 model: torch.nn.Module | None = None):
        super().__init__()
        self.save_hyperparameters({**classes.to_fields(), "config": cfg.to_dict(),
                                   "class_weights": class_weights})
        self.cfg, self.classes = cfg, classes
        names = list(classes.names)
        self.model = model if model is not None else build_model(cfg.model.spec, len(names), cfg.model.weights)
        t = cfg.train
        self.criterion = build_loss(t.loss, class_weights, t.ce_weight, t.dice_weight, t.lovasz_weight)
        if cfg.train.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self._compiled: list = []  # the compiled network, when training compiles (a list: not a submodule)
        self.cm = {"val": ConfusionMatrix(len(names), names)}
        self.boundary = {"val": torch.zeros(len(names), 2, dtype=torch.int64)}  # Boundary IoU's band counts

    @classmethod
    def from_trained(cls, trained: TrainedModel) -> SegModule:
        """A trained run's module (for scoring it), weights from its checkpoint, in eval mode."""
        return cls(trained.config, trained.classes, trained.class_weights, model=trained.build()).eval()

    def forward(self, images: torch.Tensor, compiled: bool = False) -> torch.Tensor:
        if self.cfg.train.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return (self._compiled[0] if compiled and self._compiled else self.model)(images)

    def compile_training(self) -> None:
        """Compile the network for the training steps (once per module, however many fits run it): one input
        shape, as training batches are full crops, so it compiles once; validation and scoring keep the eager
        network, whose shapes vary and would each compile anew. The compiled kernels read the thread count
        when they run, so ``train.threads: auto`` can switch without recompiling. The state dict is the
        network's own: the compiled wrapper is kept outside the module tree."""
        if not self._compiled:
            from torch._inductor import config as inductor

            inductor.cpp.dynamic_threads = True
            self._compiled.append(torch.compile(self.model, dynamic=False))

    def _shared_step(self, batch, stage: str) -> torch.Tensor | None:
        """The batch's loss, or None for a batch whose labels are all void (an unlabelled image, a random
        crop inside a void region): it has nothing to learn from, and a mean over no pixel would be NaN.
        When training_step returns None, Lightning runs no backward pass, so the step changes no weight."""
        images, masks = batch
        # validation at the training scale, scored on native labels
        logits = to_label_size(self(images, compiled=stage == "train"), masks.shape[-2:])
        loss = None
        if (masks < logits.shape[1]).any():
            loss = self.criterion(logits.float(), masks)
            if stage == "train" and not torch.isfinite(loss):
                raise SeglabError(f"the training loss became {loss.item()} at epoch {self.current_epoch + 1}, "
                                  f"step {self.global_step + 1}; the run stops here and keeps its last good "
                                  f"checkpoint (try a lower train.lr)")
            self.log(f"{stage}/loss", loss, on_step=stage == "train", on_epoch=True, prog_bar=stage == "train",
                     batch_size=images.shape[0], sync_dist=stage != "train")
        if stage in self.cm:
            pred = logits.argmax(1).cpu()
            self.cm[stage].update(masks.cpu(), pred)
            self.boundary[stage] += torch.from_numpy(boundary_counts(
                pred.numpy(), masks.cpu().numpy(), logits.shape[1], fraction=self.cfg.eval.boundary_fraction).sum(0))
        return loss

    def training_step(self, batch, batch_idx):
        return self._shared_step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._shared_step(batch, "val")

    def on_validation_epoch_start(self):
        self.cm["val"].reset()
        self.boundary["val"].zero_()

    def on_validation_epoch_end(self):
        if self.trainer.sanity_checking:
            return
        metrics = self.reduced_metrics("val")
        for key in ("miou", "pixel_accuracy", "mean_dice", "mean_class_accuracy", "boundary_iou"):
            self.log(f"val/{key}", metrics[key] if metrics[key] is not None else 0.0, prog_bar=key == "miou")

    def reduced_metrics(self, stage: str) -> dict:
        """Sum the matrix and the boundary counts over processes (a no-op on one device), then compute."""
        cm, counts = self.cm[stage], self.boundary[stage]
        if self.trainer.world_size > 1:
            cm.mat = self.trainer.strategy.reduce(cm.mat.to(self.device), reduce_op="sum").cpu().long()
            counts = self.trainer.strategy.reduce(counts.to(self.device), reduce_op="sum").cpu().long()
        value = float(mean_boundary_iou(counts.numpy()))
        return {**cm.compute(), "boundary_iou": value if math.isfinite(value) else None}

    def configure_optimizers(self):
        return build_optimizer(self.parameters(), self.cfg.train)
