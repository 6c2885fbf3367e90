"""Annotation-tool exports: COCO, CVAT segmentation masks and Label Studio, read as layouts or imported
once into the folder layout; the split manifest. Fixtures are written with the real libraries (pycocotools
for RLE, OpenCV contours for polygons, PIL for colour masks) following each format's specification."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from fakes import run_cli
from PIL import Image
from pycocotools import mask as cocomask

from seglab.data import open_source
from seglab.data.exports import import_export, read_export
from seglab.data.exports.labelstudio import decode_rle
from seglab.data.splits import assign, split_source

H, W = 120, 160


def label_map(seed: int) -> np.ndarray:
    """Smooth shapes: a disc of class 1 and an ellipse of class 2 that never touch."""
    rng = np.random.default_rng(seed)
    m = np.zeros((H, W), np.uint8)
    cv2.circle(m, (int(rng.integers(35, 45)), int(rng.integers(45, 75))), int(rng.integers(22, 30)), 1, -1)
    cv2.ellipse(m, (int(rng.integers(110, 120)), 60), (28, 40), int(rng.integers(0, 90)), 0, 360, 2, -1)
    return m


def write_image(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (H, W, 3), np.uint8)).save(path)


def uncompressed_rle(binary: np.ndarray) -> dict:
    """COCO's uncompressed RLE: run lengths in column-major order, starting with a run of zeros."""
    flat = binary.T.ravel()
    edges = np.flatnonzero(np.diff(flat)) + 1
    counts = np.diff(np.r_[0, edges, flat.size]).tolist()
    return {"size": [H, W], "counts": ([0] if flat[0] else []) + counts}


def segmentation(binary: np.ndarray, kind: str):
    if kind == "rle":
        rle = cocomask.encode(np.asfortranarray(binary.astype(np.uint8)))
        return {"size": rle["size"], "counts": rle["counts"].decode()}
    if kind == "counts":
        return uncompressed_rle(binary)
    return [p.ravel().tolist() for p in outlines(binary)]


def outlines(binary: np.ndarray) -> list[np.ndarray]:
    """Polygons around the pixels' edges, as an annotator draws them (COCO coordinates are pixel corners:
    pixel x spans x..x+1). cv2.findContours traces pixel centres, which would lose half a pixel all round,
    so it traces a 4x enlarged mask, whose boundary pixels' centres lie 1/8 pixel inside the edges."""
    big = cv2.resize(binary.astype(np.uint8), None, fx=4, fy=4, interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(big, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    return [(c.reshape(-1, 2) + 0.5) / 4 for c in contours]


def coco_json(path: Path, masks: dict[str, np.ndarray], kinds: list[str], categories=None) -> None:
    images, anns = [], []
    for i, (name, m) in enumerate(masks.items(), start=1):
        images.append({"id": i, "file_name": name, "width": W, "height": H})
        for label in (1, 2):
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": 10 * label, "iscrowd": 0,
                         "segmentation": segmentation(m == label, kinds[(i + label) % len(kinds)])})
    cats = categories or [{"id": 20, "name": "ellipse"}, {"id": 10, "name": "disc"}]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))


def roboflow(root: Path, kinds: list[str]) -> dict[str, np.ndarray]:
    """Roboflow's COCO export: <split>/_annotations.coco.json with the images beside it."""
    truth = {}
    for k, folder in enumerate(("train", "valid", "test")):
        masks = {f"{folder}{i}.jpg": label_map(10 * k + i) for i in range(3 if folder == "train" else 1)}
        for i, name in enumerate(masks):
            write_image(root / folder / name, 10 * k + i)
        coco_json(root / folder / "_annotations.coco.json", masks, kinds)
        truth |= {Path(n).stem: m for n, m in masks.items()}
    return truth


def read_masks(dst: Path) -> dict[str, np.ndarray]:
    return {p.stem: np.asarray(Image.open(p)) for p in dst.glob("masks/**/*.png")}


def test_coco_rle_round_trips_exactly_with_splits_from_folder_names(tmp_path):
    truth = roboflow(tmp_path / "rf", ["rle", "counts"])
    report = import_export(read_export("coco", tmp_path / "rf"), tmp_path / "ds")
    assert report.counts == {"test": 1, "train": 3, "val": 1} and not report.skipped
    got = read_masks(tmp_path / "ds")
    assert got.keys() == truth.keys() and all(np.array_equal(got[k], truth[k]) for k in truth)
    spec = yaml.safe_load((tmp_path / "ds" / "classes.yaml").read_text())
    assert spec["names"] == ["background", "disc", "ellipse"]  # category ids 10, 20 in id order -> 1, 2
    src = open_source(tmp_path / "ds")
    assert src.layout == "folder" and len(src.split("val")) == 1 and src.classes.num_classes == 3
    assert sorted(p.name for p in (tmp_path / "ds" / "images" / "train").iterdir()) == \
        ["train0.jpg", "train1.jpg", "train2.jpg"]


