"""COCO instances JSON (``annotations/instances_*.json`` + image folders, or Roboflow's
``<split>/_annotations.coco.json`` with the images beside it) -> semantic masks.

Categories become classes 1..n in id order, background 0. Segmentations may be polygons, uncompressed RLE
(``counts`` a list) or compressed RLE (``counts`` a string); pycocotools decodes all three, as COCO's own
``annToMask`` does. Crowd regions (``iscrowd: 1``) are void unless ``crowd="label"``. Overlaps: the smaller
region wins (see ``common.draw``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from seglab.data.exports.common import (
    Export,
    Item,
    Shape,
    check_size,
    draw,
    load_json,
    polygon_mask,
    split_from_name,
    unique_names,
    void_or,
)
from seglab.errors import SeglabError


def coco_files(root: Path) -> list[Path]:
    """The annotation files of an export folder: instances_*.json under annotations/ (any *.json there when
    none is so named), or Roboflow's _annotations.coco.json at the top or one folder down."""
    ann = root / "annotations"
    found = sorted(ann.glob("instances_*.json")) or sorted(ann.glob("*.json"))
    return found or sorted([*root.glob("_annotations.coco.json"), *root.glob("*/_annotations.coco.json")])


def _image_dirs(root: Path, json_path: Path) -> list[Path]:
    """Where a file's images may lie: beside it (Roboflow), or for instances_train2017.json in train2017/,
    images/train2017/, images/ or the export's top folder."""
    if json_path.parent != root / "annotations":
        return [json_path.parent]
    tag = json_path.stem.removeprefix("instances_")
    return [root / tag, root / "images" / tag, root / "images", root]


def _categories(files: dict[Path, dict]) -> tuple[list[int], list[str]]:
    """Category ids in id order and their names, the same in every file; Roboflow's placeholder category
    (the project's name, used only as the other categories' supercategory and by no annotation) is dropped."""
    cats: dict[int, str] = {}
    used, supers = set(), set()
    for path, data in files.items():
        for c in data.get("categories", []):
            if not isinstance(c, dict) or not isinstance(c.get("id"), int) or "name" not in c:
                raise SeglabError(f"{path}: a category without an integer id and a name: {c!r}")
            if cats.setdefault(c["id"], str(c["name"])) != str(c["name"]):
                raise SeglabError(f"{path}: category {c['id']} is '{c['name']}' here but '{cats[c['id']]}' in "
                                  "another annotation file; the splits must share their categories")
            if c.get("supercategory") not in (None, "none", c["name"]):
                supers.add(str(c["supercategory"]))
        used |= {a.get("category_id") for a in data.get("annotations", []) if isinstance(a, dict)}
    ids = sorted(i for i in cats if i in used or cats[i] not in supers)
    if not ids:
        raise SeglabError(f"{next(iter(files))}: no categories; a COCO file lists them under 'categories'")
    return ids, [cats[i] for i in ids]


def rle_counts(counts: bytes) -> list[int]:
    """The run lengths of a compressed COCO RLE string, decoded as pycocotools' ``rleFrString`` does (5 bits
    a character from '0', a continuation bit, a sign bit, runs from the third on relative to the one two
    before). pycocotools itself leaves the pixels an RLE too short for its image uninitialised, so the
    lengths are checked here first. Raises ValueError on a truncated string."""
    runs: list[int] = []
    p = 0
    while p < len(counts):
        x, k, more = 0, 0, True
        while more:
            if p >= len(counts):
                raise ValueError("the string ends inside a run length")
            c = counts[p] - 48
            if not 0 <= c < 64:
                raise ValueError(f"character {chr(counts[p])!r} is not an RLE character")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(runs) > 2:
            x += runs[-2]
        runs.append(x)
    return runs


