"""Test-time augmentation: average the model's class probabilities over mirrored and rescaled inputs.

Published gains on segmentation benchmarks are +1 to +2.5 mIoU for flip and multi-scale together, at 2x
(flip) or 6x (flip at three scales) the inference cost. Enlarged views (1.5x, 2x) give thin classes such as
poles more output pixels than a decoder working at a quarter of the input resolution has. One function,
used by evaluation and prediction, so `seglab predict` sees what `seglab evaluate` scored.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from seglab.sizes import MAX_SCALE, nearest_valid

TTA_SCALES = {"none": (1.0,), "flip": (1.0,), "flip+scales": (0.75, 1.0, 1.25)}
CUSTOM_SCALES = "flip+scales:"  # followed by one's own scales, e.g. flip+scales:0.75,1,1.5,2
ONE_VIEW = "scale:"  # followed by one scale: one forward pass of the enlarged (or reduced) image, not mirrored


def mirrored(mode: str) -> bool:
    """Whether each of the mode's views is also run mirrored (all but none and one-view modes)."""
    return mode != "none" and not str(mode).startswith(ONE_VIEW)


def view_count(mode: str) -> int:
    return len(tta_scales(mode)) * (2 if mirrored(mode) else 1)


def tta_scales(mode: str) -> tuple[float, ...]:
    """The input scales a mode averages over, each view also mirrored unless the mode is "none" or a one-view
    ``scale:S``. ValueError says what is wrong with a mode no evaluation could run."""
    if mode in TTA_SCALES:
        return TTA_SCALES[mode]
    prefix = next((p for p in (CUSTOM_SCALES, ONE_VIEW) if str(mode).startswith(p)), None)
    if prefix is None:
        raise ValueError(f"choose one of {', '.join(TTA_SCALES)}, {CUSTOM_SCALES}S1,S2,... "
                         f"(e.g. flip+scales:0.75,1,1.5), or {ONE_VIEW}S for one view at scale S (e.g. scale:1.5)")
    try:
        scales = tuple(float(s) for s in mode[len(prefix):].split(","))
    except ValueError:
        raise ValueError(f"scales must be numbers separated by commas, e.g. {CUSTOM_SCALES}0.75,1,1.5") from None
    if prefix == ONE_VIEW and len(scales) != 1:
        raise ValueError(f"{ONE_VIEW}S takes one scale; several are {CUSTOM_SCALES}S1,S2,...")
    if not all(0 < s <= MAX_SCALE for s in scales):  # also false for NaN
        raise ValueError(f"every scale must be in (0, {MAX_SCALE:g}]")
    if len(set(scales)) != len(scales):
        raise ValueError("a scale is listed twice")
    return scales


def tta_logits(forward: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, mode: str) -> torch.Tensor:
    """(B, 3, H, W) images -> (B, C, H, W) log of the probabilities averaged over the mode's views.

    ``mode="none"`` returns ``forward(images)`` unchanged; ``scale:S`` runs one view at scale S. Rescaled views are resized to multiples of 32 (what
    the encoders need) and their logits resized back before the softmax, so every view votes per input pixel.
    """
    if mode == "none":
        return forward(images)
    h, w = images.shape[-2:]
    total = None
    views = 0
    for scale in tta_scales(mode):
        size = (nearest_valid(h * scale), nearest_valid(w * scale))
        x = images if size == (h, w) else F.interpolate(images.float(), size=size, mode="bilinear",
                                                        align_corners=False)
        for flip in (False, True) if mirrored(mode) else (False,):
            logits = forward(x.flip(-1) if flip else x).float()
            if flip:
                logits = logits.flip(-1)
            if logits.shape[-2:] != (h, w):
                logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
            probs = logits.softmax(1)
            total = probs if total is None else total + probs
            views += 1
    return (total / views).clamp_min(1e-8).log()