def test_coco_polygons_agree_with_the_masks_and_read_directly(tmp_path):
    root = tmp_path / "coco"
    masks = {f"img{i}.png": label_map(i) for i in range(4)}
    for i, name in enumerate(masks):
        write_image(root / "images" / "train2017" / name, i)
    coco_json(root / "annotations" / "instances_train2017.json", masks, ["poly"])
    src = open_source(root)  # detected, rasterised on open
    assert src.layout == "coco" and len(src.split("train")) == 4 and not src.problems
    for s in src.split("train"):
        got, want = np.asarray(Image.open(s.mask)), masks[s.image.name]
        assert (got == want).mean() >= 0.99
        for label in (1, 2):  # each shape keeps its area within a thin border
            assert abs(int((got == label).sum()) - int((want == label).sum())) < 0.02 * (want == label).sum()


def test_coco_overlaps_the_smaller_region_wins_and_crowds_are_void_or_labelled(tmp_path):
    root = tmp_path / "coco"
    write_image(root / "train" / "a.png", 0)
    big, small, crowd = (np.zeros((H, W), np.uint8) for _ in range(3))
    big[10:100, 10:150] = 1
    small[40:60, 40:60] = 1
    crowd[0:30, 0:30] = 1
    anns = [{"id": 1, "image_id": 1, "category_id": 2, "segmentation": segmentation(small, "rle")},
            {"id": 2, "image_id": 1, "category_id": 1, "segmentation": segmentation(big, "rle")},
            {"id": 3, "image_id": 1, "category_id": 1, "iscrowd": 1, "segmentation": segmentation(crowd, "counts")}]
    (root / "train" / "_annotations.coco.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.png", "width": W, "height": H}], "annotations": anns,
        "categories": [{"id": 1, "name": "table"}, {"id": 2, "name": "cup"}]}))
    m = read_export("coco", root).items[0].render()
    assert m[50, 50] == 2 and m[80, 80] == 1 and m[110, 5] == 0  # the cup on the table stays a cup
    assert m[5, 5] == 255 and m[20, 20] == 1  # crowd is void, except where an instance lies on it
    labelled = read_export("coco", root, crowd="label").items[0].render()
    assert labelled[5, 5] == 1


def test_cvat_segmentation_mask_export(tmp_path):
    root = tmp_path / "cvat"
    colors = {"background": (0, 0, 0), "car": (250, 50, 83), "road": (128, 64, 128)}
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "labelmap.txt").write_text("# label:color_rgb:parts:actions\n" +
                                       "".join(f"{n}:{','.join(map(str, c))}::\n" for n, c in colors.items()))
    palette = np.array(list(colors.values()), np.uint8)
    truth = {}
    for i, split in enumerate(("train", "train", "val")):
        name = f"frame_{i:06d}"
        truth[name] = label_map(i)
        write_image(root / "JPEGImages" / f"{name}.jpg", i)
        (root / "SegmentationClass").mkdir(exist_ok=True)
        Image.fromarray(palette[truth[name]]).save(root / "SegmentationClass" / f"{name}.png")  # RGB colours
        with open(root / "ImageSets" / "Segmentation" / f"{split}.txt", "a") as f:
            f.write(name + "\n")
    report = import_export(read_export("cvat-mask", root), tmp_path / "ds")
    assert report.counts == {"train": 2, "val": 1} and not report.skipped
    got = read_masks(tmp_path / "ds")
    assert all(np.array_equal(got[k], truth[k]) for k in truth)
    spec = yaml.safe_load((tmp_path / "ds" / "classes.yaml").read_text())
    assert spec["names"] == list(colors) and spec["colors"][1] == [250, 50, 83]
    assert open_source(root).layout == "cvat-mask"


