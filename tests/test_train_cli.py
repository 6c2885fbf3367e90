"""End to end through the real CLI: train, evaluate, resume, and the one-line errors a user sees."""

import csv
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from fakes import REAL_CAMVID as CAMVID
from fakes import assert_one_line_error, needs_real_camvid, run_cli

from seglab.training.schedule import lr_factor

TRAIN = ["train", "--model", "scratch:simplesegnet", "--size", "64x96", "--batch", "2", "--seed", "3"]
METRIC_KEYS = {"miou", "pixel_accuracy", "mean_class_accuracy", "per_class_iou", "mean_dice", "per_class_dice",
               "fw_iou", "confusion_matrix", "class_names", "split", "num_images"}


def epochs_csv(run: Path) -> list[dict]:
    with (run / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


def test_train_writes_a_complete_run_folder(capsys, tiny_camvid, tmp_path):
    r = run_cli(capsys, *TRAIN, "--data", tiny_camvid, "--epochs", "2", "--out", tmp_path / "runs", "--name", "r")
    assert r.code == 0, r.err[-3000:]
    run = tmp_path / "runs" / "r"
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["model"]["spec"] == "scratch:simplesegnet" and config["data"]["size"] == [64, 96]
    assert Path(config["data"]["root"]).is_absolute()  # the saved config names the data actually used
    plan = config["plan"]  # resolved once, saved: resume, evaluate and predict read it back
    assert plan["accelerator"] == "cpu" and plan["precision"] in ("32", "bf16-mixed") and plan["processes"] == 1
    assert json.loads((run / "run.json").read_text())["precision"] == plan["precision"]
    assert (run / "checkpoints" / "best.ckpt").is_file() and (run / "checkpoints" / "last.ckpt").is_file()
    rows = epochs_csv(run)
    assert [float(r["epoch"]) for r in rows] == [1, 2]
    assert all(0 <= float(r["val_miou"]) <= 1 and float(r["seconds"]) > 0 for r in rows)
    assert [float(r["lr"]) for r in rows] == pytest.approx([1e-3, 1e-3])  # the default: constant 1e-3
    metrics = json.loads((run / "metrics.json").read_text())
    assert METRIC_KEYS <= metrics.keys()
    assert metrics["split"] == "test" and metrics["num_images"] == 3 and len(metrics["class_names"]) == 11
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "finished" and info["epochs"] == 2 and info["weights"] == "none"
    assert "Traceback" not in r.err

    # evaluate another split, and a checkpoint file directly
    r = run_cli(capsys, "evaluate", run, "--split", "val")
    assert r.code == 0, r.err[-3000:]
    assert json.loads((run / "metrics_val.json").read_text())["split"] == "val"
    assert "mean" in r.out and "sky" in r.out  # the per-class table
    r = run_cli(capsys, "evaluate", run / "checkpoints" / "last.ckpt")
    assert r.code == 0, r.err[-3000:]

    # the same run again is refused rather than overwritten
    r = run_cli(capsys, *TRAIN, "--data", tiny_camvid, "--epochs", "2", "--out", tmp_path / "runs", "--name", "r")
    assert_one_line_error(r, "already exists", "--resume")


def test_resume_continues_where_it_stopped(capsys, tiny_camvid, tmp_path):
    r = run_cli(capsys, *TRAIN, "--data", tiny_camvid, "--epochs", "1", "--out", tmp_path, "--name", "r")
    assert r.code == 0, r.err[-3000:]
    run = tmp_path / "r"
    first = epochs_csv(run)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["train"]["epochs"] = 2  # as if the run had been stopped after its first of two epochs
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    r = run_cli(capsys, "train", "--resume", run)
    assert r.code == 0, r.err[-3000:]
    rows = epochs_csv(run)
    assert [float(x["epoch"]) for x in rows] == [1, 2] and rows[0] == first[0]
    assert json.loads((run / "run.json").read_text())["epochs"] == 2


def test_same_seed_repeats_exactly(capsys, tiny_camvid, tmp_path):
    for name in ("a", "b"):
        r = run_cli(capsys, *TRAIN, "--data", tiny_camvid, "--epochs", "2", "--out", tmp_path, "--name", name,
                    "--set", "data.scale_crop=true", "--set", "data.color_jitter=true")
        assert r.code == 0, r.err[-3000:]
    a, b = epochs_csv(tmp_path / "a"), epochs_csv(tmp_path / "b")
    for key in ("train_loss", "val_loss", "val_miou"):
        assert [x[key] for x in a] == [x[key] for x in b], key


def test_class_weights_and_schedules_train(capsys, tiny_camvid, tmp_path):
    r = run_cli(capsys, *TRAIN, "--data", tiny_camvid, "--epochs", "2", "--out", tmp_path, "--name", "w",
                "--class-weights", "median-frequency", "--loss", "dice_ce", "--optimizer", "adamw",
                "--scheduler", "cosine", "--set", "train.warmup=0.2")
    assert r.code == 0, r.err[-3000:]
    rows = epochs_csv(tmp_path / "w")
    # 3 images, batch 2, drop_last: one step per epoch, so the last step runs at progress 1/2
    assert float(rows[-1]["lr"]) == pytest.approx(1e-3 * lr_factor("cosine", 0.5, warmup=0.2))
    assert float(rows[0]["lr"]) == pytest.approx(1e-3 * lr_factor("cosine", 0.0, warmup=0.2))


@pytest.mark.parametrize("args,fragments", [
    (["--model", "unet:nosuchnet"], ["nosuchnet"]),
    (["--model", "banana"], ["banana"]),
    (["--set", "train.lrr=1"], ["train.lrr", "train.lr"]),
    (["--size", "100x100"], ["--size", "multiples of 32"]),
    (["--loss", "hinge"], ["--loss", "dice_ce"]),
    (["--data", "/nonexistent/camvid"], ["/nonexistent/camvid"]),
    (["--lr", "nan"], ["--lr", "finite"]),
    (["--set", "train.lr=inf"], ["train.lr", "finite"]),
    (["--set", "train.weight_decay=nan"], ["train.weight_decay", "finite"]),
    (["--class-weights", "1,nan,1,1,1,1,1,1,1,1,1"], ["--class-weights", "finite"]),
    (["--set", "train.devices=abc"], ["train.devices", "abc"]),
    pytest.param(["--set", "train.accelerator=cuda"], ["train.accelerator=cuda", "no CUDA device", "cpu"],
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")),
])
def test_bad_options_are_one_line_errors(capsys, tiny_camvid, tmp_path, args, fragments):
    base = [*TRAIN, "--data", tiny_camvid, "--epochs", "1", "--out", tmp_path]
    r = run_cli(capsys, *base, *args)
    assert_one_line_error(r, *fragments)


def test_bad_files_are_named(capsys, tiny_camvid, tmp_path):
    label = min((tiny_camvid / "trainannot").iterdir())
    mask = cv2.imread(str(label), cv2.IMREAD_UNCHANGED)
    mask[0, 0] = 12
    cv2.imwrite(str(label), mask)
    r = run_cli(capsys, *TRAIN, "--data", tiny_camvid, "--epochs", "1", "--out", tmp_path)
    assert_one_line_error(r, label.name, "12")
    assert not any((tmp_path).glob("*/checkpoints/*.ckpt"))  # failed before any training

    cv2.imwrite(str(label), np.zeros_like(mask))
    test_image = min((tiny_camvid / "test").iterdir())
    original = test_image.read_bytes()
    test_image.write_bytes(b"not a png")
    r = run_cli(capsys, *TRAIN, "--data", tiny_camvid, "--epochs", "1", "--out", tmp_path, "--name", "t0")
    assert_one_line_error(r, test_image.name)
    assert not (tmp_path / "t0" / "checkpoints").exists()  # found before training, not after it
    test_image.write_bytes(original)
    image = min((tiny_camvid / "val").iterdir())
    image.write_bytes(image.read_bytes()[:100])  # truncated PNG
    r = run_cli(capsys, *TRAIN, "--data", tiny_camvid, "--epochs", "1", "--out", tmp_path, "--name", "t")
    assert_one_line_error(r, image.name)


def test_evaluate_errors(capsys, tmp_path):
    assert_one_line_error(run_cli(capsys, "evaluate", tmp_path / "nope"), "nope")
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    assert_one_line_error(run_cli(capsys, "evaluate", tmp_path / "junk.ckpt"), "junk.ckpt")


@pytest.mark.slow
@needs_real_camvid
def test_real_camvid_smoke(capsys, tmp_path):
    """A handful of real CamVid images: one epoch, then native-resolution test scoring where the
    360 -> 384 padding is never counted: the matrix holds exactly the non-void pixels of the test labels."""
    data = tmp_path / "camvid"
    counts = {"train": 4, "val": 2, "test": 2}
    labelled = 0
    for split, n in counts.items():
        (data / split).mkdir(parents=True)
        (data / f"{split}annot").mkdir()
        for f in sorted((CAMVID / split).iterdir())[:n]:
            shutil.copy(f, data / split / f.name)
            shutil.copy(CAMVID / f"{split}annot" / f.name, data / f"{split}annot" / f.name)
            if split == "test":
                labelled += int((cv2.imread(str(CAMVID / "testannot" / f.name), cv2.IMREAD_UNCHANGED) != 11).sum())
    r = run_cli(capsys, *TRAIN, "--data", data, "--epochs", "1", "--size", "96x128", "--out", tmp_path / "runs",
                "--name", "real")
    assert r.code == 0, r.err[-3000:]
    metrics = json.loads((tmp_path / "runs" / "real" / "metrics.json").read_text())
    assert metrics["num_images"] == 2
    assert sum(map(sum, metrics["confusion_matrix"])) == labelled
    assert 0 <= metrics["miou"] <= 1 and metrics["class_names"][0] == "sky"
    assert metrics["eval_size"] == [96, 128]  # the model sees the training scale, labels stay native
    own = (tmp_path / "runs" / "real" / "metrics.json").read_bytes()
    r = run_cli(capsys, "evaluate", tmp_path / "runs" / "real", "--eval-size", "native")
    assert r.code == 0, r.err[-3000:]
    assert (tmp_path / "runs" / "real" / "metrics.json").read_bytes() == own  # a variant gets its own file
    native = json.loads((tmp_path / "runs" / "real" / "metrics_test~native.json").read_text())
    assert native["eval_size"] == "native"  # 360x480 padded to 384x480: padding never scored
    assert sum(map(sum, native["confusion_matrix"])) == labelled


def test_image_without_label_stops_with_its_name(capsys, tiny_camvid, tmp_path):
    orphan = tiny_camvid / "train" / "0001TP_orphan.png"
    shutil.copy(min((tiny_camvid / "train").iterdir()), orphan)
    r = run_cli(capsys, *TRAIN, "--data", tiny_camvid, "--epochs", "1", "--out", tmp_path)
    assert_one_line_error(r, "0001TP_orphan.png", "no label", "seglab data check")


@pytest.mark.slow
def test_early_stopping_max_time_and_budget(capsys, tiny_camvid, tmp_path):
    # a learning rate too small to change anything: validation mIoU never improves after epoch 1
    r = run_cli(capsys, *TRAIN, "--data", tiny_camvid, "--epochs", "6", "--lr", "1e-12", "--early-stop", "1",
                "--out", tmp_path, "--name", "es")
    assert r.code == 0, r.err[-3000:]
    assert len(epochs_csv(tmp_path / "es")) == 2
    r = run_cli(capsys, *TRAIN, "--data", tiny_camvid, "--epochs", "500", "--max-time", "00:00:01", "--out",
                tmp_path, "--name", "mt")
    assert r.code == 0, r.err[-3000:]
    assert 1 <= len(epochs_csv(tmp_path / "mt")) < 500 and (tmp_path / "mt" / "metrics.json").is_file()
    r = run_cli(capsys, *TRAIN, "--data", tiny_camvid, "--budget", "2s", "--scheduler", "cosine", "--out", tmp_path,
                "--name", "budget")
    assert r.code == 0, r.err[-3000:]
    rows = epochs_csv(tmp_path / "budget")
    assert len(rows) >= 1 and (tmp_path / "budget" / "metrics.json").is_file()
    assert float(rows[-1]["lr"]) < 1e-3  # the cosine schedule ran over the budget's steps, not epochs
    info = json.loads((tmp_path / "budget" / "run.json").read_text())
    assert info["steps"] == info["budget"]["steps"] == int(rows[-1]["step"])  # the last step is validated
    saved = yaml.safe_load((tmp_path / "budget" / "config.yaml").read_text())["train"]
    assert saved["steps"] == info["steps"] and saved["budget"] == "2s"  # a resume does the same steps
    r = run_cli(capsys, *TRAIN, "--data", tiny_camvid, "--budget", "1s", "--set", "train.budget_clock=wall",
                "--out", tmp_path, "--name", "wall")
    assert r.code == 0, r.err[-3000:]
    info = json.loads((tmp_path / "wall" / "run.json").read_text())
    assert info["budget"] is None and info["steps_planned"] is None and info["train_seconds"] >= 1


@pytest.mark.slow
def test_ctrl_c_keeps_last_checkpoint_and_resumes(capsys, tiny_camvid, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    run = tmp_path / "int"
    cmd = [sys.executable, "-m", "seglab.cli", *TRAIN, "--data", str(tiny_camvid), "--epochs", "1000",
           "--out", str(tmp_path), "--name", "int"]
    # A shell starts background jobs with SIGINT ignored, and a child inherits an ignored signal (Python then
    # installs no KeyboardInterrupt handler); a handled one is reset to the default at exec. So the test runs
    # the same under `&` as in a terminal.
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    finally:
        signal.signal(signal.SIGINT, before)
    try:
        for _ in range(600):  # wait (at most a minute) for the first saved epoch
            if (run / "checkpoints" / "last.ckpt").exists():
                break
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert "resume with `seglab train --resume" in err and "Traceback" not in err
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"
    assert (run / "checkpoints" / "last.ckpt").is_file()
    saved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] + 1  # epochs it holds
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["train"]["epochs"] = saved + 1
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    r = run_cli(capsys, "train", "--resume", run)
    assert r.code == 0, r.err[-3000:]
    assert json.loads((run / "run.json").read_text())["status"] == "finished"
    assert [float(x["epoch"]) for x in epochs_csv(run)] == list(range(1, saved + 2))  # no duplicated epoch


def test_models_command_lists_specs_with_params(capsys):
    r = run_cli(capsys, "models")
    assert r.code == 0
    for spec in ("scratch:simplesegnet", "scratch:vit", "unet:efficientnet-lite0", "unet:resnet34"):
        assert spec in r.out
    assert " M" in r.out  # parameter counts in millions


def test_all_void_batches_contribute_no_loss(capsys, tiny_camvid, tmp_path):
    """An unlabelled training image with batch 1 must not turn the logged loss into NaN."""
    label = min((tiny_camvid / "trainannot").iterdir())
    cv2.imwrite(str(label), np.full_like(cv2.imread(str(label), cv2.IMREAD_UNCHANGED), 11))  # 11 = void
    r = run_cli(capsys, "train", "--model", "scratch:simplesegnet", "--size", "64x96", "--batch", "1",
                "--data", tiny_camvid, "--epochs", "2", "--out", tmp_path, "--name", "void",
                "--set", "data.scale_crop=false")
    assert r.code == 0, r.err[-3000:]
    rows = epochs_csv(tmp_path / "void")
    losses = [float(x["train_loss"]) for x in rows if x["train_loss"]]  # empty: only the void batch since
    assert len(losses) >= 4 and np.isfinite(losses).all()
    assert all(np.isfinite(float(x["val_loss"])) for x in rows)
    assert json.loads((tmp_path / "void" / "run.json").read_text())["status"] == "finished"


def test_a_loss_that_turns_infinite_stops_the_run_naming_where(monkeypatch):
    from seglab.config import RunConfig
    from seglab.data import CAMVID11
    from seglab.errors import SeglabError
    from seglab.training.module import SegModule

    cfg = RunConfig()
    cfg.model.spec, cfg.model.weights = "scratch:simplesegnet", "none"
    module = SegModule(cfg, CAMVID11)
    class Exploding(torch.nn.Module):
        def forward(self, logits, masks):
            return logits.sum() * float("inf")

    module.criterion = Exploding()
    batch = (torch.zeros(1, 3, 32, 32), torch.zeros(1, 32, 32, dtype=torch.long))
    with pytest.raises(SeglabError, match=r"training loss became -?(inf|nan) at epoch 1, step 1.*last good checkpoint"):
        module.training_step(batch, 0)


def test_evaluating_on_other_data_never_overwrites_the_runs_results(capsys, tiny_camvid, tmp_path):
    from fakes import make_camvid

    r = run_cli(capsys, *TRAIN, "--data", tiny_camvid, "--epochs", "1", "--out", tmp_path, "--name", "r")
    assert r.code == 0, r.err[-3000:]
    run = tmp_path / "r"
    own = (run / "metrics.json").read_bytes()
    info = json.loads((run / "run.json").read_text())
    assert len(info["data_fingerprint"]) == 16
    other = make_camvid(tmp_path / "other", n_per_split=4)
    r = run_cli(capsys, "evaluate", run, "--data", other)
    assert r.code == 0, r.err[-3000:]
    assert (run / "metrics.json").read_bytes() == own  # the run's own test score is untouched
    (written,) = run.glob("metrics_test@other-*.json")
    m = json.loads(written.read_text())
    assert m["num_images"] == 4 and m["data"]["trained_on"] == info["data_fingerprint"] != m["data"]["fingerprint"]
    assert len(list(run.glob("per_image_test@other-*.npz"))) == 1
    r = run_cli(capsys, "evaluate", run, "--data", tiny_camvid)  # the same data again: the run's own files
    assert json.loads((run / "metrics.json").read_text())["data"]["fingerprint"] == info["data_fingerprint"]


def test_resume_survives_a_broken_last_checkpoint(capsys, caplog, tiny_camvid, tmp_path):
    r = run_cli(capsys, *TRAIN, "--data", tiny_camvid, "--epochs", "1", "--out", tmp_path, "--name", "r")
    assert r.code == 0, r.err[-3000:]
    run = tmp_path / "r"
    last, best = run / "checkpoints" / "last.ckpt", run / "checkpoints" / "best.ckpt"
    good = best.read_bytes()
    for broken in (b"", last.read_bytes()[:100], b"garbage"):
        last.write_bytes(broken)
        r = run_cli(capsys, "train", "--resume", run)  # falls back to best.ckpt, an earlier full state
        assert r.code == 0, r.err[-3000:]
        assert "resuming from best.ckpt instead" in caplog.text
    status = json.loads((run / "run.json").read_text())["status"]
    last.write_bytes(b"")
    best.write_bytes(b"")
    assert_one_line_error(run_cli(capsys, "train", "--resume", run), "last.ckpt", "no usable checkpoint")
    assert json.loads((run / "run.json").read_text())["status"] == status  # nothing about the run changed
    best.write_bytes(good)
    (run / "config.yaml").write_text("train: {lr: [unclosed\n")
    assert_one_line_error(run_cli(capsys, "train", "--resume", run), "config.yaml", "cannot resume")
