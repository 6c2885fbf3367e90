"""``seglab bench data``: can streamed loading keep up with training, and with how many workers?

A dataset too large for the decoded-image cache (``data.cache: auto`` over ``data.memory_budget``) is
decoded every epoch in DataLoader workers. This writes synthetic Cityscapes-sized PNG pairs of its own (so it
needs no dataset), loads them through seglab's dataset, sampler, collate and training transform, cached and
streamed with 0, 1, 2... workers, and compares each rate with a training step's (given, or measured on a
model at the crop). Without workers, loading adds to every step; with them it overlaps the step, so the first
worker count (from 1) whose images/s is at least the step's is the one streaming needs.
On a CPU-only machine the workers compete with training for the same cores, so the step is measured alone
and the answer is a lower bound.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader

from seglab.bench.report import command_line, finish, machine_info, print_table
from seglab.config.schema import DataConfig
from seglab.constants import IGNORE_INDEX
from seglab.data.classes import INVALID
from seglab.data.datamodule import EpochSampler, pad_collate, train_preset
from seglab.data.dataset import SegmentationDataset
from seglab.data.memory import BYTES_PER_PIXEL, GB
from seglab.data.sources import Sample

NUM_CLASSES = 19  # Cityscapes' training classes


def write_pairs(folder: Path, n: int, size: tuple[int, int], seed: int = 0) -> list[Sample]:
    """``n`` PNG image/mask pairs of ``size`` (H, W): smooth gradients with mild noise (they compress about as
    photos do, so decoding costs what a real file's does) and blocky labels 0..18 with some void."""
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    samples = []
    for i in range(n):
        base = np.stack([xx / w * 200, yy / h * 200, (xx + yy) / (h + w) * 255], axis=-1) + rng.uniform(0, 55, 3)
        image = np.clip(base + rng.normal(0, 2, (h, w, 3)), 0, 255).astype(np.uint8)
        blocks = rng.integers(0, NUM_CLASSES + 1, (max(1, h // 64), max(1, w // 64)), dtype=np.uint8)
        mask = cv2.resize(blocks, (w, h), interpolation=cv2.INTER_NEAREST)
        mask[mask == NUM_CLASSES] = IGNORE_INDEX
        sample = Sample(folder / f"{i:03d}_image.png", folder / f"{i:03d}_label.png")
        cv2.imwrite(str(sample.image), image)
        cv2.imwrite(str(sample.mask), mask)
        samples.append(sample)
    return samples


def _lut() -> np.ndarray:
    lut = np.full(256, INVALID, np.int16)
    lut[:NUM_CLASSES] = np.arange(NUM_CLASSES)
    lut[IGNORE_INDEX] = IGNORE_INDEX
    return lut


def loading_rate(samples: list[Sample], crop: tuple[int, int], batch: int, workers: int, cache: bool) -> float:
    """Images/s of one timed pass over ``samples`` as training loads them, after an untimed pass (it starts
    the persistent workers and, when caching, fills the cache)."""
    transform = train_preset(DataConfig(), crop, seed=0)  # seglab's default augmentation
    ds = SegmentationDataset(samples, _lut(), NUM_CLASSES, transform=transform, cache=cache)
    sampler = EpochSampler(len(ds), seed=0)
    loader = DataLoader(ds, batch_size=batch, sampler=sampler, num_workers=workers, collate_fn=pad_collate,
                        persistent_workers=workers > 0)
    for epoch in range(2):
        sampler.set_epoch(epoch)
        start = time.perf_counter()
        images = sum(len(images) for images, _ in loader)
    return images / (time.perf_counter() - start)


def step_seconds(spec: str, crop: tuple[int, int], batch: int, steps: int = 2) -> tuple[float, str]:
    """Median seconds of a training step (forward, backward, Adam) of ``spec`` on random data at ``crop``,
    after one untimed step, on CUDA when present; and the device's name."""
    from seglab.models import build_model

    device = "cuda" if torch.cuda.is_available() else "cpu"
    net = build_model(spec, NUM_CLASSES, weights="none").to(device).train()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
    images = torch.randint(0, 256, (batch, 3, *crop), device=device).float()
    masks = torch.randint(0, NUM_CLASSES, (batch, *crop), device=device)
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(net(images), masks).backward()
        optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return float(np.median(times[1:])), device


def run_data_bench(size: tuple[int, int] = (1024, 2048), crop: tuple[int, int] = (512, 1024), images: int = 24,
                   batch: int = 2, max_workers: int = 2, step_s: float | None = None,
                   model: str = "fpn:efficientnet-lite0", out: Path | None = None, show: bool = True) -> dict:
    """The report described in the module docstring; ``step_s`` given: no model is measured."""
    machine = machine_info()
    with tempfile.TemporaryDirectory(prefix="seglab-bench-data-") as folder:
        samples = write_pairs(Path(folder), images, size)
        file_mb = sum(s.image.stat().st_size for s in samples) / len(samples) / 1e6
        rows = [{"mode": "cached", "workers": 0, "images_per_s": loading_rate(samples, crop, batch, 0, True)}]
        rows += [{"mode": f"streamed, {w} workers", "workers": w,
                  "images_per_s": loading_rate(samples, crop, batch, w, False)} for w in range(max_workers + 1)]
    measured, device = (None, None) if step_s is not None else (model, None)
    if step_s is None:
        step_s, device = step_seconds(model, crop, batch)
    need = batch / step_s
    for r in rows:  # in the training process, loading adds to each step; workers overlap it with the step
        r["training_slowdown"] = round(1 + need / r["images_per_s"] if r["workers"] == 0 else
                                       max(1.0, need / r["images_per_s"]), 3)
    enough = [r["workers"] for r in rows if r["workers"] and r["images_per_s"] >= need]
    report = {
        "benchmark": "data",
        "setup": {"image_size": list(size), "crop": list(crop), "images": images, "batch": batch,
                  "max_workers": max_workers, "file_format": "png",
                  "image_file_mb": round(file_mb, 2)},
        "decoded_gb_per_image": round(size[0] * size[1] * BYTES_PER_PIXEL / GB, 6),
        "loading": [{**r, "images_per_s": round(r["images_per_s"], 3)} for r in rows],
        "step": {"seconds": round(step_s, 4), "batch": batch, "images_per_s": round(need, 3), "measured": measured,
                 **({"device": device} if device else {})},
        "streaming_workers_needed": enough[0] if enough else None,
        "machine": machine, "command": command_line(),
    }
    return finish(report, out, _print if show else None)


def _print(report: dict) -> None:
    step = report["step"]
    need = report["streaming_workers_needed"]
    verdict = f"streaming keeps up with {need} workers" if need is not None else \
        f"streaming does not keep up with up to {report['setup']['max_workers']} workers"
    h, w = report["setup"]["image_size"]
    print_table(f"Loading {h}x{w} PNG pairs at a {'x'.join(map(str, report['setup']['crop']))} crop",
                ["mode", "images/s", "x training's", "step slowdown"],
                [[r["mode"], r["images_per_s"], r["images_per_s"] / step["images_per_s"], r["training_slowdown"]]
                 for r in report["loading"]],
                footer=f"training: {step['images_per_s']:.3g} images/s ({step['seconds']:.3g} s per batch of "
                       f"{step['batch']}); {verdict}")
