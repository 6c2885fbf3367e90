"""What a layout reader returns (``DataSource``: pairs per split, classes, LUT) and how files are paired, apart
from the readers themselves (sources.py, benchmarks.py), so every reader builds on it without importing another.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seglab.data.classes import ClassSet
from seglab.errors import SeglabError
from seglab.imageio import IMAGE_EXTENSIONS

SPLITS = ("train", "val", "test")


@dataclass
class Sample:
    image: Path
    mask: Path | None = None  # None only for prediction on unlabelled images


@dataclass
class DataSource:
    root: Path
    layout: str  # a key of LAYOUTS
    splits: dict[str, list[Sample]]  # keys among SPLITS
    classes: ClassSet  # what the model predicts, after any remap
    lut: np.ndarray  # (256,) int16: raw label -> class index | IGNORE_INDEX | INVALID
    color_table: dict[tuple[int, int, int], int] | None = None  # RGB -> raw label for colour masks
    problems: list[str] = field(default_factory=list)  # "file: what is wrong", for warnings
    split_manifest: dict | None = None  # the splits.json the splits came from (data.splits.manifest_record)

    def fingerprint(self, split: str | None = None) -> str:
        """16 hex digits over the files' relative paths and sizes (one split, or all): the same data gives the
        same print, so a run can tell when it is evaluated on other data than it trained on."""
        import hashlib

        digest = hashlib.sha1()
        for name in [split] if split else sorted(self.splits):
            for s in self.splits.get(name, []):
                for f in (s.image, s.mask):
                    if f is not None:
                        rel = f.relative_to(self.root).as_posix() if f.is_relative_to(self.root) else f.name
                        digest.update(f"{name}/{rel}:{f.stat().st_size}\n".encode())
        return digest.hexdigest()[:16]

    def split(self, name: str) -> list[Sample]:
        """The pairs of one split; a missing or empty split is a user error, not an empty epoch."""
        if self.splits.get(name):
            return self.splits[name]
        state = "empty" if name in self.splits else "missing"
        have = [k for k, v in self.splits.items() if v]
        hint = f"; first problem: {self.problems[0]}" if self.problems else ""
        raise SeglabError(f"{self.root}: split '{name}' is {state} ({self.layout} layout, splits with data: "
                          f"{', '.join(have) or 'none'}){hint}; run `seglab data check {self.root}`")


def _files(folder: Path, exts: tuple[str, ...]) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in exts)


def _pair(root: Path, image_dir: Path, mask_dir: Path, suffix: str = "") -> tuple[list[Sample], list[str]]:
    """Pair each image with ``mask_dir/<stem><suffix>.png``; whatever stays unmatched becomes a problem."""
    def rel(p: Path) -> str:
        return p.relative_to(root).as_posix() if p.is_relative_to(root) else str(p)

    images: dict[str, Path] = {}
    problems = []
    for p in _files(image_dir, IMAGE_EXTENSIONS):
        if p.stem in images:
            problems.append(f"{rel(p)}: same name as {rel(images[p.stem])}; ignored")
        else:
            images[p.stem] = p
    if images and not mask_dir.is_dir():
        missing = f"{rel(mask_dir)}/: label folder missing, so the {len(images)} images in {rel(image_dir)}/"
        return [], [f"{missing} have no labels"]
    masks = {(p.stem[: -len(suffix)] if suffix and p.stem.endswith(suffix) else p.stem): p
             for p in _files(mask_dir, (".png",))}
    samples = [Sample(img, masks[stem]) for stem, img in images.items() if stem in masks]
    problems += [f"{rel(img)}: no label file (expected {rel(mask_dir / f'{stem}{suffix}.png')})"
                 for stem, img in images.items() if stem not in masks]
    problems += [f"{rel(m)}: label file without image (no {key}.* in {rel(image_dir)}/)"
                 for key, m in masks.items() if key not in images]
    return samples, problems
