"""Training throughput: the notebooks' way against seglab's own training path, in one process.

    seglab bench train --data ../shared/camvid --model unet:resnet18 --size 256x256 --batch 4 --out bench.json

The notebook way is re-created faithfully: a Dataset that opens, decodes, resizes and normalises each PNG
in the main process (DataLoader with num_workers=0), fp32 NCHW, and a plain loop with Adam and
cross-entropy. seglab's path is what ``seglab train`` runs: SegDataModule and SegModule under a Trainer
from ``make_trainer``, with the default RunConfig except model, size and batch (and random-init weights,
which cost the same time as pretrained ones and need no download).

Both paths train on the same images with the same model. Each is built and warmed up alone (its peak
memory is measured then), then they take turns in rounds, so a change in machine load hits both. Within
a round the first step is not timed (it pays for the round's start); the figure is the median time between
the ends of consecutive steps, data loading included.
"""

from __future__ import annotations

import math
import os
import tempfile
import time

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # skip albumentations' PyPI query at import
import albumentations as A
import cv2
import numpy as np
import torch
from albumentations.pytorch import ToTensorV2
from torch.utils.data import DataLoader, Dataset

from seglab.bench import flops
from seglab.bench.memory import PeakRSS, rss_mb
from seglab.bench.report import finish, machine_info, print_table, summarise
from seglab.config import load_config
from seglab.constants import IGNORE_INDEX
from seglab.data.datamodule import SegDataModule
from seglab.data.open import open_data
from seglab.models import build_model
from seglab.training.budget import StepClock
from seglab.training.device import resolve_runtime
from seglab.training.module import SegModule
from seglab.training.threads import ThreadTuner, usable_cpus
from seglab.training.trainer import make_trainer, quiet


class NotebookDataset(Dataset):
    """The notebooks' dataset: every item reads both PNGs from disk and preprocesses them again."""

    def __init__(self, samples, lut: np.ndarray, size: tuple[int, int]):
        self.samples, self.lut = samples, lut
        self.transform = A.Compose([A.Resize(*size), A.Normalize(), ToTensorV2()])  # ImageNet mean/std

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i):
        sample = self.samples[i]
        image = cv2.cvtColor(cv2.imread(str(sample.image)), cv2.COLOR_BGR2RGB)
        mask = self.lut[cv2.imread(str(sample.mask), cv2.IMREAD_GRAYSCALE)].astype(np.uint8)  # void -> 255
        out = self.transform(image=image, mask=mask)
        return out["image"], out["mask"].long()


class NotebookPath:
    """fp32, NCHW, per-item decoding in the main process, a plain PyTorch loop with Adam and CE."""

    name = "notebook"

    def __init__(self, source, spec: str, size: tuple[int, int], batch: int, threads: int):
        self.threads = threads
        ds = NotebookDataset(source.split("train"), source.lut, size)
        self.loader = DataLoader(ds, batch_size=batch, shuffle=True, num_workers=0, drop_last=len(ds) > batch)
        self.net = build_model(spec, source.classes.num_classes, weights="none").net  # normalised by the dataset
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=1e-3)
        self.criterion = torch.nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX)
        self._batches = iter(())

    def _next(self):
        try:
            return next(self._batches)
        except StopIteration:
            self._batches = iter(self.loader)
            return next(self._batches)

    def run(self, steps: int) -> list[float]:
        """Train ``steps`` steps; returns the times between consecutive step ends (steps - 1 of them)."""
        torch.set_num_threads(self.threads)
        self.net.train()
        ends = []
        for _ in range(steps):
            images, masks = self._next()
            self.optimizer.zero_grad()
            loss = self.criterion(self.net(images), masks)
            loss.backward()
            self.optimizer.step()
            ends.append(time.perf_counter())
        return list(np.diff(ends))


def loader_throughput(loader, batches: int) -> float:
    """Images per second the loader alone delivers: it must outrun training, or data is the bottleneck."""
    done, images, t0 = 0, 0, time.perf_counter()
    while done < batches:
        for images_batch, _ in loader:
            images += images_batch.shape[0]
            done += 1
            if done == batches:
                break
    return images / (time.perf_counter() - t0)


class SeglabPath:
    """``seglab train``'s data module, LightningModule and Trainer, with the default RunConfig."""

    name = "seglab"

    def __init__(self, cfg, source, threads: int, workdir: str, extra_callbacks: list | None = None):
        self.cfg, self.threads, self.workdir = cfg, threads, workdir
        self.extra_callbacks = extra_callbacks or []  # kept across rounds, like one long run
        self.datamodule = SegDataModule(source, cfg.data)
        self.datamodule.setup("fit")  # decode the cache now, as `seglab train` does before fitting
        self.module = SegModule(cfg, source.classes)  # cfg.model.weights is none: random init
        self.observed_threads = threads
        self.loader = self.datamodule.train_dataloader()

    def run(self, steps: int) -> list[float]:
        torch.set_num_threads(self.threads)  # seglab's own thread choice, if it makes one, comes after this
        clock = StepClock(time.perf_counter)
        trainer = make_trainer(
            self.cfg.train, max_steps=steps, max_epochs=-1, limit_val_batches=0,
            logger=False, enable_checkpointing=False, enable_progress_bar=False,
            callbacks=[*self.extra_callbacks, clock], default_root_dir=self.workdir,
        )
        with quiet():
            trainer.fit(self.module, datamodule=self.datamodule)
        self.observed_threads = clock.threads
        return clock.costs


