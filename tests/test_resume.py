"""A killed run resumes to exactly the result of a run that was never interrupted (CPU): same batches, same
augmentations, same dropout masks, whatever the moment of the kill."""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest
from fakes import make_camvid

# FPN has dropout (global random state); scale-crop and colour jitter draw augmentations; batch 1 over six
# images validates (and checkpoints) in the middle of epochs as well as at their ends.
ARGS = ["--model", "fpn:resnet18", "--weights", "none", "--size", "64x96", "--batch", "1", "--steps", "24",
        "--seed", "1", "--set", "data.scale_crop=true", "--set", "data.color_jitter=true"]


def seglab(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "seglab.cli", *args], check=False, capture_output=True, text=True,
                          timeout=300, **kwargs)


def result(run) -> tuple:
    """Final test metrics and every validation row (all but its wall-clock seconds)."""
    from seglab.runs import read_metrics_csv

    metrics = json.loads((run / "metrics.json").read_text())
    rows = [{k: v for k, v in row.items() if k != "seconds"} for row in read_metrics_csv(run / "metrics.csv")]
    return metrics["miou"], metrics["confusion_matrix"], rows


@pytest.mark.slow
def test_killed_runs_resume_to_the_uninterrupted_result(tmp_path):
    data = make_camvid(tmp_path / "camvid", n_per_split=6)
    train = ["train", "--data", str(data), *ARGS, "--out", str(tmp_path)]
    done = seglab(*train, "--name", "whole")
    assert done.returncode == 0, done.stderr[-2000:]
    reference = result(tmp_path / "whole")
    rng = random.Random(0)
    kills = 0
    for k in range(3):
        name = f"cut{k}"
        # The odd runs also checkpoint every 0.6 s of training (train.checkpoint_minutes), wherever that falls.
        often = ["--set", "train.checkpoint_minutes=0.01"] if k % 2 else []
        proc = subprocess.Popen([sys.executable, "-m", "seglab.cli", *train, *often, "--name", name],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Wait for the first checkpoint (Lightning saves it after the validation's metrics.csv row, later still on
        # a busy machine), then kill at a random moment after it.
        ckpt = tmp_path / name / "checkpoints" / "last.ckpt"
        deadline = time.monotonic() + 120
        while proc.poll() is None and not ckpt.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 2.0))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        resumed = seglab("train", "--resume", str(tmp_path / name))
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        assert result(tmp_path / name) == reference, f"kill {k} changed the result"
        shutil.rmtree(tmp_path / name)
    assert kills >= 2  # the runs were really interrupted


@pytest.mark.slow
def test_a_killed_study_resumes_where_it_stopped(tmp_path):
    """Kill `seglab study` at random moments (during a run, between runs, while scoring); the same command
    then finishes it, and every run ends with the result of a study that was never interrupted."""
    import yaml

    data = make_camvid(tmp_path / "camvid", n_per_split=4)
    study = {"name": "s", "defaults": {"data": {"size": "64x96", "batch_size": 1}, "model": {"spec": "fpn:resnet18",
                                                                                           "weights": "none"},
                                       "train": {"steps": 10, "seed": 2}},
             "runs": [{"name": "a", "group": "g", "baseline": True},
                      {"name": "b", "group": "g", "train": {"optimizer": "adamw", "scheduler": "cosine"}}]}
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump(study))
    command = ["study", str(spec), "--data", str(data), "--no-report"]
    whole = seglab(*command, "--out", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr[-2000:]
    reference = {r: result(tmp_path / "whole" / "s" / "runs" / r) for r in ("a", "b")}

    rng = random.Random(1)
    out = tmp_path / "cut"
    kills = 0
    for _ in range(4):
        proc = subprocess.Popen([sys.executable, "-m", "seglab.cli", *command, "--out", str(out)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(3.0, 12.0))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    finished = seglab(*command, "--out", str(out))
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert kills >= 1
    for r in ("a", "b"):
        assert result(out / "s" / "runs" / r) == reference[r], f"run {r} changed"
    index = json.loads((out / "s" / "study.json").read_text())
    assert {x["status"] for x in index["runs"]} == {"finished"}
