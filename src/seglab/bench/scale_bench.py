"""``seglab bench scale``: does a Cityscapes-sized dataset train without swapping, under the default memory policy?

Cityscapes' 2,975 training and 500 validation images at 1024x2048 are about 29 GB decoded, more than a 24 GB
machine holds beside training. This writes a synthetic dataset of that size in the Cityscapes layout, runs
``seglab train`` on it as a user would (default ``data.cache: auto`` and ``data.memory_budget``) for one full
epoch, validation and the test scoring at native resolution included, and samples the machine's memory twice
a second while it runs: the memory in use beyond what it was at the start, the swap in use, and the resident
memory of the training process and its DataLoader workers. A model small enough that the epoch is bound by
decoding, not by the network, is the default, and the run validates once, at the end of the epoch (the
default ten validations would score the 500 full-size images ten times): the question is what the data path
holds, and an epoch of a large model would take hours on a CPU without holding more data.

The files are hard links to a few distinct pairs, so the disk holds a few images, not 3,475; every sample
is still its own path, opened and decoded by the loader each time, which is what streaming costs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from seglab.bench.data_bench import write_pairs
from seglab.bench.report import command_line, finish, machine_info, print_table
from seglab.data.memory import BYTES_PER_PIXEL, GB
from seglab.errors import SeglabError

CITY = "synth"  # the one "city" folder of the synthetic dataset


def write_cityscapes(root: Path, train: int, val: int, size: tuple[int, int], distinct: int) -> None:
    """``leftImg8bit/{train,val}/synth/*_leftImg8bit.png`` with ``gtFine/.../*_gtFine_labelTrainIds.png``:
    ``distinct`` written pairs (trainIds 0-18, 255 void), hard-linked under every name."""
    (root.parent / "distinct").mkdir(parents=True)
    pairs = write_pairs(root.parent / "distinct", distinct, size)
    for split, n in (("train", train), ("val", val)):
        images, labels = root / "leftImg8bit" / split / CITY, root / "gtFine" / split / CITY
        images.mkdir(parents=True)
        labels.mkdir(parents=True)
        for i in range(n):
            stem = f"{CITY}_{i:06d}_000019"
            pair = pairs[i % distinct]
            os.link(pair.image, images / f"{stem}_leftImg8bit.png")
            os.link(pair.mask, labels / f"{stem}_gtFine_labelTrainIds.png")


class MemorySampler:
    """Samples, every ``interval`` s in a thread: the machine's memory in use (total - available), its swap
    in use, and the summed RSS of ``pid`` and its children (forked workers share pages, so that sum is an
    upper bound; the machine's figure is the one that decides swapping)."""

    def __init__(self, pid: int, interval: float = 0.5):
        self.process = psutil.Process(pid)
        self.interval = interval
        self.start_used = self._used()
        self.start_swap = psutil.swap_memory().used
        self.peak_used = self.start_used
        self.peak_swap = self.start_swap
        self.peak_tree_rss = 0
        self.peak_workers = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _used() -> int:
        vm = psutil.virtual_memory()
        return vm.total - vm.available

    def _tree_rss(self) -> tuple[int, int]:
        try:
            procs = [self.process, *self.process.children(recursive=True)]
        except psutil.Error:
            return 0, 0
        total = 0
        for p in procs:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total, len(procs) - 1

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_used = max(self.peak_used, self._used())
            self.peak_swap = max(self.peak_swap, psutil.swap_memory().used)
            rss, workers = self._tree_rss()
            self.peak_tree_rss = max(self.peak_tree_rss, rss)
            self.peak_workers = max(self.peak_workers, workers)
            self.samples += 1

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def record(self) -> dict:
        vm, swap = psutil.virtual_memory(), psutil.swap_memory()
        return {"machine_total_gb": round(vm.total / GB, 2), "swap_total_gb": round(swap.total / GB, 2),
                "used_at_start_gb": round(self.start_used / GB, 2),
                "peak_used_gb": round(self.peak_used / GB, 2),
                "peak_used_by_run_gb": round((self.peak_used - self.start_used) / GB, 2),
                "peak_process_tree_rss_gb": round(self.peak_tree_rss / GB, 2),
                "peak_worker_processes": self.peak_workers,
                "swap_used_at_start_gb": round(self.start_swap / GB, 3),
                "peak_swap_used_gb": round(self.peak_swap / GB, 3),
                "swapped": self.peak_swap > self.start_swap, "samples": self.samples}


def run_scale_bench(train: int = 2975, val: int = 500, size: tuple[int, int] = (1024, 2048), distinct: int = 8,
                    model: str = "scratch:simplesegnet", crop: tuple[int, int] = (128, 256), batch: int = 8,
                    eval_size: tuple[int, int] = (256, 512), epochs: int = 1, extra: list[str] | None = None,
                    out: Path | None = None, show: bool = True) -> dict:
    """The report described in the module docstring; ``extra``: more ``seglab train`` arguments."""
    machine = machine_info()
    with tempfile.TemporaryDirectory(prefix="seglab-bench-scale-") as folder:
        root = Path(folder) / "cityscapes"
        write_cityscapes(root, train, val, size, distinct)
        runs = Path(folder) / "runs"
        argv = [sys.executable, "-m", "seglab.cli", "train", "--data", str(root), "--layout", "cityscapes",
                "--model", model, "--weights", "none", "--size", "x".join(map(str, crop)), "--batch", str(batch),
                "--eval-size", "x".join(map(str, eval_size)), "--epochs", str(epochs), "--out", str(runs),
                "--name", "scale", "--set", "train.val_points=1", *(extra or [])]
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        with MemorySampler(proc.pid) as sampler:
            output = proc.communicate()[0]
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise SeglabError(f"seglab train on the synthetic Cityscapes failed (exit {proc.returncode}): "
                              + " | ".join(output.strip().splitlines()[-3:]))
        info = json.loads((runs / "scale" / "run.json").read_text())
        metrics = json.loads((runs / "scale" / "metrics.json").read_text())
    report = {
        "benchmark": "scale",
        "setup": {"layout": "cityscapes", "train_images": train, "val_images": val, "image_size": list(size),
                  "distinct_files": distinct, "model": model, "crop": list(crop), "batch": batch,
                  "eval_size": list(eval_size), "epochs": epochs, "validations": "once, at the end (train.val_points=1)",
                  "data_settings": "defaults (data.cache: auto, data.memory_budget: 50% of available)",
                  "extra_arguments": extra or []},
        "decoded_gb_if_cached": round((train + val) * size[0] * size[1] * BYTES_PER_PIXEL / GB, 2),
        "policy": info.get("data_cache"),
        "training": {"steps": info.get("steps"), "images_seen": info.get("images_seen"),
                     "epochs": info.get("epochs"), "train_seconds": info.get("train_seconds"),
                     "val_seconds": info.get("val_seconds"), "wall_seconds": round(wall, 1),
                     "test_images_scored": metrics.get("num_images")},
        "memory": sampler.record(),
        "machine": machine, "command": command_line(),
    }
    return finish(report, out, _print if show else None)


def _print(report: dict) -> None:
    mem, policy = report["memory"], report["policy"] or {}
    s = report["setup"]
    print_table(f"seglab train on {s['train_images']}+{s['val_images']} synthetic "
                f"{'x'.join(map(str, s['image_size']))} Cityscapes pairs",
                ["figure", "value"],
                [["decoded if cached", f"{report['decoded_gb_if_cached']} GB"],
                 ["policy", f"cache={policy.get('cache')}, {policy.get('workers')} workers"],
                 ["machine memory", f"{mem['machine_total_gb']} GB (swap {mem['swap_total_gb']} GB)"],
                 ["peak in use by the run", f"{mem['peak_used_by_run_gb']} GB"],
                 ["peak RSS, process + workers", f"{mem['peak_process_tree_rss_gb']} GB"],
                 ["swap used at peak", f"{mem['peak_swap_used_gb']} GB"],
                 ["wall time", f"{report['training']['wall_seconds']} s"]],
                footer=policy.get("reason", ""))
