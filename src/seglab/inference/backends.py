"""What runs the model: PyTorch (eager or ``torch.compile``d, in the run's precision), ONNX Runtime, or
OpenVINO.

A backend maps (B, 3, H, W) uint8 RGB to (B, C, H, W) float32 logits on the CPU, says which input sizes and
batch sizes it takes (``fixed_size``, ``max_batch``: None where any works), and names itself and the
arithmetic it computes in (``name``: a key of BACKENDS; ``dtype``: fp32, bf16, fp16 or int8), so a
benchmark row or a prediction log says what actually ran.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch

from seglab.device import resolve_precision
from seglab.errors import BadValue, SeglabError, first_line

BACKENDS = {
    "torch": "PyTorch eager, in the run's precision (bf16 autocast and channels-last on CPUs with bf16 units)",
    "torch-compile": "PyTorch with torch.compile (the first image pays for compilation)",
    "onnxruntime": "ONNX Runtime (an .onnx file; a run is exported on the fly, fp32)",
    "openvino": "OpenVINO on the CPU (an .xml or .onnx file; a run is exported on the fly), bf16 where the CPU "
                "has it unless --no-amp",
}
DTYPES = {"32": "fp32", "bf16-mixed": "bf16", "16-mixed": "fp16"}


def resolve_device(device: str | None) -> torch.device:
    """'auto' (or None): the GPU when there is one, else the CPU; anything else as torch spells it."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise BadValue("device", device, "use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and (not torch.cuda.is_available() or (dev.index or 0) >= torch.cuda.device_count()):
        have = f"{torch.cuda.device_count()} CUDA device(s)" if torch.cuda.is_available() else "no CUDA device"
        raise BadValue("device", device, f"this machine has {have}; use auto or cpu")
    return dev


def predict_precision(run_precision: str, amp: bool | None, device_type: str) -> str:
    """"32", "bf16-mixed" or "16-mixed": the run's ``train.precision`` resolved for this device exactly as
    training resolves it, so a model predicts in the arithmetic it was trained and evaluated in.

    ``amp`` (--amp/--no-amp) overrides: False is fp32; True autocasts even a run trained in fp32, in the
    16-bit type ``auto`` picks here. CPUs autocast in bf16 only (Lightning refuses fp16 mixed precision on
    the CPU), so a "16-mixed" run predicted on a CPU uses bf16.
    """
    if amp is False:
        return "32"
    precision = resolve_precision(run_precision, device_type)
    if amp and precision == "32":
        precision = resolve_precision("auto", device_type)
        if precision == "32":  # no fast 16-bit unit here, but autocast was asked for
            precision = "bf16-mixed" if device_type == "cpu" else "16-mixed"
    if device_type == "cpu" and precision == "16-mixed":
        precision = "bf16-mixed"
    return precision


