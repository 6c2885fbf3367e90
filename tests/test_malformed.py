"""Bad input, tried systematically: every broken file, value and path a user can hand seglab, through every
command that reads it. Each must end in one line naming the problem and exit 2 (or, in `data check` and
batch commands, be listed while the rest is processed), never a traceback, and nothing already computed
may change. Inputs seglab can read (16-bit, palette and RGBA images; paths with spaces and non-ASCII
letters) must simply work.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from fakes import assert_one_line_error, make_camvid, run_cli, train_run
from PIL import Image

TRAIN = ["train", "--model", "scratch:simplesegnet", "--size", "64x96", "--batch", "2", "--epochs", "1"]
IMAGE = "train/0001TP_train000.png"
MASK = "trainannot/0001TP_train000.png"


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:120])


# Broken datasets: (mutation of a fresh tiny CamVid, fragment the one-line error and the check must name)
DATASETS = {
    "zero-byte image": (lambda r: (r / IMAGE).write_bytes(b""), "0001TP_train000.png"),
    "truncated image": (lambda r: _truncate(r / IMAGE), "0001TP_train000.png"),
    "text file named .png": (lambda r: (r / IMAGE).write_text("not an image"), "0001TP_train000.png"),
    "zero-byte mask": (lambda r: (r / MASK).write_bytes(b""), "trainannot/0001TP_train000.png"),
    "truncated mask": (lambda r: _truncate(r / MASK), "trainannot/0001TP_train000.png"),
    "mask value out of range": (lambda r: cv2.imwrite(str(r / MASK), np.full((64, 96), 40, np.uint8)),
                                "label value 40 outside"),
    "mask of the wrong size": (lambda r: cv2.imwrite(str(r / MASK), np.zeros((32, 48), np.uint8)), "32x48"),
    "RGB mask in an index layout": (lambda r: cv2.imwrite(str(r / MASK), np.zeros((64, 96, 3), np.uint8)),
                                    "3 channels"),
    "float mask": (lambda r: (r / MASK).unlink() or cv2.imwrite(str((r / MASK).with_suffix(".tiff")),
                                                                np.zeros((64, 96), np.float32)), "0001TP_train000"),
    "image without mask": (lambda r: (r / MASK).unlink(), "no label file"),
    "mask without image": (lambda r: (r / IMAGE).unlink(), "label file without image"),
    "no images at all": (lambda r: [f.unlink() for s in ("train", "val", "test") for f in (r / s).iterdir()],
                         "label file without image"),
    "missing test split": (lambda r: [shutil.rmtree(r / d) for d in ("test", "testannot")], "test"),
    "missing val split": (lambda r: [shutil.rmtree(r / d) for d in ("val", "valannot")], "val"),
}


@pytest.mark.parametrize("case", list(DATASETS))
def test_broken_datasets_are_listed_by_check_and_stop_training_in_one_line(capsys, tmp_path, case):
    mutate, fragment = DATASETS[case]
    root = make_camvid(tmp_path / "camvid")
    mutate(root)
    r = run_cli(capsys, "data", "check", root)
    assert r.code == 1 and "Traceback" not in r.out + r.err, (r.code, r.out[-2000:], r.err[-2000:])
    assert fragment in r.out, r.out[-2000:]
    r = run_cli(capsys, *TRAIN, "--data", root, "--out", tmp_path / "runs", "--name", "r")
    assert_one_line_error(r)
    assert not (tmp_path / "runs" / "r" / "checkpoints").exists()  # stopped before training


def _sixteen_bit(path: Path) -> None:
    image = cv2.imread(str(path)).astype(np.uint16) * 257
    path.unlink()
    cv2.imwrite(str(path.with_suffix(".png")), image)


def _palette(path: Path) -> None:
    Image.open(path).convert("P", palette=Image.Palette.ADAPTIVE).save(path)


def _rgba(path: Path) -> None:
    Image.open(path).convert("RGBA").save(path)


def _palette_mask(path: Path) -> None:
    mask = Image.fromarray(cv2.imread(str(path), cv2.IMREAD_UNCHANGED)).convert("P")
    mask.putpalette([v for i in range(256) for v in (i, 255 - i, i // 2)])
    mask.save(path)


def test_images_seglab_can_read_train_from_a_path_with_spaces_and_non_ascii_letters(capsys, tmp_path):
    root = make_camvid(tmp_path / "données d'été" / "cam vid")
    _sixteen_bit(root / "train" / "0001TP_train000.png")
    _palette(root / "train" / "0001TP_train001.png")
    _rgba(root / "val" / "0001TP_val000.png")
    _palette_mask(root / "trainannot" / "0001TP_train002.png")  # palette PNG mask: indices are the labels
    r = run_cli(capsys, "data", "check", root)
    assert r.code == 0 and "no problems found" in r.out, r.out[-2000:]
    out = tmp_path / "rüns mit Leerzeichen"
    r = run_cli(capsys, *TRAIN, "--data", root, "--out", out, "--name", "r")
    assert r.code == 0, r.err[-3000:]
    r = run_cli(capsys, "predict", out / "r", root / "train", "--out", tmp_path / "prédictions")
    assert r.code == 0, r.err[-3000:]
    assert len(list((tmp_path / "prédictions").glob("*.png"))) == 3


# Bad configuration values through `seglab train`: (arguments, fragment of the one line)
OPTIONS = {
    "lr nan": (["--lr", "nan"], "finite"),
    "lr inf via --set": (["--set", "train.lr=inf"], "finite"),
    "negative lr": (["--lr", "-0.1"], "--lr"),
    "weight decay nan": (["--set", "train.weight_decay=nan"], "finite"),
    "negative weight decay": (["--set", "train.weight_decay=-1"], "weight_decay"),
    "zero batch": (["--batch", "0"], "--batch"),
    "negative epochs": (["--epochs", "-2"], "--epochs"),
    "size not a multiple of 32": (["--size", "100x100"], "multiples of 32"),
    "size not a size": (["--size", "big"], "HxW"),
    "epochs not a number": (["--set", "train.epochs=many"], "integer"),
    "unknown key": (["--set", "train.learning_rate=0.1"], "unknown config key 'train.learning_rate'"),
    "unknown loss": (["--loss", "hinge"], "--loss"),
    "bad budget": (["--budget", "soon"], "duration"),
    "negative budget": (["--budget", "-5m"], "--budget"),
    "devices not a count": (["--devices", "abc"], "--devices"),
    "cuda without cuda": (["--accelerator", "cuda"], "cuda"),
    "bad class weights": (["--class-weights", "1,x"], "--class-weights"),
    "wrong number of class weights": (["--class-weights", "1,2"], "class_weights"),
    "negative threads": (["--set", "train.threads=-1"], "train.threads"),
    "warm-up of one": (["--set", "train.warmup=1"], "train.warmup"),
    "run name leaving runs/": (["--name", ".."], "name"),
    "unknown model": (["--model", "unet:resnet1800"], "resnet1800"),
    "malformed model spec": (["--model", "unet"], "ARCH:ENCODER"),
    "missing weights file": (["--weights", "nowhere.pth"], "nowhere.pth"),
    "data folder missing": (["--data", "/no/such/folder"], "/no/such/folder"),
    "unknown layout": (["--layout", "coco"], "coco"),
    "unknown preset": (["--preset", "fast"], "--preset"),
    "scale range upside down": (["--set", "data.scale_range=2,1"], "data.scale_range"),
    "scale range of one number": (["--set", "data.scale_range=1"], "data.scale_range"),
    "scale range with nan": (["--set", "data.scale_range=1,nan"], "finite"),
    "custom tta scale of zero": (["--set", "data.tta=flip+scales:0,1"], "data.tta"),
}


@pytest.mark.parametrize("case", list(OPTIONS))
def test_bad_option_values_are_one_line(capsys, tiny_camvid, tmp_path, case):
    if case == "cuda without cuda":
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
    args, fragment = OPTIONS[case]
    data = [] if "--data" in args else ["--data", str(tiny_camvid)]
    r = run_cli(capsys, *TRAIN, *data, *args, "--out", tmp_path / "runs")
    assert_one_line_error(r, fragment)
    assert not list((tmp_path / "runs").glob("*/checkpoints"))


CONFIG_FILES = {
    "non-UTF-8": ("train: {epochs: 1}\n# été".encode("latin-1"), "UTF-8"),
    "not YAML": (b"train: {epochs: [1\n", "not valid YAML"),
    "a list, not a mapping": (b"- 1\n- 2\n", "mapping"),
    "binary garbage": (bytes(range(256)), "c.yaml"),
    "nan in the file": (b"train: {lr: .nan}\n", "finite"),
}


@pytest.mark.parametrize("case", list(CONFIG_FILES))
def test_broken_config_and_study_files_are_one_line(capsys, tiny_camvid, tmp_path, case):
    content, fragment = CONFIG_FILES[case]
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    assert_one_line_error(run_cli(capsys, *TRAIN, "--data", tiny_camvid, "--config", path), fragment)
    r = run_cli(capsys, "study", path, "--data", tiny_camvid, "--out", tmp_path / "studies")
    assert_one_line_error(r, "c.yaml")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One finished run, shared by the checkpoint cases (each copies it before breaking anything)."""
    tmp = tmp_path_factory.mktemp("trained")
    data = make_camvid(tmp / "camvid")
    return train_run(data, tmp / "runs", "r"), data


