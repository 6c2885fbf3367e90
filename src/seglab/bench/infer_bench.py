"""The latency x accuracy table: each model on each backend and precision `seglab predict` offers, timed
and scored in one pass over the test split.

    seglab bench infer --data ../shared/camvid --checkpoint runs/camvid-cpu-60m --checkpoint runs/fast \
        --out benchmarks/infer.json

A row is a model on one path (backend/precision): PyTorch eager fp32 (the reference), eager bf16 autocast
with channels-last, ``torch.compile`` in bf16, ONNX Runtime fp32 and INT8, OpenVINO fp32, bf16 and INT8.
Exports are made by the functions `seglab export` uses (static at the model's input size; INT8 calibrated
on training images), and every path is a batch-1 Predictor without test-time augmentation, so the time is
what `seglab predict` waits for per frame: decode excluded; padding or resizing, forward, crop and argmax
included. Each model's paths take turns frame by frame over the test split (inference/verify.py), so one
pass gives each row's latency (median and p90 after the warm-up frames), its test mIoU through that backend
and its pixel agreement with PyTorch fp32, and a change in machine load hits every row alike. Peak memory is
each path's own, measured while it is built and warmed up (bench/memory.py). A path this machine cannot run
(no bf16 units, compilation failing) is a row with ``unavailable`` and the reason, not a crash.
"""

from __future__ import annotations

import copy
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from seglab.bench.memory import PeakRSS, rss_mb
from seglab.bench.report import command_line, finish, machine_info, print_table
from seglab.data.dataset import SegmentationDataset
from seglab.data.sources import open_source
from seglab.device import cpu_has_fast_bf16
from seglab.errors import SeglabError, first_line
from seglab.inference.backends import OnnxBackend, OpenVinoBackend, TorchBackend
from seglab.inference.predictor import Predictor, load
from seglab.inference.verify import compare, labelled_pairs
from seglab.models import build_model
from seglab.sizes import round_up

# The accuracy and speed issue 13 asks of one row: test mIoU >= 0.65 at >= 30 frames per second.
TARGET = {"test_miou": 0.65, "fps": 30.0}


@dataclass(frozen=True)
class BackendVariant:
    """What runs a model (a key of inference.backends.BACKENDS) and the arithmetic it runs in."""

    backend: str
    precision: str

    @property
    def name(self) -> str:
        return f"{self.backend}/{self.precision}"


VARIANTS = {v.name: v for v in (
    BackendVariant("torch", "fp32"), BackendVariant("torch", "bf16"), BackendVariant("torch-compile", "bf16"),
    BackendVariant("onnxruntime", "fp32"), BackendVariant("onnxruntime", "int8"),
    BackendVariant("openvino", "fp32"), BackendVariant("openvino", "bf16"), BackendVariant("openvino", "int8"))}
REFERENCE = "torch/fp32"


class Unavailable(Exception):
    """This machine or platform cannot run the path; the message says why, in one line."""


class _Models:
    """One model's reference Predictor and the files and calibration its exported paths share."""

    def __init__(self, reference: Predictor, source, size: tuple[int, int], workdir: Path, calibration: int):
        self.reference, self.source, self.size, self.workdir = reference, source, size, workdir
        self.calibration = calibration
        self._inputs = None

    def inputs(self) -> list[np.ndarray]:
        from seglab.inference.shipping import calibration_set

        if self._inputs is None:
            self._inputs = calibration_set(self.reference, self.source, self.calibration, self.size)
        return self._inputs

    def export(self, fmt: str, int8: bool) -> Path:
        from seglab.inference.shipping import write_export

        out = self.workdir / f"{fmt}_{'int8' if int8 else 'fp32'}.{'onnx' if fmt == 'onnx' else 'xml'}"
        return write_export(self.reference, fmt, out, self.inputs() if int8 else None, size=self.size)


def _backend(variant: BackendVariant, models: _Models, threads: int):
    """The backend of one variant: PyTorch on its own copy of the reference model (channels-last conversion
    happens in place), or the runtime on the export it needs."""
    bf16 = "bf16-mixed"
    if variant.precision == "bf16" and not cpu_has_fast_bf16():
        raise Unavailable("this CPU has no bf16 units")
    if variant.backend in ("torch", "torch-compile"):
        model = copy.deepcopy(models.reference.backend.model).to(memory_format=torch.contiguous_format)
        return TorchBackend(model, "cpu", precision=bf16 if variant.precision == "bf16" else "32",
                            compile=variant.backend == "torch-compile")
    file = models.export("onnx" if variant.backend == "onnxruntime" else "openvino", variant.precision == "int8")
    if variant.backend == "onnxruntime":
        return OnnxBackend(file, "cpu", threads=threads)
    return OpenVinoBackend(file, "cpu", precision="32" if variant.precision == "fp32" else bf16, threads=threads)


def _build(names: list[str], models: _Models, first_frames: list[np.ndarray], baseline: float,
           threads: int) -> tuple[dict, dict]:
    """Each path's Predictor, built and warmed up alone: setup seconds and peak RSS, or why it is unavailable."""
    predictors, info = {}, {}
    for name in names:
        t0 = time.perf_counter()
        try:
            with PeakRSS(baseline) as peak:
                backend = _backend(VARIANTS[name], models, threads)
                predictor = Predictor(backend, models.reference.classes, batch_size=1,
                                      input_size=models.reference.input_size, tta="none")
                for frame in first_frames:
                    predictor.predict(frame)  # kernel selection, compilation, first-call allocations
        except (Unavailable, SeglabError) as e:
            info[name] = {"unavailable": first_line(e, 200)}
            continue
        except Exception as e:  # noqa: BLE001 - a runtime failing on this platform is a row, not a crash
            info[name] = {"unavailable": f"{type(e).__name__}: {first_line(e, 200)}"}
            continue
        predictors[name] = predictor
        info[name] = {"setup_s": round(time.perf_counter() - t0, 2), "peak_mb": peak.mb,
                      "dtype": backend.dtype}
    return predictors, info