def encode_rle(values: np.ndarray, word: int = 8, sizes=(3, 6, 9, 12)) -> list[int]:
    """Label Studio's brush RLE (thi-ng rle-pack), written from its specification: header, then runs of
    equal values as repeat chunks and single values as literal chunks."""
    bits = [f"{values.size:032b}", f"{word - 1:05b}", *(f"{s - 1:04b}" for s in sizes)]
    flat, i = values.ravel(), 0
    while i < flat.size:
        j = i
        while j + 1 < flat.size and flat[j + 1] == flat[i] and j + 1 - i < 2 ** sizes[-1]:
            j += 1
        n = j - i + 1
        k = next(k for k, s in enumerate(sizes) if n - 1 < 2 ** s)
        if n == 1:  # a literal chunk of one value
            bits += ["0", f"{k:02b}", f"{0:0{sizes[k]}b}", f"{flat[i]:0{word}b}"]
        else:
            bits += ["1", f"{k:02b}", f"{n - 1:0{sizes[k]}b}", f"{flat[i]:0{word}b}"]
        i = j + 1
    stream = "".join(bits)
    stream += "0" * (-len(stream) % 8)
    return [int(stream[p:p + 8], 2) for p in range(0, len(stream), 8)]


def test_a_label_map_saved_with_a_byte_order_mark_and_crlf_reads(tmp_path):
    """Windows editors start UTF-8 files with a byte-order mark: CVAT's header comment must still be one."""
    from seglab.data.exports.cvat import read_labelmap

    path = tmp_path / "labelmap.txt"
    path.write_bytes("\ufeff# label:color_rgb:parts:actions\r\nbackground:0,0,0::\r\ncar:250,50,83::\r\n".encode())
    assert read_labelmap(path) == (["background", "car"], [(0, 0, 0), (250, 50, 83)])


def test_labelstudio_rle_encoder_and_decoder_agree():
    values = np.random.default_rng(0).integers(0, 3, 500).astype(np.uint8).repeat(
        np.random.default_rng(1).integers(1, 9, 500))
    assert np.array_equal(decode_rle(encode_rle(values)), values)


def labelstudio(root: Path) -> dict[str, np.ndarray]:
    """Two tasks, each a brush (the disc) and a polygon (the ellipse), the first annotation cancelled."""
    tasks, truth = [], {}
    for i in range(2):
        truth[f"img{i}"] = m = label_map(i)
        write_image(root / f"img{i}.png", i)
        rgba = np.zeros((H, W, 4), np.uint8)
        rgba[m == 1] = 255
        points = [[100 * x / W, 100 * y / H] for x, y in outlines(m == 2)[0].tolist()]
        result = [
            {"id": "b", "type": "brushlabels", "original_width": W, "original_height": H,
             "value": {"format": "rle", "rle": encode_rle(rgba), "brushlabels": ["disc"]}},
            {"id": "p", "type": "polygonlabels", "original_width": W, "original_height": H,
             "value": {"points": points, "polygonlabels": ["ellipse"]}},
            {"id": "c", "type": "choices", "value": {"choices": ["ok"]}},
        ]
        tasks.append({"id": i + 1, "data": {"image": f"/data/upload/1/0a1b2c3d-img{i}.png"},
                      "annotations": [{"was_cancelled": True, "result": []}, {"result": result}]})
    (root / "export.json").write_text(json.dumps(tasks))
    return truth


def test_labelstudio_brush_and_polygon_results(tmp_path):
    truth = labelstudio(tmp_path / "ls")
    assert open_source(tmp_path / "ls").layout == "labelstudio"
    report = import_export(read_export("labelstudio", tmp_path / "ls" / "export.json"), tmp_path / "ds")
    assert report.counts == {"": 2} and not report.skipped  # no subsets: an unsplit folder
    got = read_masks(tmp_path / "ds")
    for k, want in truth.items():
        assert np.array_equal(got[k] == 1, want == 1)  # the brush layer exactly
        assert (got[k] == want).mean() >= 0.99  # the polygon within its border
    assert yaml.safe_load((tmp_path / "ds" / "classes.yaml").read_text())["names"] == ["background", "disc", "ellipse"]


