"""The public benchmarks' own layouts (Cityscapes, ADE20K, PASCAL VOC 2012): detection, class tables, how raw
labels become classes, splits, `seglab data check` on them, their presets, and the bad input they can hold.
Every dataset here is built in code, a few 64x96 images in each layout, with real palette PNGs for VOC."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fakes import assert_one_line_error, run_cli
from PIL import Image

from seglab.config import load_config, preset_path
from seglab.constants import IGNORE_INDEX
from seglab.data.benchmark_classes import ADE20K150, CITYSCAPES19, VOC21
from seglab.data.dataset import SegmentationDataset, read_mask
from seglab.data.sources import open_source
from seglab.errors import SeglabError

SIZE = (64, 96)
# Cityscapes labelIds in the fake masks: void ones (0 unlabeled, 6 ground, 9 parking) and training ones.
CITY_IDS = [0, 6, 7, 8, 9, 11, 21, 23, 24, 26, 33]
TRAIN_ID = {7: 0, 8: 1, 11: 2, 21: 8, 23: 10, 24: 11, 26: 13, 33: 18}


def stripes(values: list[int], offset: int = 0, size=SIZE) -> np.ndarray:
    """(H, W) uint8 vertical stripes through ``values``, shifted by ``offset``."""
    h, w = size
    cols = np.asarray(values, np.uint8)[(np.arange(w) * len(values) // w + offset) % len(values)]
    return np.ascontiguousarray(np.broadcast_to(cols, (h, w)))


def write_image(path: Path, seed: int, size=SIZE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)


def write_gray(path: Path, values: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(values, mode="L").save(path)


def write_palette(path: Path, values: np.ndarray, palette: list[tuple[int, int, int]]) -> None:
    """A real palette ('P' mode) PNG, as VOC's SegmentationClass stores labels."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(values, mode="P")
    img.putpalette([v for rgb in palette for v in rgb])
    img.save(path)


def voc_palette() -> list[tuple[int, int, int]]:
    return [*VOC21.colors, *[(0, 0, 0)] * (255 - 21), (224, 224, 192)]  # 255: the cream border colour


def make_cityscapes(root: Path, train_ids: bool = False, test_placeholders: bool = True) -> Path:
    """leftImg8bit/{train,val,test}/<city>/ and gtFine/..., two images per split; test labels all 0."""
    for split, city in (("train", "aachen"), ("val", "frankfurt"), ("test", "berlin")):
        for i in range(2):
            stem = f"{city}_{i:06d}_000019"
            write_image(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", i)
            gt = root / "gtFine" / split / city / f"{stem}_gtFine"
            ids = np.zeros(SIZE, np.uint8) if split == "test" else stripes(CITY_IDS, i)
            if split != "test" or test_placeholders:
                write_gray(Path(f"{gt}_labelIds.png"), ids)
                if train_ids:
                    lut = np.full(256, 255, np.uint8)
                    lut[list(TRAIN_ID)] = list(TRAIN_ID.values())
                    write_gray(Path(f"{gt}_labelTrainIds.png"), lut[ids])
    return root


def make_ade20k(parent: Path) -> Path:
    """ADEChallengeData2016/images/{training,validation}/*.jpg + annotations/...: raw 0-150."""
    base = parent / "ADEChallengeData2016"
    for folder, tag in (("training", "train"), ("validation", "val")):
        for i in range(2):
            stem = f"ADE_{tag}_{i + 1:08d}"
            write_image(base / "images" / folder / f"{stem}.jpg", i)
            write_gray(base / "annotations" / folder / f"{stem}.png", stripes([0, 1, 2, 75, 150], i))
    return parent


def make_voc(parent: Path, aug: bool = False) -> Path:
    """VOCdevkit/VOC2012: JPEGImages, palette PNGs in SegmentationClass (0-20, 255 borders), split lists; test
    ids have images but no labels, as in VOC's own test set."""
    base = parent / "VOCdevkit" / "VOC2012"
    lists = base / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True)
    ids = {"train": ["2007_000032", "2007_000039"], "val": ["2007_000033", "2007_000042"],
           "test": ["2008_000001"]}
    for n, (split, names) in enumerate(ids.items()):
        (lists / f"{split}.txt").write_text("".join(f"{i}\n" for i in names))
        for k, i in enumerate(names):
            write_image(base / "JPEGImages" / f"{i}.jpg", n * 10 + k)
            if split != "test":
                write_palette(base / "SegmentationClass" / f"{i}.png", stripes([0, 1, 15, 20, 255], k), voc_palette())
    (lists / "trainval.txt").write_text("".join(f"{i}\n" for i in ids["train"] + ids["val"]))
    if aug:  # SBD-augmented labels: grayscale indices, one more training image, listed in train_aug.txt
        write_image(base / "JPEGImages" / "2008_000002.jpg", 99)
        for i in [*ids["train"], "2008_000002"]:
            write_gray(base / "SegmentationClassAug" / f"{i}.png", stripes([0, 7, 255], 1))
        (lists / "train_aug.txt").write_text("".join(f"{i}\n" for i in [*ids["train"], "2008_000002"]))
    return parent


