"""Label Studio's JSON export: a list of tasks, each with ``data.image`` and ``annotations[].result[]``.

Two result types become masks: ``brushlabels`` (``value.rle``: Label Studio's own run-length code of the
RGBA brush layer, decoded as label-studio-converter's ``brush.decode_rle`` does; a pixel belongs to the
label where the layer's alpha is at least 128) and ``polygonlabels`` (``value.points`` in percent of
``original_width``/``original_height``, rasterised like COCO polygons). Other result types carry no pixels
and are ignored. Classes: background 0, then the label names seen, in alphabetical order. Per task, the
first annotation not cancelled is used. Overlaps: the smaller region wins (see ``common.draw``).
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np

from seglab.data.exports.common import (
    Export,
    Item,
    Shape,
    check_size,
    draw,
    image_size,
    load_json,
    polygon_mask,
    unique_names,
)
from seglab.errors import SeglabError
from seglab.imageio import IMAGE_EXTENSIONS

UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-")  # Label Studio renames uploads to "<8 hex>-<original name>"


def decode_rle(data: list[int] | bytes, expected: int | None = None) -> np.ndarray:
    """Label Studio brush RLE -> the flat values it encodes (H*W*4 for an RGBA layer); ``expected``: the
    number of values it must hold, checked from its header before anything is allocated (a corrupt header
    could otherwise ask for gigabytes).

    The stream (thi-ng rle-pack): 32 bits count, 5 bits word size - 1, four 4-bit run-length widths - 1,
    then chunks of: 1 flag bit, 2 bits choosing a width, (run length - 1) in that width, and for a repeat
    (flag 1) one word, for a literal (flag 0) one word per value."""
    bits = "".join(f"{b:08b}" for b in bytes(data))
    pos = 0

    def read(n: int) -> int:
        nonlocal pos
        if pos + n > len(bits):
            raise ValueError("the RLE ends early")
        pos += n
        return int(bits[pos - n:pos], 2)

    num, word = read(32), read(5) + 1
    if expected is not None and num != expected:
        raise ValueError(f"it holds {num} values, the image's RGBA layer needs {expected}")
    sizes = [read(4) + 1 for _ in range(4)]
    out = np.zeros(num, np.uint8 if word <= 8 else np.uint32)
    i = 0
    while i < num:
        repeat = read(1)
        j = min(num, i + 1 + read(sizes[read(2)]))
        if repeat:
            out[i:j] = read(word)
        else:
            for k in range(i, j):
                out[k] = read(word)
        i = j
    return out


def _brush(value: dict, h: int, w: int, where: str) -> np.ndarray:
    try:
        flat = decode_rle(value["rle"], expected=h * w * 4)
    except (KeyError, TypeError, ValueError) as err:
        raise SeglabError(f"{where}: cannot decode the brush RLE of a {w}x{h} image ({err})") from None
    return flat.reshape(h, w, 4)[..., 3] >= 128


def _value(result: dict) -> dict:
    """A result's ``value`` object ({} where it is missing or not an object: its label check then fails)."""
    value = result.get("value")
    return value if isinstance(value, dict) else {}


def _label(value: dict, kind: str, where: str) -> str:
    labels = value.get(kind)
    if not isinstance(labels, list) or not labels:
        raise SeglabError(f"{where}: the result names no label ({kind} is empty)")
    return str(labels[0])


def _results(task: dict) -> list[dict]:
    anns = [a for a in task.get("annotations") or [] if isinstance(a, dict) and not a.get("was_cancelled")]
    results = anns[0].get("result", []) if anns else []
    return [r for r in results if isinstance(r, dict) and r.get("type") in ("brushlabels", "polygonlabels")]


def _renderer(path: Path, task_id, results: list[dict], labels: dict[str, int], image: Path, warnings: list[str]):
    def render() -> np.ndarray:
        shapes, size = [], None
        for order, r in enumerate(results):
            where = f"{path}: task {task_id}, result {r.get('id', order)}"
            h, w = r.get("original_height"), r.get("original_width")
            if not isinstance(h, int) or not isinstance(w, int) or h <= 0 or w <= 0:
                raise SeglabError(f"{where}: original_width and original_height must be positive integers")
            if size is None:
                check_size(image, h, w, where)
                size = (h, w)
            elif size != (h, w):
                raise SeglabError(f"{where}: annotated as {w}x{h}, another result of the task as "
                                  f"{size[1]}x{size[0]}")
            value, kind = _value(r), r["type"]
            if kind == "brushlabels":
                mask = _brush(value, h, w, where)
            else:
                pts = value.get("points")
                if not isinstance(pts, list) or not all(
                        isinstance(p, list) and len(p) == 2 and all(isinstance(v, (int, float)) and
                                                                    not isinstance(v, bool) for v in p)
                        for p in pts):
                    raise SeglabError(f"{where}: polygon points must be [[x%, y%], ...] numbers")
                poly = [v * s / 100 for x, y in pts for v, s in ((x, w), (y, h))]
                mask = polygon_mask([poly], h, w, where, warnings)
            shapes.append(Shape(mask, labels[_label(value, kind, where)], order))
        if size is None:  # a task with no regions: all background, at the image's size
            size = image_size(image)
        return draw(shapes, *size)

    return render


def _find_images(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS:
            found.setdefault(p.name, p)
    return found


def export_file(src: Path) -> Path:
    """SRC is the JSON itself, or a folder holding exactly one .json."""
    if src.is_file():
        return src
    found = sorted(src.glob("*.json"))
    if len(found) != 1:
        raise SeglabError(f"{src}: expected one Label Studio JSON export in the folder, found "
                          f"{len(found) or 'none'}{': ' + ', '.join(p.name for p in found) if found else ''}")
    return found[0]


def read_labelstudio(src: Path) -> Export:
    path = export_file(src)
    tasks = load_json(path)
    if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
        raise SeglabError(f"{path}: not a Label Studio JSON export (expected a list of tasks)")
    if not tasks:
        raise SeglabError(f"{path}: the export holds no tasks")
    names = set()
    for t in tasks:
        for r in _results(t):
            names.add(_label(_value(r), r["type"], f"{path}: task {t.get('id')}"))
    names.discard("background")
    labels = {n: i + 1 for i, n in enumerate(sorted(names))} | {"background": 0}
    images, items, problems, warnings = _find_images(path.parent), [], [], []
    for t in tasks:
        data = t.get("data")
        ref = data.get("image") if isinstance(data, dict) else None
        if not isinstance(ref, str):
            problems.append(f"{path}: task {t.get('id')} has no data.image; skipped")
            continue
        name = Path(unquote(urlparse(ref).path)).name
        image = images.get(name) or images.get(UPLOAD_PREFIX.sub("", name))
        if image is None:
            problems.append(f"{path}: task {t.get('id')}: image {name} not found under {path.parent}; skipped")
            continue
        items.append(Item(image.stem, image, None, _renderer(path, t.get("id"), _results(t), labels, image,
                                                             warnings)))
    return Export(path.parent, "labelstudio", ["background", *sorted(names)], None,
                  unique_names(items, problems), problems, warnings)