def test_labelstudio_and_cvat_bad_items_are_skipped_with_their_reason(tmp_path, capsys):
    labelstudio(tmp_path / "ls")
    tasks = json.loads((tmp_path / "ls" / "export.json").read_text())
    tasks[0]["annotations"][1]["result"][0]["value"]["rle"] = encode_rle(np.zeros((H - 1, W, 4), np.uint8))
    (tmp_path / "ls" / "export.json").write_text(json.dumps(tasks))
    r = run_cli(capsys, "data", "import", "labelstudio", tmp_path / "ls", tmp_path / "ds")
    assert r.code == 1 and "export.json: task 1, result b: cannot decode the brush RLE of a 160x120 image (it " \
        "holds 76160 values, the image's RGBA layer needs 76800)" in r.err, r.err
    assert r.err.count("skipped: ") == 1 and "imported 1 images (unsplit)" in r.out and "skipped 1" in r.out
    # a header claiming 4 billion values is refused from the header, before anything is allocated
    huge = bytes(encode_rle(np.zeros((H, W, 4), np.uint8)))
    huge = b"\xff\xff\xff\xff" + huge[4:]
    with pytest.raises(ValueError, match="holds 4294967295 values"):
        decode_rle(list(huge), expected=H * W * 4)
    root = tmp_path / "cvat"
    (root / "SegmentationClass").mkdir(parents=True)
    (root / "labelmap.txt").write_text("background:0,0,0::\ncar:250,50,83::\n")
    write_image(root / "JPEGImages" / "a.jpg", 0)
    Image.fromarray(np.full((H, W, 3), 7, np.uint8)).save(root / "SegmentationClass" / "a.png")
    r = run_cli(capsys, "data", "import", "cvat-mask", root, tmp_path / "ds2")
    assert r.code == 2 and "a.png: colour (7, 7, 7) is not in labelmap.txt" in r.err, r.err  # nothing left
    r = run_cli(capsys, "train", "--data", root, "--steps", "1")  # read directly: the same line, refused
    assert r.code == 2 and "colour (7, 7, 7) is not in labelmap.txt" in r.err and "Traceback" not in r.err


def test_split_is_deterministic_kept_in_a_manifest_and_reused(tmp_path, capsys):
    names = [f"f{i:03d}.png" for i in range(100)]
    a = assign(names, [0.8, 0.1, 0.1], 0)
    assert a == assign(list(reversed(names)), [0.8, 0.1, 0.1], 0)  # independent of listing order
    assert [len(a[s]) for s in ("train", "val", "test")] == [80, 10, 10]
    assert a != assign(names, [0.8, 0.1, 0.1], 1)
    assert [len(v) for v in assign(names[:5], [0.8, 0.1, 0.1], 0).values()] == [3, 1, 1]

    roboflow(tmp_path / "rf", ["rle"])
    r = run_cli(capsys, "data", "import", "coco", tmp_path / "rf", tmp_path / "ds", "--split", "0.6,0.2,0.2",
                "--seed", "3")
    assert r.code == 0, r.err
    manifest = json.loads((tmp_path / "ds" / "splits.json").read_text())
    assert manifest["seed"] == 3 and manifest["fractions"] == [0.6, 0.2, 0.2]
    assert [len(manifest["splits"][s]) for s in ("train", "val", "test")] == [3, 1, 1]
    assert all((tmp_path / "ds" / f).is_file() for files in manifest["splits"].values() for f in files)

    # a folder without split folders: data.split makes the manifest once, later reads reuse it
    import_export(read_export("coco", tmp_path / "rf"), tmp_path / "flat", None)
    flat = tmp_path / "ds2"
    (flat / "images").mkdir(parents=True)
    (flat / "masks").mkdir()
    for p in (tmp_path / "ds").glob("images/*/*"):
        p.rename(flat / "images" / p.name)
    for p in (tmp_path / "ds").glob("masks/*/*"):
        p.rename(flat / "masks" / p.name)
    (flat / "classes.yaml").write_text((tmp_path / "ds" / "classes.yaml").read_text())
    first = split_source(open_source(flat), [0.6, 0.2, 0.2], 5)
    assert (flat / "splits.json").is_file() and first.split_manifest["seed"] == 5
    again = split_source(open_source(flat), None, 0)  # no fractions asked: the manifest is reused
    assert {k: [s.image.name for s in v] for k, v in again.splits.items()} == \
        {k: [s.image.name for s in v] for k, v in first.splits.items()}
    with pytest.raises(Exception, match="made with fractions"):
        split_source(open_source(flat), [0.8, 0.1, 0.1], 5)
    from seglab.config.schema import DataConfig
    from seglab.data.open import open_data
    run_source = open_data(DataConfig(root=str(flat), split="0.6,0.2,0.2", split_seed=5))  # what training opens
    assert {k: len(v) for k, v in run_source.splits.items()} == {"train": 3, "val": 1, "test": 1}
    assert run_source.split_manifest["counts"] == {"train": 3, "val": 1, "test": 1}


def _bad_export(root: Path, mutate) -> Path:
    roboflow(root, ["rle"])
    path = root / "train" / "_annotations.coco.json"
    data = json.loads(path.read_text())
    mutate(data, root)
    path.write_text(json.dumps(data))
    return root


def _rle_wrong_size(data, root):
    data["annotations"][0]["segmentation"]["size"] = [H + 1, W]


def _rle_short(data, root):
    """A compressed RLE covering fewer pixels than its image: pycocotools would fill the rest with whatever
    its buffer held."""
    data["annotations"][0]["segmentation"]["counts"] = "0"


def _rle_truncated(data, root):
    data["annotations"][0]["segmentation"]["counts"] = "P"  # a continuation bit and nothing after it


