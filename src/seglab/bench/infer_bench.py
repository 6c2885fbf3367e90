"""Inference latency per frame: the PyTorch fp32 eager model against the fastest path that agrees with it.

    seglab bench infer --data ../shared/camvid --model unet:resnet18 --out infer.json
    seglab bench infer --data ../shared/camvid --checkpoint runs/<run> --out infer.json

Every path does the same per-frame work: a (H, W, 3) uint8 test image is padded (edge pixels repeated, as
the Predictor does) to a multiple of 32, e.g. 360x480 -> 384x480, run at batch 1, cropped back and turned
into a label map. A path counts as a candidate only if its labels match eager fp32 on at least
``AGREEMENT`` of the pixels; the fastest candidate gives ``speedup`` = eager ms / fastest ms.

Random-init weights (the default without --checkpoint) have small logit margins, so their agreement under
bf16 is a pessimistic estimate; pass a trained run for the figure that matters.
"""

from __future__ import annotations

import copy
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from seglab.bench import flops
from seglab.bench.memory import PeakRSS, rss_mb
from seglab.bench.report import finish, machine_info, print_table
from seglab.constants import SIZE_DIVISOR
from seglab.data import open_source
from seglab.data.dataset import read_image
from seglab.models import build_model
from seglab.training.threads import usable_cpus

AGREEMENT = 0.995  # share of pixels whose label must match eager fp32 for a path to count

Forward = Callable[[torch.Tensor], torch.Tensor]  # (1, 3, H, W) float 0..255 -> (1, C, H, W) logits


def _channels_last(model: torch.nn.Module) -> torch.nn.Module:
    """A frozen channels-last copy: inference needs no gradients, and tracing refuses tensors that want them."""
    return copy.deepcopy(model).eval().requires_grad_(False).to(memory_format=torch.channels_last)


def _bf16(fn: Forward) -> Forward:
    def run(x):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return fn(x.contiguous(memory_format=torch.channels_last))
    return run


def eager_fp32(model, example, workdir) -> Forward:
    return model


def eager_bf16_cl(model, example, workdir) -> Forward:
    return _bf16(_channels_last(model))


def _traced(model, example, bf16: bool):
    """TorchScript trace + freeze: batch norms fold into the convolutions and weights become constants."""
    m, x = _channels_last(model), example.contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape-dependent branches are expected
        return torch.jit.freeze(torch.jit.trace(m, x))


def jit_fp32_cl(model, example, workdir) -> Forward:
    traced = _traced(model, example, bf16=False)
    return lambda x: traced(x.contiguous(memory_format=torch.channels_last))


def jit_bf16_cl(model, example, workdir) -> Forward:
    return _bf16(_traced(model, example, bf16=True))


def onnx_fp32(model, example, workdir) -> Forward:
    """ONNX Runtime on the CPU with a static export at the padded frame size, as many threads as torch."""
    import onnxruntime as ort

    from seglab.data.classes import ClassSet, default_colors
    from seglab.inference.export import ONNX_INPUT, export_onnx

    n = model.num_classes
    classes = ClassSet(tuple(f"class{i}" for i in range(n)), tuple(default_colors(n)))
    path = export_onnx(model, classes, Path(workdir) / "model.onnx", dynamic=False, size=tuple(example.shape[-2:]))
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(session.run(None, {ONNX_INPUT: x.numpy()})[0])


def compiled_bf16_cl(model, example, workdir) -> Forward:
    """torch.compile (Inductor) with frozen weights: batch norms and elementwise work fuse into generated
    C++ kernels. Compiling takes about a minute on 2 cores, counted in setup_s."""
    import torch._inductor.config as inductor

    run = _bf16(torch.compile(_channels_last(model), dynamic=False))
    with inductor.patch(freezing=True), torch.inference_mode():
        run(example)  # compile now, for the frame size the benchmark uses
    return run


