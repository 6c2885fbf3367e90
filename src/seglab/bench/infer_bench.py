"""Inference latency per frame of `seglab predict`'s own Predictor, with each backend it ships.

    seglab bench infer --data ../shared/camvid --model unet:resnet18 --out infer.json
    seglab bench infer --data ../shared/camvid --checkpoint runs/<run> --out infer.json

Every path is a Predictor (batch 1, no test-time augmentation) timed by ``predict(frame)`` on real test
frames: RGB conversion, padding to a multiple of 32 (or resizing to the run's training scale), forward,
crop and argmax, i.e. what a user of `seglab predict` or ``seglab.load(...).predict`` waits for. Paths
differ only in their backend: PyTorch in fp32, PyTorch under bf16 autocast with channels-last memory (the
default on CPUs with bf16 units), and ONNX Runtime on a static fp32 export at the model's input size
(`seglab export --size HxW`). A path counts as a candidate only if its labels match fp32 on at least
``AGREEMENT`` of the pixels; the fastest candidate gives ``speedup`` = fp32 ms / fastest ms.

Random-init weights (the default without --checkpoint) have small logit margins, so their agreement under
bf16 is a pessimistic estimate; pass a trained run for the figure that matters.
"""

from __future__ import annotations

import copy
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from seglab.bench import flops
from seglab.bench.memory import PeakRSS, rss_mb
from seglab.bench.report import finish, machine_info, print_table
from seglab.data import open_source
from seglab.data.classes import ClassSet
from seglab.imageio import read_image
from seglab.inference.backends import Backend, OnnxBackend, TorchBackend, predict_precision
from seglab.inference.predictor import Predictor, load
from seglab.models import build_model
from seglab.sizes import round_up
from seglab.training.threads import usable_cpus

AGREEMENT = 0.995  # share of pixels whose label must match fp32 for a path to count


def _own_copy(model: torch.nn.Module) -> torch.nn.Module:
    """Each path its own contiguous copy: the channels-last conversion for autocast happens in place."""
    return copy.deepcopy(model).to(memory_format=torch.contiguous_format)


def _torch(precision: str):
    def make(model, classes, size, workdir, threads) -> Backend:
        return TorchBackend(_own_copy(model), "cpu", precision=precision)
    return make


def _onnx(model, classes, size, workdir, threads) -> Backend:
    from seglab.inference.export import export_onnx

    path = export_onnx(_own_copy(model), classes, Path(workdir) / "model.onnx", dynamic=False, size=size)
    return OnnxBackend(path, "cpu", threads=threads)


# name -> (backend maker, dtype the path computes in, train.precision it stands for); eager_fp32 first: it
# is the reference.
PATHS = {
    "eager_fp32": (_torch("32"), "float32", "32"),
    "eager_bf16_cl": (_torch("bf16-mixed"), "bfloat16", "bf16-mixed"),
    "onnx_fp32": (_onnx, "float32", None),
}


def load_frames(data: str, count: int) -> list[np.ndarray]:
    samples = open_source(data).split("test")[:count]
    return [read_image(s.image) for s in samples]


def _model(data: str, spec: str | None, checkpoint: str | None):
    """(model, classes, training scale or None, the precision `seglab predict` would pick here)."""
    if checkpoint:
        shipped = load(checkpoint, device="cpu", batch_size=1, tta="none")
        return shipped.backend.model, shipped.classes, shipped.input_size, shipped.backend.precision
    classes: ClassSet = open_source(data).classes
    model = build_model(spec, classes.num_classes, weights="none").eval()
    return model, classes, None, predict_precision("auto", None, "cpu")


def _build_alone(names, model, classes, input_size, model_size, images, baseline: float, threads: int,
                 workdir: str) -> tuple[dict, dict]:
    """Build and warm up each path's Predictor in turn: its setup time (export) and peak RSS."""
    predictors, info = {}, {}
    for name in names:
        t0 = time.perf_counter()
        with PeakRSS(baseline) as peak:
            backend = PATHS[name][0](model, classes, model_size, workdir, threads)
            predictors[name] = Predictor(backend, classes, batch_size=1, input_size=input_size, tta="none")
            setup_s = time.perf_counter() - t0
            for image in images[:2]:
                predictors[name].predict(image)  # warm-up: kernel selection, first-call allocations
        info[name] = {"setup_s": round(setup_s, 2), "peak_rss_mb": peak.mb}
    return predictors, info


