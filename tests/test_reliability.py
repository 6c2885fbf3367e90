"""What a full disk does to a run: the previous checkpoint and records stay whole, and the user gets one line."""

import errno
import json

import pytest
import torch
from fakes import assert_one_line_error, run_cli

from seglab.errors import SeglabError
from seglab.runs import write_json

TRAIN = ["train", "--model", "scratch:simplesegnet", "--size", "64x96", "--batch", "2", "--seed", "1"]


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_while_checkpointing_keeps_the_previous_checkpoint(capsys, tiny_camvid, tmp_path, monkeypatch):
    real_save = torch.save
    saves = []

    def full_after_epoch_one(obj, f, *args, **kwargs):  # epoch 1 saves best and last; then the disk is full
        saves.append(obj["global_step"])
        if len(saves) <= 2:
            return real_save(obj, f, *args, **kwargs)
        f.write(b"partial checkpoint bytes")
        _disk_full()

    monkeypatch.setattr("seglab.training.checkpoint_io.torch.save", full_after_epoch_one)
    r = run_cli(capsys, *TRAIN, "--data", tiny_camvid, "--epochs", "3", "--out", tmp_path, "--name", "r")
    assert_one_line_error(r, "No space left on device", "left as it was", "--resume")
    checkpoints = tmp_path / "r" / "checkpoints"
    last = torch.load(checkpoints / "last.ckpt", weights_only=True)  # whole, and from the end of epoch 1
    assert last["global_step"] == saves[0] > 0 and last["epoch"] == 0
    assert not list(checkpoints.glob("*.tmp"))
    assert json.loads((tmp_path / "r" / "run.json").read_text())["status"] == "failed"

    monkeypatch.setattr("seglab.training.checkpoint_io.torch.save", real_save)
    r = run_cli(capsys, "train", "--resume", tmp_path / "r")  # space again: it continues from there
    assert r.code == 0, r.err[-3000:]
    assert json.loads((tmp_path / "r" / "run.json").read_text())["epochs"] == 3


def test_a_full_disk_while_writing_records_keeps_the_earlier_file(tmp_path, monkeypatch):
    path = tmp_path / "metrics.json"
    write_json(path, {"miou": 0.5})
    monkeypatch.setattr("pathlib.Path.open", lambda self, *a, **k: _disk_full())
    try:
        write_json(path, {"miou": 0.6})
    except SeglabError as e:
        assert "metrics.json" in str(e) and "No space left" in str(e) and "left as it was" in str(e)
    else:
        raise AssertionError("a failed write must say so")
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"miou": 0.5}
    assert not list(tmp_path.glob("*.tmp"))