# name -> (maker, dtype the path computes in); eager_fp32 first: it is the reference.
PATHS = {
    "eager_fp32": (eager_fp32, "float32"),
    "eager_bf16_cl": (eager_bf16_cl, "bfloat16"),
    "jit_fp32_cl": (jit_fp32_cl, "float32"),
    "jit_bf16_cl": (jit_bf16_cl, "bfloat16"),
    "onnx_fp32": (onnx_fp32, "float32"),
    "compiled_bf16_cl": (compiled_bf16_cl, "bfloat16"),
}


def padded(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, Hp, Wp) float, edge-padded bottom/right to multiples of 32."""
    h, w = image.shape[:2]
    hp, wp = -(-h // SIZE_DIVISOR) * SIZE_DIVISOR, -(-w // SIZE_DIVISOR) * SIZE_DIVISOR
    image = np.pad(image, ((0, hp - h), (0, wp - w), (0, 0)), mode="edge")
    return torch.from_numpy(image).permute(2, 0, 1)[None].float()


@torch.inference_mode()
def predict(forward: Forward, image: np.ndarray) -> np.ndarray:
    """The timed unit: one frame to one (H, W) label map."""
    h, w = image.shape[:2]
    return forward(padded(image))[0, :, :h, :w].argmax(0).to(torch.uint8).numpy()


def load_frames(data: str, count: int) -> list[np.ndarray]:
    samples = open_source(data).split("test")[:count]
    return [read_image(s.image) for s in samples]


def _build_alone(names, model, example, images, baseline: float, workdir: str) -> tuple[dict, dict]:
    """Build and warm up each path in turn: its setup time (tracing, export, compiling) and peak RSS."""
    forwards, info = {}, {}
    for name in names:
        t0 = time.perf_counter()
        with PeakRSS(baseline) as peak:
            forwards[name] = PATHS[name][0](model, example, workdir)
            setup_s = time.perf_counter() - t0
            for image in images[:2]:
                predict(forwards[name], image)  # warm-up: kernel selection, first-call allocations
        info[name] = {"setup_s": round(setup_s, 2), "peak_rss_mb": peak.mb}
    return forwards, info


def _take_turns(forwards: dict, images, repeats: int) -> tuple[dict, dict]:
    """Seconds per frame of every path, passes taken in turns; the label maps of the first pass."""
    times = {name: [] for name in forwards}
    labels: dict[str, list[np.ndarray]] = {name: [] for name in forwards}
    for r in range(repeats):
        for name, forward in forwards.items():
            for image in images:
                t0 = time.perf_counter()
                pred = predict(forward, image)
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
    if checkpoint:
        from seglab.runs import read_trained

        model = read_trained(checkpoint).build()
    else:
        model = build_model(spec, open_source(data).classes.num_classes, weights="none").eval()
    names = ["eager_fp32", *[p for p in (PATHS if paths is None else paths) if p != "eager_fp32"]]
    example = padded(images[0])
    with tempfile.TemporaryDirectory(prefix="seglab-bench-") as workdir:
        forwards, info = _build_alone(names, model, example, images, baseline, workdir)
        times, labels = _take_turns(forwards, images, repeats)

    frame_flops = flops.forward_flops(model, example)
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
        "setup": {"data": str(data), "model": model.spec, "weights": checkpoint or "none (random init)",
                  "frames": len(images), "frame_size": list(images[0].shape[:2]),
                  "padded_size": list(example.shape[-2:]), "repeats": repeats, "batch": 1},
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
    print_table(f"inference: {s['model']} {s['frame_size'][0]}x{s['frame_size'][1]} (padded "
                f"{s['padded_size'][0]}x{s['padded_size'][1]}), batch 1",
                ["path", "ms/frame", "fps", "agreement", "of peak", "peak RSS MB", "setup s"], rows,
                footer=f"* fastest with agreement >= {report['agreement_threshold']}: speedup "
                       f"{report['speedup']:.2f}x  ({report['machine']['cpu']}, "
                       f"{report['machine']['threads']} threads)")