def labels(src, split: str) -> list[np.ndarray]:
    """Training labels of a split after the LUT, as the dataset decodes them."""
    ds = SegmentationDataset(src.split(split), src.lut, src.classes.num_classes, cache=False)
    return [ds.decoded(i)[1] for i in range(len(ds))]


# --- detection and naming --------------------------------------------------------------------------------


@pytest.mark.parametrize("make,layout,sub,classes", [
    (make_cityscapes, "cityscapes", "", 19),
    (make_ade20k, "ade20k", "", 150), (make_ade20k, "ade20k", "ADEChallengeData2016", 150),
    (make_voc, "voc", "", 21), (make_voc, "voc", "VOCdevkit", 21), (make_voc, "voc", "VOCdevkit/VOC2012", 21),
])
def test_each_benchmark_is_detected_and_nameable(tmp_path, make, layout, sub, classes):
    root = make(tmp_path / "d") / sub
    auto, named = open_source(root), open_source(root, layout)
    for src in (auto, named):
        assert src.layout == layout and src.classes.num_classes == classes
        assert len(src.split("train")) == 2 and len(src.split("val")) == 2 and src.problems == []
    assert auto.fingerprint() == named.fingerprint()  # the same files whichever folder was given


def test_a_benchmark_named_for_the_wrong_folder_is_one_line(capsys, tmp_path):
    make_ade20k(tmp_path / "ade")
    for layout in ("cityscapes", "voc"):
        assert_one_line_error(run_cli(capsys, "data", "check", tmp_path / "ade", "--layout", layout),
                              str(tmp_path / "ade"), "not a")


# --- class tables ----------------------------------------------------------------------------------------


def test_official_class_tables():
    assert CITYSCAPES19.num_classes == 19 and CITYSCAPES19.names[:3] == ("road", "sidewalk", "building")
    assert CITYSCAPES19.names[6:8] == ("traffic light", "traffic sign") and CITYSCAPES19.names[-1] == "bicycle"
    assert CITYSCAPES19.colors[0] == (128, 64, 128) and CITYSCAPES19.colors[13] == (0, 0, 142)  # road, car
    assert CITYSCAPES19.colors[-1] == (119, 11, 32) and len(set(CITYSCAPES19.colors)) == 19
    assert ADE20K150.num_classes == 150 and ADE20K150.names[:4] == ("wall", "building", "sky", "floor")
    assert ADE20K150.names[7] == "bed" and ADE20K150.names[-1] == "flag"  # no stray spaces
    assert ADE20K150.colors[0] == (120, 120, 120) and ADE20K150.colors[-1] == (92, 0, 255)
    assert VOC21.num_classes == 21 and VOC21.names[0] == "background" and VOC21.names[-1] == "tvmonitor"
    assert VOC21.colors[:4] == ((0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0))
    assert VOC21.colors[15] == (192, 128, 128) and VOC21.colors[20] == (0, 64, 128)  # person, tvmonitor


# --- raw labels -> classes -------------------------------------------------------------------------------


def test_cityscapes_label_ids_become_train_ids_and_the_rest_void(tmp_path):
    src = open_source(make_cityscapes(tmp_path / "cs"))
    assert src.split("train")[0].mask.name.endswith("_gtFine_labelIds.png")
    raw = stripes(CITY_IDS, 0)
    expected = np.vectorize(lambda v: TRAIN_ID.get(int(v), IGNORE_INDEX))(raw)
    assert np.array_equal(labels(src, "train")[0], expected)
    assert (expected == IGNORE_INDEX).any() and expected.max() == IGNORE_INDEX  # 0, 6, 9 are void
    assert {int(v) for v in np.unique(labels(src, "val")[1])} == {*TRAIN_ID.values(), IGNORE_INDEX}