CHECKPOINTS = {
    "zero-byte": lambda p: p.write_bytes(b""),
    "truncated": lambda p: p.write_bytes(p.read_bytes()[:1000]),
    "garbage": lambda p: p.write_bytes(b"\x00garbage" * 100),
    "another program's file": lambda p: __import__("torch").save({"weights": [1, 2, 3]}, p),
}


@pytest.mark.parametrize("case", list(CHECKPOINTS))
@pytest.mark.parametrize("command", ["evaluate", "predict", "export"])
def test_corrupt_checkpoints_are_one_line_and_change_nothing(capsys, trained, tmp_path, case, command):
    run, data = trained
    copy = tmp_path / "r"
    shutil.copytree(run, copy)
    for ckpt in (copy / "checkpoints").glob("*.ckpt"):
        CHECKPOINTS[case](ckpt)
    before = {p.name: p.read_bytes() for p in copy.iterdir() if p.is_file()}
    args = {"evaluate": ["evaluate", copy], "predict": ["predict", copy, data / "test", "--out", tmp_path / "p"],
            "export": ["export", copy, "--out", tmp_path / "m.onnx"]}[command]
    assert_one_line_error(run_cli(capsys, *args), "best.ckpt")
    assert {p.name: p.read_bytes() for p in copy.iterdir() if p.is_file()} == before


