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


def _band(mask: np.ndarray, keep: np.ndarray, d: int) -> np.ndarray:
    """The pixels of ``mask`` within chessboard distance ``d`` of its contour: ``mask`` minus its erosion by a
    (2d+1) square, outside the image counted as background; pixels in ``keep`` (void, for labels) are counted
    as inside while eroding, so they make no contour."""
    solid = (mask | keep).astype(np.uint8)
    padded = cv2.copyMakeBorder(solid, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    kernel = np.ones((2 * d + 1, 2 * d + 1), np.uint8)
    # cv2's default border for erode is the maximum, so only the explicit zero frame erodes from outside
    eroded = cv2.erode(padded, kernel)[1:-1, 1:-1].astype(bool)
    return mask & ~eroded


def boundary_counts(pred, target, num_classes: int, width: int | None = None,
                    fraction: float = DEFAULT_FRACTION) -> np.ndarray:
    """(B, H, W) predicted and true labels -> (B, C, 2) int64: per image and class, the [intersection, union]
    pixel counts of the boundary bands. Labels outside 0..C-1 (void) are ignored. ``width`` fixes d in pixels;
    by default it is ``boundary_width`` of each image."""
    pred, target = np.asarray(pred, np.int64), np.asarray(target, np.int64)
    if pred.shape != target.shape or pred.ndim != 3:
        raise ValueError(f"expected (B, H, W) predictions and labels of one shape, got {pred.shape} and "
                         f"{target.shape}")
    out = np.zeros((pred.shape[0], num_classes, 2), np.int64)
    h, w = pred.shape[1:]
    d = width if width is not None else boundary_width(h, w, fraction)
    for b in range(pred.shape[0]):
        t, p = target[b], pred[b]
        void = (t < 0) | (t >= num_classes)
        labelled = ~void
        no_void = np.zeros_like(void)
        lt, lp = t[labelled], p[labelled]
        lp = lp[(lp >= 0) & (lp < num_classes)]
        present = (np.bincount(lt, minlength=num_classes) + np.bincount(lp, minlength=num_classes))[:num_classes]
        for c in np.flatnonzero(present):  # a class in neither has no band: (0, 0)
            c = int(c)
            gt_band = _band(t == c, void, d) & labelled
            pr_band = _band(p == c, no_void, d) & labelled
            out[b, c, 0] = np.count_nonzero(gt_band & pr_band)
            out[b, c, 1] = np.count_nonzero(gt_band | pr_band)
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
