"""Readers of the public benchmarks as their archives unpack: Cityscapes, ADE20K (ADEChallengeData2016) and
PASCAL VOC 2012, with their official class tables (benchmark_classes.py).

Why a test split that is val: none of the three publishes test labels (Cityscapes ships placeholder masks
that are all void, ADEChallengeData2016 has no test folder, VOC's test ids have no masks), and their published
results are val scores. A run still scores "test" at its end, so there ``splits["test"]`` is the val list itself
(the same object), and ``seglab data check`` says so. Labelled test pairs, where a user has them, are used.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from seglab.constants import IGNORE_INDEX
from seglab.data.benchmark_classes import ADE20K150, CITYSCAPES19, VOC21, ade20k_lut, cityscapes_label_id_lut
from seglab.data.classes import identity_lut
from seglab.data.samples import SPLITS, DataSource, Sample, _pair
from seglab.errors import SeglabError, read_user_text

_CITY_IMAGE = "_leftImg8bit.png"


def _rel(base: Path, p: Path) -> str:
    return p.relative_to(base).as_posix() if p.is_relative_to(base) else str(p)


def _no_classes_file(layout: str, classes_file: Path | None) -> None:
    if classes_file is not None:
        raise SeglabError(f"{classes_file}: the {layout} layout has its official classes, so data.classes_file "
                          "does not apply; use data.remap to merge or drop classes")


def _all_void(path: Path, lut: np.ndarray) -> bool:
    """Whether a mask holds only void values (Cityscapes' test placeholders); unreadable counts as not void
    (the data check and the dataset name the file then)."""
    try:
        with Image.open(path) as img:
            raw = np.asarray(img)
    except Exception:  # noqa: BLE001 - PIL raises many types; the dataset's reader reports them
        return False
    return raw.dtype == np.uint8 and raw.ndim == 2 and bool((lut[raw] == IGNORE_INDEX).all())


def _val_as_test(splits: dict[str, list[Sample]]) -> None:
    """Score val as test when the test split has no labelled pairs (see the module docstring)."""
    if not splits.get("test") and splits.get("val"):
        splits["test"] = splits["val"]


# --- Cityscapes --------------------------------------------------------------------------------------------


def _cityscapes_images(base: Path, split: str, problems: list[str]) -> list[Path]:
    """``leftImg8bit/<split>/<city>/*_leftImg8bit.png``, one per name (a name in two cities is a problem)."""
    seen: dict[str, Path] = {}
    for p in sorted((base / "leftImg8bit" / split).glob(f"*/*{_CITY_IMAGE}")):
        if p.name in seen:
            problems.append(f"{_rel(base, p)}: same name as {_rel(base, seen[p.name])}; ignored")
        else:
            seen[p.name] = p
    return list(seen.values())


def read_cityscapes(root: Path, classes_file: Path | None = None) -> DataSource:
    """``leftImg8bit/<split>/<city>/<name>_leftImg8bit.png`` with ``gtFine/<split>/<city>/<name>_gtFine_
    labelTrainIds.png`` (trainIds 0-18, 255 void) when every labelled image has one, else ``_gtFine_labelIds.png``
    (the 19 training labelIds -> 0-18, every other labelId void)."""
    _no_classes_file("cityscapes", classes_file)
    if not (root / "leftImg8bit").is_dir():
        raise SeglabError(f"{root}: not a Cityscapes folder (expected leftImg8bit/ and gtFine/ in it)")
    problems: list[str] = []
    images = {s: _cityscapes_images(root, s, problems) for s in SPLITS if (root / "leftImg8bit" / s).is_dir()}

    def label(image: Path, split: str, kind: str) -> Path:
        stem = image.name[: -len(_CITY_IMAGE)]
        return root / "gtFine" / split / image.parent.name / f"{stem}_gtFine_{kind}.png"

    labelled = [(s, p) for s, ps in images.items() for p in ps if (root / "gtFine" / s).is_dir()]
    kind = "labelTrainIds" if labelled and all(label(p, s, "labelTrainIds").is_file() for s, p in labelled) \
        else "labelIds"
    lut = identity_lut(CITYSCAPES19.num_classes) if kind == "labelTrainIds" else cityscapes_label_id_lut()
    splits: dict[str, list[Sample]] = {}
    for split, paths in images.items():
        if paths and not (root / "gtFine" / split).is_dir():
            if split != "test":  # test labels are not published: leaving them out is what the data says
                problems.append(f"gtFine/{split}/: label folder missing, so the {len(paths)} images in "
                                f"leftImg8bit/{split}/ have no labels")
            continue
        splits[split] = [Sample(p, label(p, split, kind)) for p in paths if label(p, split, kind).is_file()]
        problems += [f"{_rel(root, p)}: no label file (expected {_rel(root, label(p, split, kind))})"
                     for p in paths if not label(p, split, kind).is_file()]
    test = splits.get("test")
    if test and _all_void(test[0].mask, lut):  # the official placeholders: every test mask is void
        del splits["test"]
    _val_as_test(splits)
    return DataSource(root, "cityscapes", splits, CITYSCAPES19, lut, None, problems)


# --- ADE20K ------------------------------------------------------------------------------------------------

_ADE_SPLITS = {"train": "training", "val": "validation"}


def read_ade20k(root: Path, classes_file: Path | None = None) -> DataSource:
    """``images/{training,validation}/*.jpg`` with ``annotations/<same>/*.png``: raw 0 void, raw k class k-1."""
    _no_classes_file("ade20k", classes_file)
    base = _ade20k_base(root)
    if base is None:
        raise SeglabError(f"{root}: not an ADE20K folder (expected images/training/ and annotations/training/ in "
                          "it or in ADEChallengeData2016/)")
    root = base
    splits, problems = {}, []
    for split, folder in _ADE_SPLITS.items():
        if (root / "images" / folder).is_dir():
            splits[split], found = _pair(root, root / "images" / folder, root / "annotations" / folder)
            problems += found
    _val_as_test(splits)
    return DataSource(root, "ade20k", splits, ADE20K150, ade20k_lut(), None, problems)


def _ade20k_base(root: Path) -> Path | None:
    for base in (root, root / "ADEChallengeData2016"):
        if (base / "annotations").is_dir() and any((base / "images" / f).is_dir() for f in _ADE_SPLITS.values()):
            return base
    return None


# --- PASCAL VOC 2012 ---------------------------------------------------------------------------------------


def _voc_base(root: Path) -> Path | None:
    for base in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
        if (base / "JPEGImages").is_dir() and (base / "ImageSets" / "Segmentation").is_dir():
            return base
    return None


def _voc_ids(base: Path, list_file: Path, problems: list[str]) -> list[str]:
    """The ids of one split list, one per line; a repeated id is listed once and reported."""
    ids: dict[str, int] = {}
    for n, line in enumerate(read_user_text(list_file).splitlines(), start=1):
        words = line.split()
        if not words:
            continue
        if words[0] in ids:
            problems.append(f"{_rel(base, list_file)}: line {n}: id '{words[0]}' already listed on line "
                            f"{ids[words[0]]}; counted once")
        else:
            ids[words[0]] = n
    return list(ids)


def read_voc(root: Path, classes_file: Path | None = None) -> DataSource:
    """``JPEGImages/<id>.jpg`` with palette PNGs ``SegmentationClass/<id>.png`` (palette index = class, 255
    void), or the SBD-augmented grayscale ``SegmentationClassAug/<id>.png`` where present; splits from
    ``ImageSets/Segmentation/{train,val,test}.txt`` (train from ``train_aug.txt`` when the augmented set is
    there and lists it)."""
    _no_classes_file("voc", classes_file)
    base = _voc_base(root)
    if base is None:
        raise SeglabError(f"{root}: not a VOC2012 folder (expected JPEGImages/ and ImageSets/Segmentation/ in "
                          "it, in VOC2012/ or in VOCdevkit/VOC2012/)")
    lists, aug = base / "ImageSets" / "Segmentation", base / "SegmentationClassAug"
    splits, problems = {}, []
    for split in SPLITS:
        list_file = lists / f"{split}.txt"
        if split == "train" and aug.is_dir() and (lists / "train_aug.txt").is_file():
            list_file = lists / "train_aug.txt"
        if not list_file.is_file():
            continue
        samples, unlabelled = [], []
        for i in _voc_ids(base, list_file, problems):
            image = base / "JPEGImages" / f"{i}.jpg"
            masks = [m for m in (aug / f"{i}.png", base / "SegmentationClass" / f"{i}.png") if m.is_file()]
            if not image.is_file():
                problems.append(f"{_rel(base, list_file)}: id '{i}' has no image ({_rel(base, image)} not found)")
            elif masks:
                samples.append(Sample(image, masks[0]))
            else:
                unlabelled.append(i)
        if samples or split != "test":  # an all-unlabelled test list is VOC's own test set, not a problem
            problems += [f"{_rel(base, list_file)}: id '{i}' has no label (SegmentationClass/{i}.png not found)"
                         for i in unlabelled]
        splits[split] = samples
    if not splits:
        raise SeglabError(f"{lists}: no split lists (train.txt, val.txt) found")
    _val_as_test(splits)
    lut = identity_lut(VOC21.num_classes)
    return DataSource(base, "voc", splits, VOC21, lut, None, problems)


READERS = {"cityscapes": read_cityscapes, "ade20k": read_ade20k, "voc": read_voc}


def detect_benchmark(root: Path) -> str | None:
    """Which benchmark's archive layout ``root`` has (or holds one level down), if any."""
    if (root / "leftImg8bit").is_dir():
        return "cityscapes"
    if _ade20k_base(root):
        return "ade20k"
    if _voc_base(root):
        return "voc"
    return None