def _width_text(data, root):
    data["images"][0]["width"] = "160"


def _polygon_outside(data, root):
    data["annotations"][0]["segmentation"] = [[-10.0, -10.0, 50.0, 5.0, 30.0, 60.0]]


@pytest.mark.parametrize("mutate, code, fragments", [
    (lambda d, r: d["annotations"][0].update(category_id=99), 1, ["unknown category id 99", "annotation 1"]),
    (lambda d, r: (r / "train" / "train1.jpg").unlink(), 1, ["train1.jpg is listed but not found"]),
    (lambda d, r: (r / "valid" / "valid0.jpg").rename(r / "valid" / "train0.jpg"), 1, ["same name as"]),
    (_rle_wrong_size, 1, ["RLE of size 160x121", "for an image of 160x120"]),
    (_rle_short, 1, ["cannot decode the RLE", "cover 0 pixels, the image has 19200"]),
    (_rle_truncated, 1, ["cannot decode the RLE", "ends inside a run length"]),
    (_width_text, 1, ["width and height positive whole numbers"]),
    (_polygon_outside, 0, ["warning:", "outside the 160x120 image; clipped"]),
], ids=["unknown-category", "missing-image", "same-name", "rle-size", "rle-short", "rle-truncated", "width-text",
        "polygon-outside"])
def test_bad_items_are_reported_one_line_each_and_skipped(tmp_path, capsys, mutate, code, fragments):
    root = _bad_export(tmp_path / "rf", mutate)
    if "same name as" in fragments:  # the renamed file is also listed under its new name
        path = root / "valid" / "_annotations.coco.json"
        data = json.loads(path.read_text())
        data["images"][0]["file_name"] = "train0.jpg"
        path.write_text(json.dumps(data))
    r = run_cli(capsys, "data", "import", "coco", root, tmp_path / "ds")
    assert r.code == code, r.err
    lines = [ln for ln in r.err.splitlines() if all(f in ln for f in fragments)]
    assert len(lines) == 1, r.err
    assert "imported" in r.out and "Traceback" not in r.err
    assert (tmp_path / "ds").is_dir() and not list(tmp_path.glob(".ds.importing-*"))


def test_unreadable_exports_are_one_line_errors_and_write_nothing(tmp_path, capsys):
    bad = tmp_path / "bad" / "annotations"
    bad.mkdir(parents=True)
    (bad / "instances_train.json").write_text('{"images": [')
    r = run_cli(capsys, "data", "import", "coco", tmp_path / "bad", tmp_path / "ds")
    assert r.code == 2 and "instances_train.json: not valid JSON (line 1" in r.err, r.err
    (bad / "instances_train.json").write_text('{"images": [], "annotations": [], "categories": [{"id": 1, "name": "a"}]}')
    r = run_cli(capsys, "data", "import", "coco", tmp_path / "bad", tmp_path / "ds")
    assert r.code == 2 and "lists no images" in r.err, r.err
    (tmp_path / "ls.json").write_text("[]")
    r = run_cli(capsys, "data", "import", "labelstudio", tmp_path / "ls.json", tmp_path / "ds")
    assert r.code == 2 and "holds no tasks" in r.err
    assert not (tmp_path / "ds").exists() and not list(tmp_path.glob(".ds.importing-*"))
    roboflow(tmp_path / "rf", ["rle"])
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    r = run_cli(capsys, "data", "import", "coco", tmp_path / "rf", tmp_path / "full")
    assert r.code == 2 and "already exists and is not empty" in r.err
    r = run_cli(capsys, "data", "import", "coco", tmp_path / "rf", tmp_path / "ds", "--split", "0.5,0.6")
    assert r.code == 2 and "must add up to 1" in r.err


@pytest.mark.slow
def test_training_on_an_imported_export(tmp_path, capsys):
    roboflow(tmp_path / "rf", ["poly", "rle"])
    assert run_cli(capsys, "data", "import", "coco", tmp_path / "rf", tmp_path / "ds", "--split", "0.6,0.2,0.2").code == 0
    r = run_cli(capsys, "train", "--model", "scratch:simplesegnet", "--size", "64x96", "--batch", "2",
                "--data", tmp_path / "ds", "--steps", "2", "--out", tmp_path / "runs", "--name", "r")
    assert r.code == 0, r.err[-3000:]
    info = json.loads((tmp_path / "runs" / "r" / "run.json").read_text())
    assert info["num_classes"] == 3 and info["split_manifest"]["seed"] == 0
    assert info["split_manifest"]["file"] == str(tmp_path / "ds" / "splits.json")