def _segmentation(seg, height: int, width: int, where: str, warnings: list[str]) -> np.ndarray:
    from pycocotools import mask as cocomask

    if isinstance(seg, list):
        return polygon_mask(seg, height, width, where, warnings)
    if not isinstance(seg, dict) or "counts" not in seg or "size" not in seg:
        raise SeglabError(f"{where}: segmentation is neither polygons nor an RLE with size and counts")
    size = seg["size"]
    if not isinstance(size, list) or len(size) != 2:
        raise SeglabError(f"{where}: RLE size {size!r} is not [height, width]")
    if size != [height, width]:
        raise SeglabError(f"{where}: RLE of size {size[1]}x{size[0]} (WxH) for an image of {width}x{height}")
    counts = seg["counts"]
    try:
        if isinstance(counts, list):  # uncompressed
            if not all(isinstance(c, int) and not isinstance(c, bool) for c in counts):
                raise TypeError("counts must be integers")
            runs = counts
        elif isinstance(counts, (str, bytes)):
            counts = counts.encode() if isinstance(counts, str) else counts
            runs = rle_counts(counts)
        else:
            raise TypeError("counts must be a list of run lengths or an RLE string")
        if any(r < 0 for r in runs) or sum(runs) != height * width:
            raise ValueError(f"run lengths cover {sum(runs)} pixels, the image has {height * width}")
        rle = cocomask.frPyObjects(seg, height, width) if isinstance(counts, list) else \
            {"size": [height, width], "counts": counts}
        return cocomask.decode(rle)
    except (TypeError, ValueError, UnicodeEncodeError) as err:
        raise SeglabError(f"{where}: cannot decode the RLE ({err})") from None


def _renderer(path: Path, image: dict, anns: list[dict], labels: dict[int, int], image_file: Path,
              crowd_label: bool, warnings: list[str]):
    h, w = image["height"], image["width"]

    def render() -> np.ndarray:
        check_size(image_file, h, w, f"{path}: image {image['id']}")
        shapes = []
        for order, a in enumerate(anns):
            where = f"{path}: annotation {a.get('id')} of {image['file_name']}"
            if a.get("category_id") not in labels:
                raise SeglabError(f"{where}: unknown category id {a.get('category_id')!r}")
            label = void_or(labels[a["category_id"]], bool(a.get("iscrowd")), crowd_label)
            shapes.append(Shape(_segmentation(a.get("segmentation"), h, w, where, warnings), label, order))
        # crowd (void) regions first: an instance drawn inside a crowd keeps its class
        void = [s for s in shapes if s.label == 255]
        out = draw([s for s in shapes if s.label != 255], h, w)
        for s in void:
            out[(s.mask > 0) & (out == 0)] = 255
        return out

    return render


def read_coco(root: Path, crowd: str = "void") -> Export:
    """All images of all annotation files (splits named from the file or folder names)."""
    files = {p: load_json(p) for p in coco_files(root)}
    if not files:
        raise SeglabError(f"{root}: no COCO annotation file (expected annotations/instances_*.json or "
                          "<split>/_annotations.coco.json)")
    for path, data in files.items():
        if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
                or not isinstance(data.get("annotations", []), list):
            raise SeglabError(f"{path}: not a COCO instances file (expected an object with 'images', "
                              "'annotations' and 'categories' lists)")
    ids, names = _categories(files)
    labels = {cid: i + 1 for i, cid in enumerate(ids)}
    items, problems, warnings = [], [], []
    for path, data in files.items():
        split = split_from_name(path.stem if path.parent == root / "annotations" else path.parent.name)
        by_image: dict = {}
        for a in data.get("annotations", []):
            key = a.get("image_id") if isinstance(a, dict) else None
            by_image.setdefault(key if isinstance(key, (int, str)) else None, []).append(a)
        dirs = _image_dirs(root, path)
        for image in data["images"]:
            if not isinstance(image, dict) or not {"id", "file_name", "width", "height"} <= image.keys():
                problems.append(f"{path}: image entry without id, file_name, width and height: {image!r:.80}")
                continue
            if not isinstance(image["id"], (int, str)) or not all(
                    isinstance(image[k], int) and not isinstance(image[k], bool) and image[k] > 0
                    for k in ("width", "height")):
                problems.append(f"{path}: image {image.get('file_name')!r}: id must be a number or text and "
                                "width and height positive whole numbers")
                continue
            rel = Path(str(image["file_name"]))
            found = next((d / rel for d in dirs if (d / rel).is_file()), None) or \
                next((d / rel.name for d in dirs if (d / rel.name).is_file()), None)
            if found is None:
                problems.append(f"{path}: image {rel} is listed but not found (looked in "
                                f"{', '.join(str(d) for d in dirs)})")
                continue
            render = _renderer(path, image, by_image.get(image["id"], []), labels, found, crowd == "label",
                               warnings)
            items.append(Item(found.stem, found, split, render))
        if None in by_image:
            problems.append(f"{path}: {len(by_image[None])} annotations are not objects with an image_id")
    if not items and not problems:
        raise SeglabError(f"{root}: the COCO export lists no images")
    return Export(root, "coco", ["background", *names], None, unique_names(items, problems), problems, warnings)