def make_binary(root, values=(0, 255), n=3, size=(64, 96)):
    """A two-class dataset stored the common way: masks of 0 (background) and 255 (membrane), in split folders."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    for split in ("train", "val", "test"):
        (root / "images" / split).mkdir(parents=True)
        (root / "masks" / split).mkdir(parents=True)
        for i in range(n):
            image = rng.integers(0, 60, (*size, 3), np.uint8)
            mask = np.full(size, values[0], np.uint8)
            mask[:, size[1] // 4:] = values[1]  # 75% of the pixels, as cells in ISBI's membrane masks
            image[:, size[1] // 4:] += 150  # the second class is brighter: learnable at once
            cv2.imwrite(str(root / "images" / split / f"cell{i}.png"), image)
            cv2.imwrite(str(root / "masks" / split / f"cell{i}.png"), mask)
    (root / "classes.yaml").write_text("names: [background, membrane]\n")
    return root


def test_binary_0_255_masks_are_flagged_then_declared_trained_and_predicted_in_their_values(capsys, tmp_path):
    import numpy as np
    from PIL import Image

    root = make_binary(tmp_path / "cells")
    r = run_cli(capsys, "data", "check", root)
    assert r.code == 0, r.out + r.err
    assert "warning: 75% of all labelled pixels are void (raw values present 0, 255)" in r.out and "values: [0, 255]" in r.out
    assert "membrane never occurs in the train masks" in r.out

    (root / "classes.yaml").write_text("names: [background, membrane]\nvalues: [0, 255]\n")
    r = run_cli(capsys, "data", "check", root)
    assert r.code == 0 and "warning" not in r.out and "no problems found" in r.out, r.out

    r = run_cli(capsys, "train", "--data", root, "--model", "scratch:simplesegnet", "--size", "64x96",
                "--batch", "3", "--epochs", "8", "--lr", "0.01", "--out", tmp_path / "runs", "--name", "cells")
    assert r.code == 0, r.err[-3000:]
    metrics = json.loads((tmp_path / "runs" / "cells" / "metrics.json").read_text())
    assert metrics["class_names"] == ["background", "membrane"] and metrics["per_class_iou"][1] > 0.5

    out = tmp_path / "pred"
    r = run_cli(capsys, "predict", tmp_path / "runs" / "cells", root / "images" / "test", "--out", out,
                "--dataset-values")
    assert r.code == 0, r.err[-3000:]
    mask = np.asarray(Image.open(out / "cell0.png"))
    assert set(np.unique(mask)) <= {0, 255} and (mask[:, 40:] == 255).mean() > 0.9  # the dataset's own values
    r = run_cli(capsys, "predict", tmp_path / "runs" / "cells", root / "images" / "test", "--out", tmp_path / "idx")
    assert set(np.unique(np.asarray(Image.open(tmp_path / "idx" / "cell0.png")))) <= {0, 1}  # class indices


@pytest.mark.parametrize("values, fragment", [
    ("[0, 0]", "distinct"), ("[0, 256]", "0-255"), ("[0]", "one distinct integer"), ("zero", "values must"),
])
def test_bad_values_in_classes_yaml_are_one_line(capsys, tmp_path, values, fragment):
    root = make_binary(tmp_path / "cells", n=1)
    (root / "classes.yaml").write_text(f"names: [background, membrane]\nvalues: {values}\n")
    assert_one_line_error(run_cli(capsys, "data", "check", root), "classes.yaml", fragment)


def test_a_flat_folder_is_told_where_its_splits_go(capsys, tmp_path):
    root = make_binary(tmp_path / "cells", n=1)
    for kind in ("images", "masks"):
        for f in (root / kind / "train").iterdir():
            f.rename(root / kind / f.name)
        for split in ("train", "val", "test"):
            import shutil

            shutil.rmtree(root / kind / split)
    r = run_cli(capsys, "data", "check", root)
    assert r.code == 1 and "no val or test split" in r.out and "images/{train,val,test}/" in r.out, r.out
    r = run_cli(capsys, "train", "--data", root, "--model", "scratch:simplesegnet", "--size", "64x96",
                "--epochs", "1", "--out", tmp_path / "runs")
    assert_one_line_error(r, "split 'val' is missing")


def test_time_based_checkpoints_and_recorded_time_survive_a_kill(capsys, tiny_camvid, tmp_path, monkeypatch):
    from seglab.training.callbacks import WorkMeter
    from seglab.training.checkpoint_io import AtomicCheckpointIO

    saved = []
    real = AtomicCheckpointIO.save_checkpoint

    def spy(self, checkpoint, path, storage_options=None):
        saved.append((checkpoint["global_step"], path.rsplit("/", 1)[-1] if isinstance(path, str) else path.name))
        return real(self, checkpoint, path, storage_options)

    monkeypatch.setattr(AtomicCheckpointIO, "save_checkpoint", spy)
    r = run_cli(capsys, *TRAIN, "--data", tiny_camvid, "--steps", "8", "--out", tmp_path, "--name", "r",
                "--set", "train.val_points=1", "--set", "train.checkpoint_minutes=0.00001")
    assert r.code == 0, r.err[-3000:]
    steps = sorted({step for step, name in saved if name == "last.ckpt"})
    assert len(steps) >= 6  # every step, not only at the one validation
    assert_one_line_error(run_cli(capsys, *TRAIN, "--data", tiny_camvid, "--set", "train.checkpoint_minutes=-1",
                                  "--out", tmp_path), "train.checkpoint_minutes")

    # A killed session recorded 100 s in run.json after its last checkpoint (which holds 40 s): resumed, the
    # run counts from the 100 s actually spent.
    meter = WorkMeter(spent={"train_seconds": 100.0, "cpu_seconds": 180.0, "val_seconds": 5.0})
    meter.load_state_dict({"wall_seconds": 40.0, "cpu_seconds": 70.0, "val_seconds": 5.0})
    assert meter.before == {"wall_seconds": 100.0, "cpu_seconds": 180.0, "val_seconds": 5.0}
    meter = WorkMeter(spent=None)  # a fresh run: the checkpoint's totals
    meter.load_state_dict({"wall_seconds": 40.0, "cpu_seconds": 70.0, "val_seconds": 5.0})
    assert meter.before["wall_seconds"] == 40.0
