"""A backend applied to any number of images: batched, test-time augmented and checked against the class list.

Both prediction strategies (resize.py, tiling.py) call it; it does not care which backend runs the model.
"""

from __future__ import annotations

import torch

from seglab.errors import BadValue, SeglabError
from seglab.inference.backends import Backend
from seglab.models.tta import TTA_SCALES, tta_logits


class Forward:
    """A backend applied to any number of images: ``batch_size`` at a time, test-time augmented (``tta``),
    and checked to give one output per known class."""

    def __init__(self, backend: Backend, num_classes: int, batch_size: int, tta: str = "none"):
        self.backend, self.num_classes = backend, num_classes
        self.batch_size = min(batch_size, backend.max_batch or batch_size)
        self.tta = tta

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) uint8 -> (N, C, H, W) float32 logits."""
        out = torch.cat([tta_logits(self.backend, images[s:s + self.batch_size], self.tta).float()
                         for s in range(0, len(images), self.batch_size)])
        if out.shape[1] != self.num_classes:
            raise SeglabError(f"model outputs {out.shape[1]} classes but {self.num_classes} class names are "
                              "known; the class list does not belong to this model")
        return out

    def probs(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) uint8 -> (N, C, H, W) float32 softmax probabilities."""
        return self.logits(images).softmax(1)


def check_tta(tta: str, backend: Backend) -> str:
    """``tta`` if the backend can run its views, else BadValue."""
    if tta not in TTA_SCALES:
        raise BadValue("tta", tta, f"choose one of {', '.join(TTA_SCALES)}")
    if backend.fixed_size and len(TTA_SCALES[tta]) > 1:
        raise BadValue("tta", tta, f"rescaled views need a model that takes any input size, and this export "
                                   f"takes only {backend.fixed_size[0]}x{backend.fixed_size[1]}; use flip or an "
                                   "export made with --dynamic")
    return tta
