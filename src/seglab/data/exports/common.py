"""What every export reader returns, and the one drawing rule they share.

A reader only parses: it returns an ``Export`` whose items each know how to ``render()`` their label mask
(training labels 0..n-1, 255 = void), so ``seglab data import`` rasterises each image once and a bad item
is skipped with its reason instead of stopping the whole import.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from seglab.constants import IGNORE_INDEX
from seglab.errors import SeglabError, read_user_text


@dataclass
class Item:
    name: str  # the stem the imported image and mask get; unique within an export
    image: Path
    split: str | None  # train, val or test when the export says so, else None
    render: Callable[[], np.ndarray]  # (H, W) uint8 labels; raises SeglabError naming the file and problem


@dataclass
class Export:
    root: Path
    format: str
    names: list[str]  # class i = names[i]; names[0] is the background
    colors: list[tuple[int, int, int]] | None
    items: list[Item]
    problems: list[str] = field(default_factory=list)  # items that cannot be imported, "file: why"
    warnings: list[str] = field(default_factory=list)  # imported, but changed (a clipped polygon)


@dataclass
class Shape:
    """One annotated region: its binary mask, the label it paints, its place in the file (for ties)."""
    mask: np.ndarray  # (H, W) bool or 0/1
    label: int
    order: int


def draw(shapes: list[Shape], height: int, width: int) -> np.ndarray:
    """Paint shapes over background 0: larger regions first, so where two overlap the smaller one wins
    (an object lying on another, a person on a bed, stays visible: the order of annotations in a file is
    arbitrary, their areas are not); equal areas: the later annotation wins."""
    out = np.zeros((height, width), np.uint8)
    areas = [int(np.count_nonzero(s.mask)) for s in shapes]
    for i in sorted(range(len(shapes)), key=lambda i: (-areas[i], shapes[i].order)):
        out[shapes[i].mask.astype(bool)] = shapes[i].label
    return out


def load_json(path: Path):
    """A JSON file, or a one-line SeglabError with the line and column of the first syntax error."""
    try:
        return json.loads(read_user_text(path))
    except json.JSONDecodeError as err:
        raise SeglabError(f"{path}: not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})") from None


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) from the file's header, without decoding its pixels."""
    if not path.is_file():
        raise SeglabError(f"{path}: image not found")
    try:
        with Image.open(path) as im:
            return im.height, im.width
    except (OSError, SyntaxError) as err:
        raise SeglabError(f"{path}: cannot read image ({err})") from None


def check_size(path: Path, height: int, width: int, where: str) -> None:
    """The annotation's declared size must be the image's, or masks would not line up with it."""
    h, w = image_size(path)
    if (h, w) != (height, width):
        raise SeglabError(f"{where}: annotated as {width}x{height} but {path.name} is {w}x{h}")


def polygon_mask(polygons: list[list[float]], height: int, width: int, where: str,
                 warnings: list[str]) -> np.ndarray:
    """Flat [x0, y0, x1, y1, ...] pixel polygons -> one (H, W) mask by pycocotools' rasteriser (the one COCO
    itself uses, so masks match what COCO's ``annToMask`` gives). Points outside the image are clipped to
    it, and said so in ``warnings``: an annotator's stray click past the border is common and harmless."""
    from pycocotools import mask as cocomask

    clean = []
    for poly in polygons:
        if not isinstance(poly, list) or len(poly) < 6 or len(poly) % 2 or \
                not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in poly):
            raise SeglabError(f"{where}: a polygon needs at least 3 points as [x0, y0, x1, y1, ...] numbers")
        xy = np.asarray(poly, np.float64).reshape(-1, 2)
        if (xy < 0).any() or (xy[:, 0] > width).any() or (xy[:, 1] > height).any():
            warnings.append(f"{where}: polygon reaches outside the {width}x{height} image; clipped to it")
            xy = np.clip(xy, 0, [width, height])
        clean.append(xy.ravel().tolist())
    return cocomask.decode(cocomask.merge(cocomask.frPyObjects(clean, height, width)))


def split_from_name(text: str) -> str | None:
    """'instances_train2017' -> train, 'valid' -> val, 'test-dev' -> test, 'default' -> None."""
    low = text.lower()
    for key, split in (("train", "train"), ("val", "val"), ("test", "test")):
        if key in low:
            return split
    return None


def void_or(label: int, crowd: bool, crowd_label: bool) -> int:
    """The label a region paints: crowd regions are void unless the user asked for their class."""
    return label if not crowd or crowd_label else IGNORE_INDEX


def unique_names(items: list[Item], problems: list[str]) -> list[Item]:
    """Keep the first item of each name: two images called the same would overwrite each other."""
    seen: dict[str, Item] = {}
    for it in items:
        if it.name in seen:
            problems.append(f"{it.image}: same name as {seen[it.name].image}; skipped")
        else:
            seen[it.name] = it
    return list(seen.values())