def _build_alone(makers, baseline: float, warmup: int, loader_batches: int) -> tuple[dict, dict]:
    """Build and warm up each path before the next exists: its setup time, peak RSS and loader speed."""
    paths, info = {}, {}
    for make in makers:
        t0 = time.perf_counter()
        with PeakRSS(baseline) as peak:
            path = make()
            setup_s = time.perf_counter() - t0
            if warmup:
                path.run(warmup)
        paths[path.name] = path
        info[path.name] = {"setup_s": round(setup_s, 2), "peak_rss_mb": peak.mb,
                           "loader_imgs_per_s": round(loader_throughput(path.loader, loader_batches), 2)}
    return paths, info


def run_train_bench(data: str, spec: str, size: tuple[int, int], batch: int, steps: int = 12, warmup: int = 2,
                    rounds: int = 3, threads: int | None = None, tune_threads: bool = False, out=None,
                    show: bool = True) -> dict:
    """Measure both paths and return (and write to ``out``) the report; ``speedup`` = seglab / notebook.

    ``tune_threads`` adds the ThreadTuner (training/threads.py, `train.threads: auto`) to seglab's path.
    """
    threads = threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    machine = machine_info()
    baseline = rss_mb()
    cfg = load_config(overrides={"data.root": data, "model.spec": spec, "model.weights": "none",
                                 "data.size": list(size), "data.batch_size": batch})
    source = open_data(cfg.data)
    precision = resolve_runtime(cfg.train).precision

    with tempfile.TemporaryDirectory(prefix="seglab-bench-") as workdir:
        makers = (lambda: NotebookPath(source, spec, size, batch, threads),
                  lambda: SeglabPath(cfg, source, threads, workdir, [ThreadTuner()] if tune_threads else []))
        paths, info = _build_alone(makers, baseline, warmup, steps)
        per_round = math.ceil(steps / rounds) + 1  # + 1: the first step of a round is not timed
        times: dict[str, list[float]] = {name: [] for name in paths}
        for _ in range(rounds):
            for name, path in paths.items():
                times[name] += path.run(per_round)

    flops_per_image = flops.train_flops_per_image(build_model(spec, source.classes.num_classes, weights="none"),
                                                  size, source.classes.num_classes)
    peaks = flops.machine_peaks(usable_cpus())
    settings = {
        "notebook": {"precision": "32", "channels_last": False, "workers": 0, "cache": False,
                     "threads": paths["notebook"].threads},
        "seglab": {"precision": precision, "channels_last": cfg.train.channels_last, "workers": cfg.data.workers,
                   "cache": cfg.data.cache, "threads": paths["seglab"].observed_threads,
                   "thread_tuning": tune_threads},
    }
    results = {}
    for name in paths:
        s = summarise(times[name], batch)
        peak = peaks["bfloat16" if settings[name]["precision"] == "bf16-mixed" else "float32"]["best"]
        results[name] = {**settings[name], **info[name], **{k: v for k, v in s.items() if k != "per_s"},
                         "imgs_per_s": round(s["per_s"], 4),
                         "utilisation": flops.utilisation(flops_per_image, s["per_s"], peak)}
    report = {
        "benchmark": "train",
        "speedup": results["seglab"]["imgs_per_s"] / results["notebook"]["imgs_per_s"],
        "setup": {"data": str(source.root), "model": spec, "size": list(size), "batch": batch,
                  "train_images": len(source.split("train")), "warmup_steps": warmup, "rounds": rounds,
                  "timed_steps_per_path": rounds * (per_round - 1)},
        "paths": results,
        "compute": {"train_flops_per_image": flops_per_image,
                    "matmul_peak_flops": peaks,
                    "note": "utilisation = train FLOPs/image x images/s / best matmul peak of the path's dtype "
                            "(bf16 for bf16-mixed, else fp32) over 1 thread and all usable CPUs"},
        "machine": machine,
    }
    finish(report, out)
    if show:
        _print(report)
    return report


def _print(report: dict) -> None:
    rows = [[name, p["precision"], p["imgs_per_s"], 1000 * p["step_s_median"], p["utilisation"],
             p["loader_imgs_per_s"], p["peak_rss_mb"], p["setup_s"]] for name, p in report["paths"].items()]
    s = report["setup"]
    print_table(f"training: {s['model']} {s['size'][0]}x{s['size'][1]} batch {s['batch']}",
                ["path", "precision", "img/s", "step ms", "of peak", "loader img/s", "peak RSS MB", "setup s"], rows,
                footer=f"speedup {report['speedup']:.2f}x  ({report['machine']['cpu']}; threads: notebook "
                       f"{report['paths']['notebook']['threads']}, seglab {report['paths']['seglab']['threads']})")
