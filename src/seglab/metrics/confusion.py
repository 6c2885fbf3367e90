"""One confusion matrix, accumulated over a whole split, from which every reported number is derived.

Why a matrix and not per-batch scores: averaging IoU or Dice per batch weights small batches like big
ones and scores classes absent from a batch as perfect (a bug of the source notebooks). Summing
intersections and unions over the split is the standard CamVid protocol.
"""

from __future__ import annotations

import numpy as np
import torch


class ConfusionMatrix:
    """``mat[t, p]`` counts pixels of true class ``t`` predicted as ``p``; ignored pixels are dropped."""

    def __init__(self, num_classes: int, class_names: list[str] | None = None):
        self.num_classes = num_classes
        self.class_names = list(class_names) if class_names else [str(i) for i in range(num_classes)]
        self.mat = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def update(self, target: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        """Add a batch: ``target`` and ``pred`` are integer tensors of the same shape (B, H, W), pred = argmax.
        Returns the batch's per-image matrices (B, n, n); they sum exactly to what was added."""
        mats = per_image_confusion(target, pred, self.num_classes)
        self.mat += mats.sum(0).to(self.mat.device)
        return mats

    def reset(self) -> None:
        self.mat.zero_()

    def merge(self, other: torch.Tensor) -> None:
        """Add another matrix (e.g. gathered from other processes)."""
        self.mat += other.to(self.mat)

    def compute(self) -> dict:
        """All metrics as plain Python values. A class absent from both labels and predictions has no
        defined IoU or Dice: it is reported as ``None`` and left out of the means."""
        m = self.mat.double()
        tp = m.diag()
        gt = m.sum(1)  # pixels of each true class
        pr = m.sum(0)  # pixels predicted as each class
        total = m.sum()
        present = (gt + pr - tp) > 0
        iou = torch.from_numpy(class_iou(self.mat.numpy()))
        dice = torch.where(present, 2 * tp / (gt + pr).clamp(min=1), torch.nan)
        acc = torch.where(gt > 0, tp / gt.clamp(min=1), torch.nan)
        freq = gt / total if total > 0 else gt
        return {
            "pixel_accuracy": _item(tp.sum() / total) if total > 0 else None,
            "mean_class_accuracy": _nanmean(acc),
            "miou": _nanmean(iou),
            "per_class_iou": _list(iou),
            "mean_dice": _nanmean(dice),
            "per_class_dice": _list(dice),
            "per_class_accuracy": _list(acc),
            "fw_iou": _item((freq[present] * iou[present]).sum()) if total > 0 else None,
            "confusion_matrix": self.mat.tolist(),
            "class_names": self.class_names,
        }


def class_iou(mats) -> np.ndarray:
    """IoU of each class of each (k, k) matrix in ``mats`` (shape (..., k, k)) -> (..., k) float64: the one IoU
    formula, intersection / (true + predicted - intersection). nan for a class absent from both labels and
    predictions: its IoU is undefined, neither 0 nor 1."""
    m = np.asarray(mats, dtype=np.float64)
    tp = np.diagonal(m, axis1=-2, axis2=-1)
    union = m.sum(-1) + m.sum(-2) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / np.where(union > 0, union, 1.0), np.nan)


def mean_iou(mats) -> np.ndarray:
    """mIoU of each (k, k) matrix in ``mats`` (shape (..., k, k)) -> shape (...): the mean over the classes
    that have an IoU (absent classes are left out of the mean); nan where no class is present at all.
    Vectorised over leading axes, so a bootstrap scores thousands of resampled splits in one call."""
    iou = class_iou(mats)
    present = ~np.isnan(iou)
    count = present.sum(-1)
    return np.where(count > 0, np.where(present, iou, 0.0).sum(-1) / np.maximum(count, 1), np.nan)


def per_image_confusion(target: torch.Tensor, pred: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B, n, n) int64: one confusion matrix per image of a (B, ...) batch, in one ``bincount``.
    Per-image matrices let a study resample test images (bootstrap) without running the model again."""
    n, b = num_classes, target.shape[0]
    target, pred = target.reshape(b, -1).long(), pred.reshape(b, -1).long()
    keep = (target >= 0) & (target < n)  # drops IGNORE_INDEX and anything else out of range
    image = torch.arange(b, device=target.device).unsqueeze(1).expand_as(target)
    idx = (image * n + target) * n + pred
    return torch.bincount(idx[keep], minlength=b * n * n).reshape(b, n, n)


def _item(x: torch.Tensor) -> float:
    return float(x)


def _nanmean(x: torch.Tensor) -> float | None:
    ok = ~torch.isnan(x)
    return float(x[ok].mean()) if ok.any() else None


def _list(x: torch.Tensor) -> list[float | None]:
    return [None if np.isnan(v) else float(v) for v in x.tolist()]


__all__ = ["ConfusionMatrix", "class_iou", "mean_iou", "per_image_confusion"]
