"""The one dataset: decode an image and its mask once, validate them, apply the LUT, then transform.

Every error names the file and says what is wrong: a bad label found by ``preload()`` before training is
easy to fix, the same label found in epoch 7 inside a DataLoader worker is not.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from seglab.constants import IGNORE_INDEX
from seglab.data.sources import Sample
from seglab.errors import SeglabError
from seglab.imageio import file_orientation, read_image, upright


def color_lookup(color_table: dict[tuple[int, int, int], int]) -> tuple[np.ndarray, np.ndarray]:
    """Sorted packed-RGB keys and their raw labels, so a whole mask decodes with one searchsorted."""
    keys = np.array([(r << 16) | (g << 8) | b for r, g, b in color_table], np.int32)
    order = np.argsort(keys)
    return keys[order], np.array(list(color_table.values()), np.uint8)[order]


def decode_colors(path: Path, mask: np.ndarray, lookup: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """BGR(A) colour mask as read by OpenCV -> (H, W) uint8 raw labels; unknown colours -> IGNORE_INDEX."""
    if mask.ndim != 3 or mask.dtype != np.uint8:
        raise SeglabError(f"{path}: expected an 8-bit RGB colour mask, found {mask.ndim}-D {mask.dtype} "
                          "pixels (single-channel index masks belong to the camvid or folder layout)")
    keys, values = lookup
    packed = (mask[..., 2].astype(np.int32) << 16) | (mask[..., 1].astype(np.int32) << 8) | mask[..., 0]
    idx = np.minimum(np.searchsorted(keys, packed), len(keys) - 1)
    return np.where(keys[idx] == packed, values[idx], IGNORE_INDEX).astype(np.uint8)


def read_mask(path: Path, lookup: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """(H, W) raw labels, uint8 (or uint16 for 16-bit PNGs, checked by ``apply_lut``), upright by the
    file's EXIF orientation as ``read_image`` turns images, so a pair stays aligned.

    Colour masks (``lookup`` given) are decoded from their RGB values, never read as grayscale: a grayscale
    read blends the three channels into numbers that are not class indices.
    """
    mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)  # as stored: UNCHANGED ignores EXIF orientation
    if mask is None:
        raise SeglabError(f"{path}: cannot read image (missing, truncated or not an image)")
    turn = file_orientation(path)
    if lookup is not None:
        return upright(decode_colors(path, mask, lookup), turn)
    if mask.ndim == 3:
        with Image.open(path) as im:  # OpenCV expands palette PNGs to colours; their indices are the labels
            if im.mode != "P":
                raise SeglabError(f"{path}: mask has {mask.shape[2]} channels but this layout expects "
                                  "single-channel class-index PNGs (colour masks: use the camvid32 layout "
                                  "or color_masks: true in classes.yaml)")
            mask = np.asarray(im)
    if mask.dtype not in (np.uint8, np.uint16):
        raise SeglabError(f"{path}: mask pixels are {mask.dtype}; expected 8- or 16-bit class indices")
    return upright(mask, turn)


def _runs(values: np.ndarray) -> str:
    """[0..10, 12] -> '0–10, 12'."""
    parts, start = [], None
    for i, v in enumerate(values):
        if start is None:
            start = v
        if i + 1 == len(values) or values[i + 1] != v + 1:
            parts.append(str(start) if start == v else f"{start}–{v}")
            start = None
    return ", ".join(parts)


def valid_range(lut: np.ndarray) -> str:
    """Describe the raw values a LUT accepts, e.g. '0–10 (11 = void)' for SegNet CamVid."""
    classes = np.flatnonzero((lut >= 0) & (lut != IGNORE_INDEX))
    void = np.flatnonzero(lut == IGNORE_INDEX)
    void = void[void != IGNORE_INDEX]  # 255 is void in every LUT, not worth saying
    return f"{_runs(classes)} ({_runs(void)} = void)" if void.size else _runs(classes)


def invalid_label_message(path: Path, values: np.ndarray, lut: np.ndarray) -> str:
    shown = ", ".join(str(int(v)) for v in values[:8]) + (", …" if len(values) > 8 else "")
    word = "value" if len(values) == 1 else "values"
    return f"{path}: label {word} {shown} outside the valid range {valid_range(lut)}"


def apply_lut(raw: np.ndarray, lut: np.ndarray, path: Path) -> np.ndarray:
    """Raw labels -> uint8 training labels (0..C-1 or IGNORE_INDEX); a value the LUT rejects is an error."""
    if raw.dtype != np.uint8:
        too_big = np.unique(raw[raw > 255])
        if too_big.size:
            raise SeglabError(invalid_label_message(path, too_big, lut))
        raw = raw.astype(np.uint8)
    mask = lut[raw]
    bad = mask < 0
    if bad.any():
        raise SeglabError(invalid_label_message(path, np.unique(raw[bad]), lut))
    return mask.astype(np.uint8)


def read_pair(sample: Sample, lookup=None) -> tuple[np.ndarray, np.ndarray | None]:
    """Image and raw mask of one sample, checked to have the same size (mask None stays None)."""
    image = read_image(sample.image)
    if sample.mask is None:
        return image, None
    raw = read_mask(sample.mask, lookup)
    if raw.shape[:2] != image.shape[:2]:
        (mh, mw), (ih, iw) = raw.shape[:2], image.shape[:2]
        sideways = " (images are turned upright by their EXIF orientation: save the mask upright too)" \
            if (mh, mw) == (iw, ih) else ""
        raise SeglabError(f"{sample.mask}: mask is {mh}x{mw} but its image {sample.image} is {ih}x{iw} "
                          f"(height x width); they must match pixel for pixel{sideways}")
    return image, raw


class SegmentationDataset(torch.utils.data.Dataset):
    """Images as uint8 (3, H, W) tensors (the model normalises) and masks as int64 (H, W), 0..C-1 or 255.

    With ``cache=True`` each file is decoded once per run and kept as uint8 arrays (CamVid: about 0.5 GB);
    call ``preload()`` in the main process so DataLoader workers share the cache and errors surface early.
    Whether a run caches is decided by ``data.memory.choose_policy`` (data.cache, data.memory_budget).
    Transforms run after the cache, so random augmentation still differs every epoch.
    """

    def __init__(self, samples: list[Sample], lut: np.ndarray, num_classes: int, transform=None,
                 color_table: dict[tuple[int, int, int], int] | None = None, cache: bool = True):
        self.samples = list(samples)
        self.lut = np.asarray(lut, np.int16)
        self.num_classes = num_classes
        self.transform = transform
        self.lookup = color_lookup(color_table) if color_table else None
        self._cache: list | None = [None] * len(self.samples) if cache else None
        targets = self.lut[(self.lut >= 0) & (self.lut != IGNORE_INDEX)]
        if targets.size and targets.max() >= num_classes:
            raise ValueError(f"lut maps to class {targets.max()} but num_classes is {num_classes}")

    def __len__(self) -> int:
        return len(self.samples)

    def _decode(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        sample = self.samples[i]
        image, raw = read_pair(sample, self.lookup)
        if raw is None:  # unlabelled (prediction): an all-void mask keeps batches uniform
            return image, np.full(image.shape[:2], IGNORE_INDEX, np.uint8)
        return image, apply_lut(raw, self.lut, sample.mask)

    def decoded(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Image (H, W, 3) and training mask (H, W), both uint8, before transforms; do not modify them."""
        if self._cache is None:
            return self._decode(i)
        if self._cache[i] is None:
            self._cache[i] = self._decode(i)
        return self._cache[i]

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """``key``: an index, or (index, epoch) from EpochSampler: then the random augmentation is a function
        of (seed, epoch, index) alone, the same in any worker and after a resume."""
        i, epoch = key if isinstance(key, tuple) else (key, None)
        image, mask = self.decoded(i)
        if epoch is not None and hasattr(self.transform, "reseed_item"):
            self.transform.reseed_item(epoch, i)
        if self.transform is not None:
            image, mask = self.transform(image, mask)
        image = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).contiguous()  # HWC -> CHW
        return image, torch.from_numpy(np.asarray(mask, dtype=np.int64))

    def preload(self, progress: bool = False) -> None:
        """Decode and validate every pair now (and keep them when caching)."""
        indices = range(len(self))
        if progress:
            from rich.progress import track
            indices = track(indices, description=f"decoding {len(self)} images")
        for i in indices:
            self.decoded(i)

    def label_histogram(self) -> np.ndarray:
        """(num_classes,) pixel count per class over all masks, void excluded (for class weights)."""
        hist = np.zeros(self.num_classes, np.int64)
        for i in range(len(self)):
            hist += np.bincount(self.decoded(i)[1].ravel(), minlength=256)[: self.num_classes]
        return hist