class TorchBackend:
    """A SegmentationNet in eval mode on one device, in ``precision`` (a ``train.precision`` value: a run's
    own, or auto) unless ``amp`` overrides it; 16-bit precisions run under autocast with channels-last
    memory (bf16 on CPUs with bf16 units: about 2.5x faster here, >99.5% of pixels as in fp32).

    ``compile``: run it through ``torch.compile`` (Inductor); each new input shape compiles once, so the
    first image of a size is slow. A platform where compilation fails says so at that first image.
    """

    fixed_size: tuple[int, int] | None = None  # any H, W divisible by SIZE_DIVISOR works
    max_batch: int | None = None

    def __init__(self, model: torch.nn.Module, device: str | None = "auto", amp: bool | None = None,
                 precision: str = "auto", compile: bool = False):
        self.device = resolve_device(device)
        self.precision = predict_precision(precision, amp, self.device.type)
        self.name, self.dtype = ("torch-compile" if compile else "torch"), DTYPES[self.precision]
        self.amp = self.precision != "32"
        self.amp_dtype = torch.bfloat16 if self.precision == "bf16-mixed" else torch.float16
        self.model = model.eval().to(self.device)
        if self.amp:
            self.model = self.model.to(memory_format=torch.channels_last)
        if compile:  # Inductor's C++ build warns "No CUDA runtime is found" on every CPU-only machine
            logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
        self._run = torch.compile(self.model, dynamic=False) if compile else self.model
        self._compiled_shapes: set[tuple[int, ...]] = set()

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) uint8 -> (B, C, H, W) float32 logits on the CPU."""
        x = images.to(self.device, non_blocking=True)
        if self.amp:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp):
            if self.name == "torch-compile" and tuple(x.shape) not in self._compiled_shapes:
                logits = self._first_compiled_call(x)
            else:
                logits = self._run(x)
        return logits.float().cpu()

    def _first_compiled_call(self, x: torch.Tensor) -> torch.Tensor:
        try:
            logits = self._run(x)
        except Exception as e:  # noqa: BLE001 - Inductor fails in many ways (no compiler, unsupported op)
            raise SeglabError(f"torch.compile cannot compile this model here ({first_line(e, 160)}); "
                              "use --backend torch") from None
        self._compiled_shapes.add(tuple(x.shape))
        return logits


class OnnxBackend:
    """An exported model run by ONNX Runtime (CUDA provider when asked for and present, else CPU), with
    ``threads`` intra-op threads (None: ONNX Runtime's default, one per physical core).

    Input (B, 3, H, W) float32 in 0..255, output logits. A static export fixes H, W (and maybe B); the
    predictor then pads to, and tiles with, that size.
    """

    name = "onnxruntime"

    def __init__(self, path: Path | bytes, device: str | None = "auto", threads: int | None = None):
        import onnxruntime as ort

        where = "the exported model" if isinstance(path, bytes) else path
        want_cuda = device not in ("cpu",) and "CUDAExecutionProvider" in ort.get_available_providers()
        providers = (["CUDAExecutionProvider"] if want_cuda else []) + ["CPUExecutionProvider"]
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(path if isinstance(path, bytes) else str(path), options,
                                                providers=providers)
        except Exception as e:  # noqa: BLE001 - ORT raises its own Fail/InvalidGraph/... types
            raise SeglabError(f"{where}: not a usable ONNX model ({first_line(e, 160)})") from None
        inp, out = self.session.get_inputs()[0], self.session.get_outputs()[0]
        self.input_name = inp.name
        self.fixed_size, self.max_batch, self.num_classes = _image_shapes(where, inp.shape, out.shape)
        self.metadata = self.session.get_modelmeta().custom_metadata_map
        self.dtype = _stored_dtype(self.metadata.get("seglab"))

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = images.numpy().astype(np.float32)  # (B, 3, H, W)
        (logits,) = self.session.run(None, {self.input_name: x})
        return torch.from_numpy(logits)


class OpenVinoBackend:
    """An OpenVINO IR (.xml beside its .bin) or ONNX file compiled for the CPU, latency-first, with
    ``threads`` inference threads (None: OpenVINO's default, one per physical core).

    ``precision`` ("32" or "bf16-mixed", resolved like TorchBackend's) becomes OpenVINO's inference
    precision hint; bf16 is used only where OpenVINO reports bf16 support on this CPU. An INT8 model
    (from ``seglab export --int8``) computes its quantized layers in int8 whatever the hint.
    """

    name = "openvino"

    def __init__(self, path: Path, device: str | None = "auto", amp: bool | None = None,
                 precision: str = "auto", threads: int | None = None):
        import openvino as ov

        if device not in (None, "auto", "cpu"):
            raise BadValue("device", device, "the OpenVINO backend runs on the CPU here; use auto or cpu")
        core = ov.Core()
        try:
            model = core.read_model(str(path))
        except Exception as e:  # noqa: BLE001 - OpenVINO raises RuntimeError with a multi-line report
            raise SeglabError(f"{path}: not a usable OpenVINO or ONNX model ({first_line(e, 160)})") from None
        self.metadata = {"seglab": _rt_info(model, "seglab")} if model.has_rt_info(["seglab"]) else {}
        shape_in, shape_out = model.inputs[0].partial_shape, model.outputs[0].partial_shape
        dims = [[d.get_length() if d.is_static else "?" for d in s] for s in (shape_in, shape_out)]
        self.fixed_size, self.max_batch, self.num_classes = _image_shapes(path, *dims)
        wanted = predict_precision(precision, amp, "cpu")
        bf16 = wanted == "bf16-mixed" and "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "bf16" if bf16 else "f32"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.request = core.compile_model(model, "CPU", config).create_infer_request()
        stored = _stored_dtype(self.metadata.get("seglab"))
        self.dtype = stored if stored == "int8" else "bf16" if bf16 else "fp32"

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = images.numpy().astype(np.float32)  # (B, 3, H, W)
        self.request.infer({0: x})
        return torch.from_numpy(self.request.get_output_tensor(0).data.copy())


Backend = TorchBackend | OnnxBackend | OpenVinoBackend


def _image_shapes(where, shape_in, shape_out) -> tuple[tuple[int, int] | None, int | None, int | None]:
    """(fixed (H, W) or None, fixed batch or None, class count or None) of an exported image model, whose
    shapes list ints for static dimensions and anything else (names, "?") for free ones."""
    if len(shape_in) != 4 or len(shape_out) != 4:
        raise SeglabError(f"{where}: expected an image model, (B, 3, H, W) -> (B, C, H, W); "
                          f"got {list(shape_in)} -> {list(shape_out)}")
    b, _, h, w = shape_in
    fixed = (h, w) if isinstance(h, int) and isinstance(w, int) else None
    return fixed, (b if isinstance(b, int) else None), (shape_out[1] if isinstance(shape_out[1], int) else None)


def _rt_info(model, key: str) -> str:
    value = model.get_rt_info([key])
    return value.astype(str) if hasattr(value, "astype") else str(value)


def _stored_dtype(meta: str | None) -> str:
    """The arithmetic an export says it was made for (int8 for quantized ones), fp32 when it says nothing."""
    try:
        return json.loads(meta).get("precision", "fp32") if meta else "fp32"
    except (ValueError, AttributeError):
        return "fp32"