def test_cityscapes_train_ids_where_every_image_has_them(tmp_path):
    with_ids = open_source(make_cityscapes(tmp_path / "a", train_ids=True))
    assert with_ids.split("train")[0].mask.name.endswith("_gtFine_labelTrainIds.png")
    plain = open_source(make_cityscapes(tmp_path / "b"))
    assert np.array_equal(labels(with_ids, "train")[1], labels(plain, "train")[1])  # the same classes
    # one trainIds file missing: every image falls back to labelIds, which each has
    next((tmp_path / "a" / "gtFine" / "val").rglob("*labelTrainIds.png")).unlink()
    mixed = open_source(tmp_path / "a")
    assert mixed.split("train")[0].mask.name.endswith("_labelIds.png") and mixed.problems == []


def test_cityscapes_test_split_placeholders_and_absent_labels(tmp_path):
    src = open_source(make_cityscapes(tmp_path / "a"))  # the official test labels: all 0, i.e. all void
    assert src.split("test") is src.split("val")
    src = open_source(make_cityscapes(tmp_path / "b", test_placeholders=False))  # no gtFine/test at all
    assert src.split("test") is src.split("val") and src.problems == []
    root = make_cityscapes(tmp_path / "c")  # real test labels, where a user has them, are used
    for m in (root / "gtFine" / "test").rglob("*_labelIds.png"):
        write_gray(m, stripes(CITY_IDS))
    src = open_source(root)
    assert [s.image.parent.name for s in src.split("test")] == ["berlin", "berlin"]


def test_ade20k_zero_is_void_and_k_is_class_k_minus_one(tmp_path):
    src = open_source(make_ade20k(tmp_path / "p"))
    assert src.root.name == "ADEChallengeData2016" and src.split("test") is src.split("val")
    assert np.array_equal(labels(src, "train")[0], stripes([IGNORE_INDEX, 0, 1, 74, 149]))


def test_voc_palette_pngs_are_read_as_indices(tmp_path):
    src = open_source(make_voc(tmp_path / "p"))
    mask = src.split("train")[0].mask
    with Image.open(mask) as img:
        assert img.mode == "P"
    assert np.array_equal(read_mask(mask), stripes([0, 1, 15, 20, 255]))  # indices, not colours
    assert np.array_equal(labels(src, "train")[0], stripes([0, 1, 15, 20, IGNORE_INDEX]))
    grey = tmp_path / "grey.png"  # a palette of greys must not be read as its grey levels either
    write_palette(grey, stripes([3, 4, 5]), [(255 - i,) * 3 for i in range(256)])
    assert np.array_equal(read_mask(grey), stripes([3, 4, 5]))


def test_voc_splits_and_the_augmented_set(tmp_path):
    src = open_source(make_voc(tmp_path / "p"))
    assert [s.image.stem for s in src.split("train")] == ["2007_000032", "2007_000039"]
    assert src.split("test") is src.split("val") and src.problems == []  # VOC's test ids have no labels
    src = open_source(make_voc(tmp_path / "q", aug=True))
    train = src.split("train")
    assert len(train) == 3 and all(s.mask.parent.name == "SegmentationClassAug" for s in train)
    assert np.array_equal(labels(src, "train")[2], stripes([0, 7, IGNORE_INDEX], 1))
    assert src.split("val")[0].mask.parent.name == "SegmentationClass"  # no Aug mask there: the original


# --- seglab data check -----------------------------------------------------------------------------------


@pytest.mark.parametrize("make,layout,classes", [(make_cityscapes, "cityscapes", 19), (make_ade20k, "ade20k", 150),
                                                (make_voc, "voc", 21)])
def test_data_check_on_each_benchmark(capsys, tmp_path, make, layout, classes):
    r = run_cli(capsys, "data", "check", make(tmp_path / "d"))
    assert r.code == 0, r.out + r.err
    assert f"{layout} layout, {classes} classes" in r.out and "no problems found" in r.out
    lines = r.out.splitlines()
    assert any(ln.split()[:2] == ["train", "2"] and "64x96 (2)" in ln for ln in lines)
    assert "test is the val split" in r.out  # said, so nobody takes those scores for test scores
    assert "raw label values in train:" in r.out