def _model_rows(target: str | None, spec: str | None, source, names: list[str], frames: int | None,
                warmup: int, calibration: int, threads: int, baseline: float, workdir: Path) -> list[dict]:
    """One row per variant of one model (a checkpoint, or ``spec`` with random weights)."""
    if target:
        reference = load(target, device="cpu", amp=False, batch_size=1, tta="none")
        label = Path(target).name if Path(target).is_dir() else Path(target).parent.name
    else:
        model = build_model(spec, source.classes.num_classes, weights="none")
        reference = Predictor(TorchBackend(model, "cpu", amp=False), source.classes, batch_size=1)
        label = f"{spec} (random init)"
    spec = reference.backend.model.spec
    test = SegmentationDataset(source.split("test"), source.lut, reference.num_classes,
                               color_table=source.color_table, cache=False)
    first = test.decoded(0)[0]
    size = tuple(reference.input_size) if reference.input_size else (round_up(first.shape[0]),
                                                                        round_up(first.shape[1]))
    models = _Models(reference, source, size, workdir, calibration)
    predictors, info = _build([REFERENCE, *[n for n in names if n != REFERENCE]], models,
                              [test.decoded(i)[0] for i in range(min(2, len(test)))], baseline, threads)
    if REFERENCE not in predictors:
        raise SeglabError(f"{label}: the PyTorch fp32 reference does not run ({info[REFERENCE]['unavailable']})")
    scored = compare(predictors, labelled_pairs(test, frames), REFERENCE, warmup=warmup)
    rows = []
    for name, about in info.items():
        row = {"model": label, "spec": spec, "backend": VARIANTS[name].backend, "precision": VARIANTS[name].precision}
        if name in scored:
            seconds = scored[name]["seconds"]
            ms = 1000 * statistics.median(seconds)
            row |= {"ms_median": round(ms, 2), "ms_p90": round(1000 * float(np.percentile(seconds, 90)), 2),
                    "fps": round(1000 / ms, 2), "test_miou": scored[name]["miou"],
                    "pixel_agreement": scored[name]["pixel_agreement"], "frames_timed": len(seconds),
                    "frames_scored": min(frames or len(test), len(test))}
        rows.append(row | about)
    return rows


def run_infer_bench(data: str, spec: str | None = "scratch:simplesegnet", checkpoints: list[str] | None = None,
                    variants: list[str] | None = None, frames: int | None = None, warmup: int = 3,
                    calibration: int = 100, threads: int | None = None, out=None, show: bool = True) -> dict:
    """The table for each checkpoint (or a random-init ``spec``) on each variant (default: all of VARIANTS,
    always with the reference); see the module docstring.

    ``frames``: test images to time and score (None: the whole split); the first ``warmup`` are not timed.
    """
    torch.set_num_threads(threads or torch.get_num_threads())
    threads = torch.get_num_threads()
    machine = machine_info()
    source = open_source(data)
    names = list(VARIANTS) if variants is None else [REFERENCE, *[v for v in variants if v != REFERENCE]]
    baseline, records = rss_mb(), []
    command = command_line()
    with tempfile.TemporaryDirectory(prefix="seglab-bench-") as workdir:
        for i, target in enumerate(checkpoints or [None]):
            records += _model_rows(target, spec, source, names, frames, warmup, calibration, threads, baseline,
                                   Path(workdir) / str(i))
    brief = {"cpu": machine["cpu"], "logical_cpus": machine["logical_cpus"], "threads": threads,
             "cpu_bf16_units": machine["cpu_bf16_units"]}
    for row in records:
        row |= {"machine": brief, "command": command}
    met = [f"{r['model']} {r['backend']}/{r['precision']}" for r in records
           if r.get("fps", 0) >= TARGET["fps"] and (r.get("test_miou") or 0) >= TARGET["test_miou"]]
    report = {"benchmark": "infer", "records": records, "target": {**TARGET, "met_by": met},
              "setup": {"data": str(source.root), "batch": 1, "tta": "none", "warmup_frames": warmup,
                        "calibration_images": calibration, "threads": threads},
              "machine": machine, "command": command}
    finish(report, out)
    if show:
        _print(report)
    return report


def _print(report: dict) -> None:
    rows = [[r["model"], f"{r['backend']}/{r['precision']}", r.get("ms_median"), r.get("ms_p90"), r.get("fps"),
             r.get("test_miou"), r.get("pixel_agreement"), r.get("peak_mb"), r.get("unavailable", "")]
            for r in report["records"]]
    t, m = report["target"], report["machine"]
    print_table("seglab predict, batch 1, no test-time augmentation: latency and accuracy on the test split",
                ["model", "backend/precision", "ms median", "ms p90", "fps", "test mIoU", "agreement", "peak MB",
                 "note"],
                rows, footer=f"{m['cpu']}, {report['setup']['threads']} threads. Target (mIoU >= {t['test_miou']} "
                             f"at >= {t['fps']:.0f} fps) met by: {', '.join(t['met_by']) or 'none'}")
