"""Progress a log file can read: plain lines instead of a bar when the output is not a terminal, at the
start, every SEGLAB_PROGRESS_SECONDS and at every validation, and one at the end."""

from __future__ import annotations

import io
import re
import sys

import pytest
import yaml
from fakes import run_cli

from seglab.config import format_seconds, load_config
from seglab.errors import SeglabError
from seglab.training.plan import resolve_plan
from seglab.training.progress import (
    PROGRESS_SECONDS,
    PlainProgress,
    RunProgressBar,
    progress_callback,
    progress_line,
    progress_seconds,
)
from seglab.training.trainer import make_trainer

# epoch 2/4  step 2/4  35.1 img/s  loss 2.437  ETA 1s (val mIoU only once a validation ran)
LINE = re.compile(r"^epoch (\d+)/4  step (\d)/4  [\d.]+ img/s  loss \d+\.\d{3}(  val mIoU [\d.]+%)?  ETA \d+s$")


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_line_reads_left_to_right_and_leaves_out_what_is_unknown():
    line = progress_line(3, 10, 120, 412, 12.34, 0.41234, 0.47912, 190)
    assert line == "epoch 3/10  step 120/412  12.3 img/s  loss 0.412  val mIoU 47.9%  ETA 3m10s"
    # a wall-clock budget: no planned steps or epochs; before the first step and validation: no numbers
    assert progress_line(2, None, 7, None, None, None, None, 3725) == "epoch 2  step 7  ETA 1h02m"
    assert progress_line(1, 4, 0, 4, None, float("nan"), None, None) == "epoch 1/4  step 0/4"


@pytest.mark.parametrize("seconds, text", [(0, "0s"), (-3, "0s"), (59.4, "59s"), (60, "1m00s"), (190, "3m10s"),
                                           (3599, "59m59s"), (2 * 3600 + 5 * 60 + 9, "2h05m")])
def test_duration(seconds, text):
    assert format_seconds(seconds) == text


def test_interval_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv(PROGRESS_SECONDS, raising=False)
    assert progress_seconds() == 30
    monkeypatch.setenv(PROGRESS_SECONDS, "0.5")
    assert progress_seconds() == 0.5 and PlainProgress().every_s == 0.5
    for bad in ("soon", "-1", "nan"):
        monkeypatch.setenv(PROGRESS_SECONDS, bad)
        with pytest.raises(SeglabError, match=f"{PROGRESS_SECONDS}='{bad}'"):
            progress_seconds()


def test_bar_on_a_terminal_plain_lines_anywhere_else(monkeypatch):
    cfg = load_config()
    # Lightning draws its bars on stdout: stdout alone decides
    for out, err, chosen in [(Terminal(), Terminal(), RunProgressBar), (io.StringIO(), Terminal(), PlainProgress),
                             (Terminal(), io.StringIO(), RunProgressBar)]:
        monkeypatch.setattr(sys, "stdout", out)
        monkeypatch.setattr(sys, "stderr", err)
        assert isinstance(progress_callback(), chosen)
        trainer = make_trainer(resolve_plan(cfg), logger=False)
        assert isinstance(trainer.progress_bar_callback, chosen)  # Lightning adds no bar of its own beside it
        assert sum(isinstance(c, (RunProgressBar, PlainProgress)) for c in trainer.callbacks) == 1


def _train(capsys, data, out, name):
    r = run_cli(capsys, "train", "--data", data, "--model", "scratch:simplesegnet", "--size", "64x96",
                "--batch", "2", "--steps", "4", "--set", "train.val_points=1", "--out", out, "--name", name)
    assert r.code == 0, r.err[-3000:]
    return r


def test_train_into_a_log_prints_plain_progress_lines(capsys, monkeypatch, tiny_camvid, tmp_path):
    # 3 images, batch 2: one step per epoch, 4 steps, one validation (at the end)
    monkeypatch.setenv(PROGRESS_SECONDS, "1000")
    r = _train(capsys, tiny_camvid, tmp_path, "quiet")
    lines = r.out.splitlines()
    assert "\r" not in r.out + r.err and "steps [" not in r.err  # no bar, no carriage returns
    start = lines.index("start  4 steps planned (4 epochs of 1 step)")
    done = next(i for i, line in enumerate(lines) if line.startswith("done  "))
    progress = lines[start + 1:done]
    assert len(progress) == 1 and LINE.match(progress[0]), progress  # the validation's line only
    assert "step 4/4" in progress[0] and "val mIoU" in progress[0] and progress[0].endswith("ETA 0s")
    assert re.match(r"done  epoch 4/4  step 4/4  [\d.]+ img/s  loss \d+\.\d{3}  val mIoU [\d.]+%  in \d+s$",
                    lines[done])
    assert not [line for line in lines[done + 1:] if "step" in line]  # the test evaluation prints none

    monkeypatch.setenv(PROGRESS_SECONDS, "0")  # a line after every step
    r = _train(capsys, tiny_camvid, tmp_path, "chatty")
    progress = [m for m in map(LINE.match, r.out.splitlines()) if m]
    assert [int(m[2]) for m in progress] == [1, 2, 3, 4, 4]  # every step, then the validation at step 4
    assert [int(m[1]) for m in progress] == [1, 2, 3, 4, 4]
    assert progress[0][3] is None and progress[-1][3]  # no val mIoU before the first validation


def test_study_into_a_log_says_whose_lines_follow(capsys, tmp_path, tiny_camvid):
    study = {"name": "tiny", "defaults": {"data": {"size": "64x96", "batch_size": 2},
                                          "model": {"spec": "scratch:simplesegnet"}, "train": {"steps": 2}},
             "runs": [{"name": "base", "group": "g", "baseline": True}]}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    r = run_cli(capsys, "study", path, "--data", tiny_camvid, "--out", tmp_path / "studies", "--no-report")
    assert r.code == 0, r.err[-3000:]
    lines = r.out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("run 1/1 base  (elapsed "))
    after = [line for line in lines[header + 1:] if not line.startswith("decoding ")]  # the data's preload
    assert after[0] == "start  2 steps planned (2 epochs of 1 step)"
    assert any(line.startswith("done  epoch 2/2  step 2/2") for line in after)