def test_data_check_reports_bad_benchmark_files(capsys, tmp_path):
    root = make_voc(tmp_path / "p")
    base = root / "VOCdevkit" / "VOC2012"
    write_palette(base / "SegmentationClass" / "2007_000039.png", stripes([0, 30]), voc_palette())  # index 30
    write_palette(base / "SegmentationClass" / "2007_000033.png", stripes([0], size=(32, 96)), voc_palette())
    with open(base / "ImageSets" / "Segmentation" / "val.txt", "a") as f:
        f.write("2007_999999\n2007_000042\n")  # an id without an image, and one listed twice
    r = run_cli(capsys, "data", "check", root)
    assert r.code == 1, r.out + r.err
    assert "2007_000039.png: label value 30 outside the valid range 0–20" in r.out
    assert "2007_000033.png: mask is 32x96 but its image" in r.out
    assert "ImageSets/Segmentation/val.txt: id '2007_999999' has no image" in r.out
    assert "val.txt: line 4: id '2007_000042' already listed on line 2" in r.out

    ade = make_ade20k(tmp_path / "a") / "ADEChallengeData2016"
    write_image(ade / "images" / "training" / "ADE_train_00000001.png", 5)  # same name, another extension
    write_gray(ade / "annotations" / "training" / "ADE_train_00000009.png", stripes([0]))  # no image
    r = run_cli(capsys, "data", "check", tmp_path / "a")
    assert r.code == 1 and "ADE_train_00000001.png: same name as" in r.out
    assert "ADE_train_00000009.png: label file without image" in r.out

    cs = make_cityscapes(tmp_path / "c")
    next((cs / "gtFine" / "train").rglob("*_labelIds.png")).unlink()
    write_gray(next((cs / "gtFine" / "val").rglob("*_labelIds.png")), stripes([7, 40]))  # 40: no such labelId
    write_image(cs / "leftImg8bit" / "val" / "zurich" / "frankfurt_000000_000019_leftImg8bit.png", 7)
    r = run_cli(capsys, "data", "check", cs)
    assert r.code == 1 and "no label file (expected gtFine/train/aachen/" in r.out
    assert "label value 40 outside the valid range" in r.out
    assert "val/zurich/frankfurt_000000_000019_leftImg8bit.png: same name as leftImg8bit/val/frankfurt/" in r.out


# --- bad input -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec,name", [("names: [bg, road, void]\nignore_index: 2\n", "void"),
                                       ("names: [bg, fg]\nvalues: [0, 255]\nignore_index: 255\n", "fg")])
def test_ignore_index_that_is_also_a_class_is_one_line(capsys, tmp_path, spec, name):
    root = tmp_path / "mine"
    write_image(root / "images" / "a.png", 0)
    write_gray(root / "masks" / "a.png", stripes([0, 1]))
    (root / "classes.yaml").write_text(spec)
    with pytest.raises(SeglabError, match=f"also the mask value of class '{name}'"):
        open_source(root)
    assert_one_line_error(run_cli(capsys, "data", "check", root), str(root / "classes.yaml"), "ignore_index")


def test_classes_file_is_refused_for_a_benchmark(tmp_path):
    root = make_ade20k(tmp_path / "p")
    (tmp_path / "classes.yaml").write_text("names: [a, b]\n")
    with pytest.raises(SeglabError, match="official classes"):
        open_source(root, classes_file=tmp_path / "classes.yaml")


# --- presets ---------------------------------------------------------------------------------------------


def test_benchmark_presets_follow_the_published_schedules():
    cs, ade = load_config(preset_path("cityscapes")), load_config(preset_path("ade20k"))
    assert (cs.data.layout, cs.data.size, cs.data.batch_size) == ("cityscapes", (512, 1024), 8)
    assert (cs.train.optimizer, cs.train.scheduler, cs.train.lr, cs.train.steps) == ("sgd", "poly", 0.01, 80000)
    assert (ade.data.layout, ade.data.size, ade.data.batch_size) == ("ade20k", (512, 512), 16)
    assert (ade.train.optimizer, ade.train.scheduler, ade.train.steps) == ("adamw", "poly", 160000)
    assert ade.train.lr == pytest.approx(6e-5)


@pytest.mark.slow
@pytest.mark.parametrize("preset,make", [("cityscapes", make_cityscapes), ("ade20k", make_ade20k)])
def test_benchmark_preset_trains_a_few_steps_on_its_layout(capsys, tmp_path, preset, make):
    r = run_cli(capsys, "train", "--preset", preset, "--data", make(tmp_path / "d"), "--size", "64x96",
                "--eval-size", "64x96", "--batch", "2", "--steps", "2", "--model", "scratch:simplesegnet",
                "--weights", "none", "--out", tmp_path / "runs", "--name", "r", "--set", "train.val_points=1")
    assert r.code == 0, r.err[-3000:]
    import json
    metrics = json.loads((tmp_path / "runs" / "r" / "metrics.json").read_text())
    assert len(metrics["class_names"]) == {"cityscapes": 19, "ade20k": 150}[preset]
