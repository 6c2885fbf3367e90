"""One run on several processes (distributed data parallel, gloo on the CPU): it trains, checkpoints, resumes
and scores exactly as one process would (each image once, confusion matrices summed across processes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml
from fakes import REAL_CAMVID, make_camvid

from seglab.runs import RunDir

# Five images per split over two processes: 3 + 2 validation images; a sampler that pads them to 3 + 3
# (Lightning's DistributedSampler) would count one image twice and the scores below would differ.
TRAIN = ["train", "--model", "scratch:simplesegnet", "--weights", "none", "--size", "64x96", "--batch", "2",
         "--accelerator", "cpu", "--set", "train.threads=1"]


def few_camvid_images(root, n: int = 5):
    """``n`` real CamVid images per split when the copy is here (../shared/camvid), else fakes in its layout."""
    import shutil

    if not (REAL_CAMVID / "trainannot").is_dir():
        return make_camvid(root, n_per_split=n)
    for split in ("train", "val", "test"):
        for folder in (split, f"{split}annot"):
            (root / folder).mkdir(parents=True)
            for f in sorted((REAL_CAMVID / folder).glob("*.png"))[:n]:
                shutil.copy(f, root / folder / f.name)
    return root


def seglab(*args) -> subprocess.CompletedProcess:
    """The CLI in a fresh process: Lightning's DDP launcher starts the other process by re-running it."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "seglab.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=600, env=env, check=False)


@pytest.mark.slow
def test_two_process_run_trains_resumes_and_scores_like_one_process(tmp_path):
    data = few_camvid_images(tmp_path / "camvid")
    done = seglab(*TRAIN, "--data", data, "--epochs", "2", "--devices", "2", "--strategy", "ddp",
                  "--out", tmp_path, "--name", "ddp")
    assert done.returncode == 0, done.stderr[-3000:]
    run = RunDir(tmp_path / "ddp")
    info = run.read_info()
    # each process takes 5 // 2 = 2 training images: one step of batch 2 per epoch, 4 images in all per epoch
    assert info["status"] == "finished" and info["processes"] == 2
    assert info["steps"] == 2 and info["images_seen"] == 2 * 2 * 2 and info["epochs"] == 2.0
    rows = run.read_epochs()
    assert [r["step"] for r in rows] == [1, 2]  # one row per validation, written once (by the lead process)
    assert run.read_metrics("test")["num_images"] == 5

    # validation summed over the two processes scored every val image once: the same number one process gets
    best_val = max(r["val_miou"] for r in rows)
    single = seglab("evaluate", run.path, "--split", "val")
    assert single.returncode == 0, single.stderr[-3000:]
    assert run.read_metrics("val")["num_images"] == 5
    assert round(run.read_metrics("val")["miou"], 6) == pytest.approx(best_val, abs=1e-6)

    # resume the distributed run for one more epoch: it continues from its checkpoint, on two processes again
    cfg = yaml.safe_load(run.config.read_text())
    cfg["train"]["epochs"] = 3
    run.config.write_text(yaml.safe_dump(cfg))
    resumed = seglab("train", "--resume", run.path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert [r["step"] for r in run.read_epochs()] == [1, 2, 3]
    assert run.read_info()["steps"] == 3 and run.read_info()["status"] == "finished"
    assert json.loads(run.metrics("test").read_text())["num_images"] == 5