def _take_turns(predictors: dict, images, repeats: int) -> tuple[dict, dict]:
    """Seconds per frame of every path, passes taken in turns; the label maps of the first pass."""
    times = {name: [] for name in predictors}
    labels: dict[str, list[np.ndarray]] = {name: [] for name in predictors}
    for r in range(repeats):
        for name, predictor in predictors.items():
            for image in images:
                t0 = time.perf_counter()
                pred = predictor.predict(image)
                times[name].append(time.perf_counter() - t0)
                if r == 0:
                    labels[name].append(pred)
    return times, labels


def run_infer_bench(data: str, spec: str | None = None, checkpoint: str | None = None, frames: int = 10,
                    repeats: int = 3, threads: int | None = None, paths: list[str] | None = None, out=None,
                    show: bool = True) -> dict:
    """Time eager fp32 and each path in ``paths`` (default: all of PATHS) on ``frames`` test images."""
    torch.set_num_threads(threads or torch.get_num_threads())
    machine = machine_info()
    baseline = rss_mb()
    images = load_frames(data, frames)
    model, classes, input_size, default = _model(data, spec, checkpoint)
    h, w = images[0].shape[:2]
    model_size = tuple(input_size) if input_size else (round_up(h), round_up(w))  # what the model sees
    names = ["eager_fp32", *[p for p in (PATHS if paths is None else paths) if p != "eager_fp32"]]
    with tempfile.TemporaryDirectory(prefix="seglab-bench-") as workdir:
        predictors, info = _build_alone(names, model, classes, input_size, model_size, images, baseline,
                                        torch.get_num_threads(), workdir)
        times, labels = _take_turns(predictors, images, repeats)

    frame_flops = flops.forward_flops(model, torch.zeros(1, 3, *model_size, dtype=torch.uint8))
    peaks = flops.machine_peaks(usable_cpus())
    reference = np.stack(labels["eager_fp32"])
    results = {}
    for name in names:
        ms = round(1000 * statistics.median(times[name]), 3)
        dtype = PATHS[name][1]
        results[name] = {"ms_per_frame": ms, "fps": 1000 / ms,
                         "agreement": float((np.stack(labels[name]) == reference).mean()),
                         "utilisation": flops.utilisation(frame_flops, 1000 / ms, peaks[dtype]["best"]),
                         "dtype": dtype, **info[name]}
    fastest = min((n for n in names if results[n]["agreement"] >= AGREEMENT),
                  key=lambda n: results[n]["ms_per_frame"])
    report = {
        "benchmark": "infer",
        "speedup": results["eager_fp32"]["ms_per_frame"] / results[fastest]["ms_per_frame"],
        "fastest": fastest,
        "agreement_threshold": AGREEMENT,
        # the path `seglab predict` takes on this machine without --amp/--no-amp
        "predict_default": next(n for n, p in PATHS.items() if p[2] == default),
        "setup": {"data": str(data), "model": model.spec, "weights": checkpoint or "none (random init)",
                  "frames": len(images), "frame_size": [h, w], "model_input_size": list(model_size),
                  "strategy": "resize to training scale" if input_size else "native (padded)",
                  "repeats": repeats, "batch": 1, "tta": "none"},
        "paths": results,
        "compute": {"forward_flops_per_frame": frame_flops, "matmul_peak_flops": peaks},
        "machine": machine,
    }
    finish(report, out)
    if show:
        _print(report)
    return report


def _print(report: dict) -> None:
    rows = [[("* " if name == report["fastest"] else "") + name, p["ms_per_frame"], p["fps"], p["agreement"],
             p["utilisation"], p["peak_rss_mb"], p["setup_s"]] for name, p in report["paths"].items()]
    s = report["setup"]
    (h, w), (mh, mw) = s["frame_size"], s["model_input_size"]
    print_table(f"seglab predict: {s['model']} {h}x{w} frames, model input {mh}x{mw} ({s['strategy']}), batch 1",
                ["path", "ms/frame", "fps", "agreement", "of peak", "peak RSS MB", "setup s"], rows,
                footer=f"* fastest with agreement >= {report['agreement_threshold']}: speedup "
                       f"{report['speedup']:.2f}x; predict's default here: {report['predict_default']}  "
                       f"({report['machine']['cpu']}, {report['machine']['threads']} threads)")
