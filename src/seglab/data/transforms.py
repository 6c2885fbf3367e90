"""Training and evaluation presets: paired (image, mask) transforms built from albumentations.

Masks are always resized with nearest neighbour (a blended label is a different class) and padded with
IGNORE_INDEX, so padding is never learned from or scored.
"""

from __future__ import annotations

import os

import cv2

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # skip its import-time PyPI query (up to 2 s offline)
import albumentations as A

from seglab.constants import IGNORE_INDEX, SIZE_DIVISOR

# Images: area filter when shrinking, linear when enlarging. Masks: nearest, always.
_RESIZE = {"interpolation": cv2.INTER_LINEAR, "area_for_downscale": "image",
           "mask_interpolation": cv2.INTER_NEAREST}
_PAD = {"border_mode": cv2.BORDER_CONSTANT, "fill": 0, "fill_mask": IGNORE_INDEX}


class _Preset:
    pipeline: A.Compose

    def __call__(self, image, mask):
        out = self.pipeline(image=image, mask=mask)
        return out["image"], out["mask"]


class TrainPreset(_Preset):
    """Resize to ``size`` (H, W), then random scale + pad + crop back to ``size``, flips, rotation, brightness,
    contrast and colour jitter, in that order (each off unless asked for but the horizontal flip).

    ``rotate``: the largest angle in degrees (drawn from -rotate..+rotate for every image; 0: off); the
    uncovered corners are black in the image and IGNORE_INDEX in the mask. ``brightness`` / ``contrast``:
    factor ranges (low, high) as torchvision's adjust_brightness / adjust_contrast take them (pixels times the
    factor; the image blended with its mean grey), drawn for every image, images only; None: off.
    """

    def __init__(self, size: tuple[int, int], scale_crop: bool = True, hflip: bool = True,
                 color_jitter: bool = True, scale_range: tuple[float, float] = (0.5, 2.0), seed: int | None = None,
                 vflip: bool = False, rotate: float = 0.0, brightness: tuple[float, float] | None = None,
                 contrast: tuple[float, float] | None = None):
        h, w = size
        ops = [A.Resize(h, w, **_RESIZE)]
        if scale_crop:
            lo, hi = scale_range
            ops += [A.RandomScale(scale_limit=(lo - 1, hi - 1), p=1.0, **_RESIZE),  # factor = 1 + limit
                    A.PadIfNeeded(h, w, **_PAD),
                    A.RandomCrop(h, w)]
        if hflip:
            ops.append(A.HorizontalFlip(p=0.5))
        if vflip:
            ops.append(A.VerticalFlip(p=0.5))
        if rotate:
            ops.append(A.Rotate(limit=(-rotate, rotate), interpolation=cv2.INTER_LINEAR,
                                mask_interpolation=cv2.INTER_NEAREST, p=1.0, **_PAD))
        # One ColorJitter per property, so brightness always comes before contrast (one ColorJitter with both
        # would shuffle their order); saturation and hue stay put (a factor of exactly 1).
        if brightness is not None:
            ops.append(A.ColorJitter(brightness=tuple(brightness), contrast=(1, 1), saturation=(1, 1), hue=(0, 0),
                                     p=1.0))
        if contrast is not None:
            ops.append(A.ColorJitter(brightness=(1, 1), contrast=tuple(contrast), saturation=(1, 1), hue=(0, 0),
                                     p=1.0))
        if color_jitter:
            ops.append(A.ColorJitter(brightness=0.25, contrast=0.25, saturation=0.25, hue=0.02, p=0.8))
        # albumentations keeps its own RNG, untouched by global seeds: seed it so runs repeat
        self.seed = seed or 0
        self.pipeline = A.Compose(ops, seed=seed)

    def reseed(self, seed: int) -> None:
        self.seed = seed
        self.pipeline.set_random_seed(seed)

    def reseed_item(self, epoch: int, index: int) -> None:
        """Draw this item's augmentation from (seed, epoch, index) alone (the pipeline's base seed kept)."""
        self.pipeline.set_random_seed(((self.seed * 1_000_003 + epoch) * 1_000_003 + index) % 2**32)


class EvalPreset(_Preset):
    """What the model sees at evaluation; the label always stays at native resolution.

    ``size=None``: the native image, padded bottom/right to a multiple of 32; the label is padded with
    IGNORE_INDEX, so padding is never scored. ``size=(H, W)``: the image resized to the training scale;
    the label is left as it is, and the model's logits are upsampled to it before scoring.
    """

    def __init__(self, size: tuple[int, int] | None = None):
        self.size = size
        self.pipeline = A.Compose([A.PadIfNeeded(min_height=None, min_width=None, pad_height_divisor=SIZE_DIVISOR,
                                                 pad_width_divisor=SIZE_DIVISOR, position="top_left", **_PAD)])

    def __call__(self, image, mask):
        if self.size is None:
            return super().__call__(image, mask)
        return resize_image(image, self.size), mask


def resize_image(image, size: tuple[int, int]):
    """Resize an (H, W, 3) image to ``size`` (H, W) as evaluation and prediction both do: area filter when
    shrinking, linear when enlarging. One function, so `seglab predict` sees what `seglab evaluate` scored."""
    h, w = size
    shrink = h * w < image.shape[0] * image.shape[1]
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
