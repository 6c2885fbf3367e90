"""Losses by name. Every loss ignores void pixels (IGNORE_INDEX)."""

from __future__ import annotations

import numpy as np
import segmentation_models_pytorch as smp
import torch
from torch import nn

from seglab.constants import IGNORE_INDEX
from seglab.errors import SeglabError


class DiceCE(nn.Module):
    """Weighted sum of cross-entropy and multiclass Dice: CE gives stable per-pixel gradients,
    Dice counters class imbalance by scoring each class's overlap as a whole."""

    def __init__(self, ce: nn.Module, ce_weight: float, dice_weight: float):
        super().__init__()
        self.ce, self.dice = ce, smp.losses.DiceLoss("multiclass", ignore_index=IGNORE_INDEX)
        self.ce_weight, self.dice_weight = ce_weight, dice_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.ce_weight * self.ce(logits, target) + self.dice_weight * self.dice(logits, target)


class PlusLovasz(nn.Module):
    """A loss plus a weighted Lovasz-softmax term (Berman et al. 2018), a convex surrogate of each class's
    IoU: it pulls on the thin classes (pole, sign, fence) that per-pixel losses let the large ones drown."""

    def __init__(self, base: nn.Module, weight: float):
        super().__init__()
        self.base, self.weight = base, weight
        self.lovasz = smp.losses.LovaszLoss("multiclass", ignore_index=IGNORE_INDEX)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.base(logits, target) + self.weight * self.lovasz(logits, target)


def _ce(weights):
    return nn.CrossEntropyLoss(weight=weights, ignore_index=IGNORE_INDEX)


LOSSES = {
    "ce": lambda w, ce_w, dice_w: _ce(w),
    "dice": lambda w, ce_w, dice_w: smp.losses.DiceLoss("multiclass", ignore_index=IGNORE_INDEX),
    "dice_ce": lambda w, ce_w, dice_w: DiceCE(_ce(w), ce_w, dice_w),
    "focal": lambda w, ce_w, dice_w: smp.losses.FocalLoss("multiclass", ignore_index=IGNORE_INDEX),
}
WEIGHTED = ("ce", "dice_ce")  # losses that take per-class weights (through their CE term)


def build_loss(name: str, class_weights: list[float] | None = None, ce_weight: float = 1.0,
               dice_weight: float = 1.0, lovasz_weight: float = 0.0) -> nn.Module:
    if name not in LOSSES:
        raise SeglabError(f"config key 'train.loss': unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
    if class_weights is not None and name not in WEIGHTED:
        raise SeglabError(f"config key 'train.class_weights' works with losses {', '.join(WEIGHTED)}, not {name!r}")
    w = torch.tensor(class_weights, dtype=torch.float32) if class_weights is not None else None
    loss = LOSSES[name](w, ce_weight, dice_weight)
    return PlusLovasz(loss, lovasz_weight) if lovasz_weight > 0 else loss


def median_frequency_weights(masks, num_classes: int) -> list[float]:
    """SegNet's median-frequency balancing (Eigen & Fergus): freq(c) = pixels of class c divided by the
    pixels of the images in which c appears; weight(c) = median(freq) / freq(c).

    ``masks`` yields label arrays (0..C-1, IGNORE_INDEX for void). Classes never seen get weight 0.
    """
    count = np.zeros(num_classes, np.float64)
    present_total = np.zeros(num_classes, np.float64)
    for m in masks:
        hist = np.bincount(m[m < num_classes].ravel(), minlength=num_classes)[:num_classes]
        count += hist
        present_total += (hist > 0) * hist.sum()
    seen = count > 0
    if not seen.any():
        raise SeglabError("train.class_weights=median-frequency: the training labels hold no labelled pixel")
    freq = np.where(seen, count / np.maximum(present_total, 1), 0)
    median = np.median(freq[seen])
    return [float(median / f) if f > 0 else 0.0 for f in freq]
