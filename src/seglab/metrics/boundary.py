"""Boundary IoU for semantic masks (Cheng et al., "Boundary IoU: Improving Object-Centric Image Segmentation
Evaluation", CVPR 2021), counted per image so a split's figure and its bootstrap come from the same numbers.

Why: mIoU counts every pixel alike, so on a large object a ragged edge costs little; Boundary IoU scores only
the pixels near each class's contours, where models differ. For class ``c`` with label mask G and predicted
mask P, and G_d, P_d the pixels of G and P within distance d of their contours,

    Boundary IoU(c) = |(G_d ∩ G) ∩ (P_d ∩ P)| / |(G_d ∩ G) ∪ (P_d ∩ P)|

with intersections and unions summed over the split's images before dividing, as for mIoU. Following the
authors' reference code (``boundary_iou_api``, ``mask_to_boundary``): distance is chessboard distance (erosion
with a 3x3 square, d times), d = ``fraction`` x the image diagonal rounded, at least 1 pixel (default 2%), and
the image border is a contour. Void is honoured: void pixels are left out of both bands, and a class's edge
against void is not a contour (the label does not say where that edge lies).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

DEFAULT_FRACTION = 0.02  # the reference implementation's dilation_ratio


def boundary_width(height: int, width: int, fraction: float = DEFAULT_FRACTION) -> int:
    """d in pixels for an image of ``height`` x ``width``: ``fraction`` of its diagonal, at least 1."""
    return max(1, round(fraction * math.hypot(height, width)))


def _near_other(labels: np.ndarray, void: np.ndarray, d: int) -> np.ndarray:
    """(H, W) bool: pixels with, within chessboard distance ``d``, a pixel of another class or the image's edge;
    void pixels count as neither (they make no contour). For a pixel of class c this is exactly "in G_d ∩ G":
    c's mask minus its erosion by a (2d+1) square with outside the image counted as background, which is
    the reference code's ``mask_to_boundary``. All classes at once: a (2d+1)-window minimum and maximum of the
    label map (void set to +inf for the minimum and -inf for the maximum) differ from the pixel's own label
    exactly when another class lies within d; a frame of -inf one pixel wide makes the edge a contour."""
    shifted = labels.astype(np.int32) + 1  # 1..C, so 0 can be the frame
    dtype = np.uint8 if shifted.max(initial=0) < 255 else np.uint16  # more than 254 classes: 16-bit maps
    top = np.iinfo(dtype).max
    kernel = np.ones((2 * d + 1, 2 * d + 1), np.uint8)
    low = np.where(void, top, shifted).astype(dtype)
    low = cv2.copyMakeBorder(low, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    high = np.where(void, 0, shifted).astype(dtype)
    # cv2's default border for erode (dilate) is the maximum (minimum): only the explicit frame counts
    low = cv2.erode(low, kernel)[1:-1, 1:-1]
    high = cv2.dilate(high, kernel)
    return (low != shifted) | (high != shifted)


def boundary_counts(pred, target, num_classes: int, width: int | None = None,
                    fraction: float = DEFAULT_FRACTION) -> np.ndarray:
    """(B, H, W) predicted and true labels -> (B, C, 2) int64: per image and class, the [intersection, union]
    pixel counts of the boundary bands. Labels outside 0..C-1 (void) are ignored. ``width`` fixes d in pixels;
    by default it is ``boundary_width`` of each image."""
    pred, target = np.asarray(pred, np.int64), np.asarray(target, np.int64)
    if pred.shape != target.shape or pred.ndim != 3:
        raise ValueError(f"expected (B, H, W) predictions and labels of one shape, got {pred.shape} and "
                         f"{target.shape}")
    n = num_classes
    out = np.zeros((pred.shape[0], n, 2), np.int64)
    h, w = pred.shape[1:]
    d = width if width is not None else boundary_width(h, w, fraction)
    for b in range(pred.shape[0]):
        t, p = target[b], np.clip(pred[b], 0, n)  # a prediction out of range is no class (n: dropped below)
        void = (t < 0) | (t >= n)
        labelled = ~void
        g = _near_other(np.where(void, 0, t), void, d) & labelled  # G_d ∩ G of each pixel's own label class
        q = _near_other(p, np.zeros_like(void), d) & labelled  # P_d ∩ P of each pixel's predicted class
        both = g & q & (t == p)
        inter = np.bincount(t[both], minlength=n + 1)[:n]
        union = np.bincount(t[g], minlength=n + 1)[:n] + np.bincount(p[q], minlength=n + 1)[:n] - inter
        out[b, :, 0], out[b, :, 1] = inter, union
    return out


def boundary_iou(counts) -> np.ndarray:
    """(..., C, 2) summed [intersection, union] counts -> (..., C) Boundary IoU per class; nan where a class has
    no boundary pixel in labels or predictions (undefined, left out of the mean like an absent class in mIoU)."""
    c = np.asarray(counts, np.float64)
    inter, union = c[..., 0], c[..., 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1.0), np.nan)


def mean_boundary_iou(counts) -> np.ndarray:
    """(..., C, 2) -> (...): the mean of ``boundary_iou`` over classes that have one; nan when none has."""
    iou = boundary_iou(counts)
    present = ~np.isnan(iou)
    n = present.sum(-1)
    return np.where(n > 0, np.where(present, iou, 0.0).sum(-1) / np.maximum(n, 1), np.nan)