def test_batch_prediction_reports_bad_files_and_writes_the_rest(capsys, trained, tmp_path):
    run, data = trained
    folder = tmp_path / "mixed inputs"
    shutil.copytree(data / "test", folder)
    (folder / "empty.png").write_bytes(b"")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff" + b"\x00" * 50)
    (folder / "notes.txt").write_text("not an image")
    r = run_cli(capsys, "predict", run, folder, "--out", tmp_path / "out")
    assert r.code == 1 and "Traceback" not in r.err, r.err[-2000:]
    assert "empty.png" in r.err and "broken.jpg" in r.err
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == sorted(p.name for p in (data / "test").iterdir())


def test_reports_and_evaluations_of_what_is_not_there_are_one_line(capsys, trained, tmp_path):
    run, data = trained
    assert_one_line_error(run_cli(capsys, "report", tmp_path), str(tmp_path))
    assert_one_line_error(run_cli(capsys, "evaluate", tmp_path / "nothing"), "nothing")
    assert_one_line_error(run_cli(capsys, "evaluate", run, "--split", "extra"), "'--split': extra")
    assert_one_line_error(run_cli(capsys, "evaluate", run, "--eval-size", "33x33"), "multiples of 32")
    assert_one_line_error(run_cli(capsys, "predict", run, tmp_path / "missing.png", "--out", tmp_path / "o"),
                          "missing.png")
    assert_one_line_error(run_cli(capsys, "export", run, "--opset", "3", "--out", tmp_path / "m.onnx"), "--opset")
    assert_one_line_error(run_cli(capsys, "predict", run, data / "test", "--tile", "100", "--out", tmp_path / "o"),
                          "--tile")
