"""The one way a model is scored: per-image confusion matrices over a split, at the labels' native size.

``seglab evaluate``, ``seglab bench tta``, export verification, the report's figures and the bootstrap all
score through here, so a number in one place means what it means in another:

- the data's classes must be the model's (``check_classes``) and the split must exist (``check_split``);
- logits are upsampled to the native labels, bilinearly, before the argmax (``to_label_size``); labels are
  never resized, so a model evaluated at a smaller input is still scored on every labelled pixel;
- each image gets its own confusion matrix (``confusions``): they sum exactly to the split's matrix, and a
  study resamples them for its intervals without running the model again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from seglab.errors import BadValue, SeglabError
from seglab.metrics import per_image_confusion
from seglab.models.tta import CUSTOM_SCALES, tta_logits, tta_scales


def check_classes(source, names: list[str]) -> None:
    """One line when the dataset's classes are not the ``names`` a model was trained on."""
    if list(source.classes.names) != list(names):
        raise SeglabError(f"{source.root}: its classes {list(source.classes.names)} differ from the "
                          f"{len(names)} classes the model was trained on {list(names)}")


def check_split(source, split: str) -> None:
    """BadValue naming the splits there are, when ``split`` is not one of them."""
    if split not in source.splits:
        raise BadValue("split", split, f"{source.root} has splits {', '.join(source.splits)}")


def to_label_size(scores: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, C, h, w) logits or probabilities -> (B, C, H, W) at the labels' (H, W): the one upsampling rule."""
    if tuple(scores.shape[-2:]) == tuple(size):
        return scores
    return F.interpolate(scores.float(), size=tuple(size), mode="bilinear", align_corners=False)


def upsample_rows(logits: torch.Tensor, H: int, W: int, rows: int) -> Iterator[tuple[int, torch.Tensor]]:
    """``to_label_size`` for one (C, h, w) image, ``rows`` output rows at a time, so a huge image never holds
    C x H x W floats at once (prediction at the training scale). grid_sample with these coordinates samples
    exactly where ``F.interpolate(mode="bilinear", align_corners=False)`` does (border clamping included)."""
    xs = (torch.arange(W, dtype=torch.float32) + 0.5) * 2 / W - 1  # output pixel centres in [-1, 1]
    for y0 in range(0, H, rows):
        ys = (torch.arange(y0, min(y0 + rows, H), dtype=torch.float32) + 0.5) * 2 / H - 1
        grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)[None]  # (1, rows, W, 2) as (x, y)
        yield y0, F.grid_sample(logits[None], grid, mode="bilinear", padding_mode="border",
                                align_corners=False)[0]


def confusions(pred: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray, num_classes: int) -> np.ndarray:
    """(B, H, W) predicted and true labels -> (B, C, C) int64 per-image matrices (void and out-of-range labels
    dropped). Predictions must be at the labels' size: a resized label would score other pixels."""
    pred, target = (x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x)) for x in (pred, target))
    if pred.shape != target.shape:
        raise SeglabError(f"predictions of shape {tuple(pred.shape)} against labels of shape "
                          f"{tuple(target.shape)}: predictions are scored at the labels' native size")
    return per_image_confusion(target.long(), pred.long(), num_classes).numpy()


@torch.no_grad()
def score_split(forward: Callable[[torch.Tensor], torch.Tensor], batches: Iterable, num_classes: int,
                modes: list[str] | tuple[str, ...] = ("none",), device=None,
                autocast: torch.dtype | None = None) -> dict[str, np.ndarray]:
    """(N, C, C) per-image confusion matrices of ``forward`` over ``batches`` of (images, labels), for each
    test-time augmentation in ``modes``.

    One mode runs exactly its own views (``models.tta``). Several modes share work: each scale's mirrored pair
    runs once per batch and every mode is scored from those shared probabilities, so all candidates together
    cost what the widest one costs (``seglab bench tta``).
    """
    device = torch.device(device or "cpu")
    modes = list(modes)
    mats: dict[str, list[np.ndarray]] = {m: [] for m in modes}
    shared = sorted({s for m in modes if m != "none" for s in tta_scales(m)}) if len(modes) > 1 else []
    for images, labels in batches:
        images = images.to(device)
        size = labels.shape[-2:]
        with torch.autocast(device.type, dtype=autocast or torch.float32, enabled=autocast is not None):
            if len(modes) == 1:
                scores = {modes[0]: tta_logits(forward, images, modes[0]).float()}
            else:
                pairs = {s: tta_logits(forward, images, f"{CUSTOM_SCALES}{s:g}").exp() for s in shared}
                scores = {m: forward(images).float() if m == "none" else
                          torch.stack([pairs[s] for s in tta_scales(m)]).sum(0) for m in modes}
        for mode, s in scores.items():
            mats[mode].append(confusions(to_label_size(s, size).argmax(1).cpu(), labels.cpu(), num_classes))
    empty = np.zeros((0, num_classes, num_classes), np.int64)
    return {m: np.concatenate(v) if v else empty for m, v in mats.items()}
