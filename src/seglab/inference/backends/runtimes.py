"""Backends that run an exported file: ONNX Runtime (.onnx) and OpenVINO (.xml beside its .bin, or .onnx).
Each reads the seglab metadata the writers (inference/export/) stored, so it knows the classes and whether
the file was quantized.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from seglab.device import resolve_precision
from seglab.errors import BadValue, SeglabError, first_line
from seglab.inference.metadata import KEY, stored_dtype


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
        self.dtype = stored_dtype(self.metadata.get(KEY))

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
        self.metadata = {KEY: _rt_info(model, KEY)} if model.has_rt_info([KEY]) else {}
        shape_in, shape_out = model.inputs[0].partial_shape, model.outputs[0].partial_shape
        dims = [[d.get_length() if d.is_static else "?" for d in s] for s in (shape_in, shape_out)]
        self.fixed_size, self.max_batch, self.num_classes = _image_shapes(path, *dims)
        wanted = resolve_precision(precision, "cpu", amp)
        bf16 = wanted == "bf16-mixed" and "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "bf16" if bf16 else "f32"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.request = core.compile_model(model, "CPU", config).create_infer_request()
        stored = stored_dtype(self.metadata.get(KEY))
        self.dtype = stored if stored == "int8" else "bf16" if bf16 else "fp32"

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = images.numpy().astype(np.float32)  # (B, 3, H, W)
        self.request.infer({0: x})
        return torch.from_numpy(self.request.get_output_tensor(0).data.copy())


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
