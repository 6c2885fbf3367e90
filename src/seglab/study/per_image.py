"""The per-image view of a run's test split, from its per-image confusion matrices: each image's mIoU, the
distribution a split's single number averages away, and the worst images with the classes that failed.

Why per image: the split mIoU sums every image's pixels first, so a few images where the model fails
(a dark street, a rare class) barely move it. An image's mIoU is computed exactly like the split's, on
that image's matrix alone: its classes absent from both its labels and its prediction are left out, and
a class predicted but absent from its labels counts with IoU 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from seglab.metrics import class_iou, mean_iou

FAIL_IOU = 0.25  # a class present in an image's labels with a lower IoU there has failed on it


@dataclass(frozen=True)
class Failure:
    """One class that went wrong on one image."""

    name: str
    iou: float
    kind: str  # "missed" (in the labels, not one pixel found), "low" (IoU < FAIL_IOU), "spurious" (predicted,
    #            absent from the labels: it costs the image's mIoU a 0)


@dataclass(frozen=True)
class ImageScore:
    index: int  # position in the split (and in per_image_test.npz)
    name: str
    miou: float
    failures: list[Failure]


def image_mious(mats) -> np.ndarray:
    """(n,) mIoU of each image of (n, k, k) per-image matrices (nan for an image without labelled pixels)."""
    return mean_iou(np.asarray(mats))


def failures(mat: np.ndarray, class_names: list[str], threshold: float = FAIL_IOU) -> list[Failure]:
    """The classes that failed on one image's (k, k) matrix, worst first."""
    mat = np.asarray(mat)
    iou, truth, predicted = class_iou(mat), mat.sum(1), mat.sum(0)
    out = []
    for c in range(len(mat)):
        name = class_names[c] if c < len(class_names) else str(c)
        if truth[c] > 0 and mat[c, c] == 0:
            out.append(Failure(name, 0.0, "missed"))
        elif truth[c] > 0 and iou[c] < threshold:
            out.append(Failure(name, float(iou[c]), "low"))
        elif truth[c] == 0 and predicted[c] > 0:
            out.append(Failure(name, 0.0, "spurious"))
    return sorted(out, key=lambda f: (f.iou, f.kind != "missed"))


def worst_images(mats, names: list[str], class_names: list[str], k: int = 4,
                 threshold: float = FAIL_IOU) -> list[ImageScore]:
    """The ``k`` test images with the lowest mIoU (images without labelled pixels left out), worst first."""
    scores = image_mious(mats)
    order = [int(i) for i in np.argsort(scores, kind="stable") if not np.isnan(scores[i])][:k]
    return [ImageScore(i, names[i] if i < len(names) else f"#{i}", float(scores[i]),
                       failures(mats[i], class_names, threshold)) for i in order]


def failure_text(f: Failure) -> str:
    """'car (IoU 12%)', 'pedestrian (missed)', 'sign (spurious: predicted, not in the labels)'."""
    if f.kind == "missed":
        return f"{f.name} (missed)"
    if f.kind == "spurious":
        return f"{f.name} (spurious: predicted, not in the labels)"
    return f"{f.name} (IoU {100 * f.iou:.0f}%)"
