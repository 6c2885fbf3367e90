"""Write a trained model as ONNX (input "images" float 0..255, output "logits", seglab metadata under the key
"seglab"), and compare an ONNX file with the PyTorch model it came from on random images.

The fp32 ONNX file is the first step of every ONNX and OpenVINO export (inference/pipeline.py): INT8 and
OpenVINO files are made from it.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch

from seglab.data.classes import ClassSet
from seglab.errors import BadValue, first_line
from seglab.inference.metadata import (
    KEY,
    MAX_OPSET,
    MIN_OPSET,
    ONNX_INPUT,
    ONNX_OPSET,
    ONNX_OUTPUT,
    model_info,
)
from seglab.sizes import check_model_size


def check_opset(opset: int) -> int:
    """``opset`` when this torch can export it; checked before any work, so a bad one costs nothing."""
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise BadValue("opset", opset, f"this torch exports ONNX opsets {MIN_OPSET} to {MAX_OPSET}")
    return opset


def export_onnx(model: torch.nn.Module, classes: ClassSet, path: Path, dynamic: bool = True,
                size: tuple[int, int] = (512, 512), opset: int = ONNX_OPSET,
                input_size: tuple[int, int] | None = None, temperature: float | None = None) -> Path:
    """Write ``model`` as ONNX: input "images" (B, 3, H, W) float 0..255, output "logits" (B, C, H, W).

    ``dynamic`` leaves batch, height and width free; otherwise they are fixed to 1 x ``size``.
    Class names, colours, normalisation and the fitted temperature go into the file's metadata (key "seglab").
    """
    check_opset(opset)
    try:
        check_model_size(size)
    except ValueError as e:
        raise BadValue("size", size, str(e)) from None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().float()
    sample = torch.zeros(1, 3, *size, device=next(model.parameters()).device)
    axes = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings():
        # The TorchScript-based exporter is deprecated in favour of the dynamo one, which needs onnxscript,
        # not a dependency of seglab; tracer warnings about shape-dependent Python branches are expected.
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(model, (sample,), str(path), dynamo=False, opset_version=opset,
                              input_names=[ONNX_INPUT], output_names=[ONNX_OUTPUT],
                              dynamic_axes={ONNX_INPUT: axes, ONNX_OUTPUT: axes} if dynamic else None)
        except Exception as e:  # noqa: BLE001 - an operator the chosen opset lacks, e.g. bilinear upsampling
            raise BadValue("opset", opset, f"this model cannot be exported at it ({first_line(e, 160)}); "
                              f"use {ONNX_OPSET}, the default") from None
    set_onnx_metadata(path, json.dumps(model_info(model, classes, input_size, temperature=temperature)))
    return path


def set_onnx_metadata(path: Path, value: str) -> None:
    """Store ``value`` (model_info as JSON) under the key "seglab" of an ONNX file's metadata."""
    import onnx

    proto = onnx.load(str(path))
    kept = [(e.key, e.value) for e in proto.metadata_props if e.key != KEY]
    del proto.metadata_props[:]
    for key, v in [*kept, (KEY, value)]:
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, v
    onnx.save(proto, str(path))


def verify_onnx(model: torch.nn.Module, path: Path, sizes: list[tuple[int, int]], batch: int = 2,
                seed: int = 0) -> dict:
    """Run ONNX Runtime and PyTorch on the same random images at each size and compare.

    Returns the largest absolute logit difference and the fraction of pixels whose argmax agrees
    (the worst over ``sizes``), with the numbers per size.
    """
    import onnxruntime as ort

    from seglab.inference.verify import smooth_random_images

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    device = next(model.parameters()).device
    per_size = []
    for i, (h, w) in enumerate(sizes):
        frames = smooth_random_images(batch, (h, w), seed + i)  # photo-like blobs, not per-pixel noise
        images = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float()  # (B, 3, H, W), 0..255
        with torch.inference_mode():
            expected = model.eval()(images.to(device)).float().cpu()
        (got,) = session.run(None, {ONNX_INPUT: images.numpy()})
        got = torch.from_numpy(got)
        per_size.append({"size": [h, w], "max_abs_diff": float((got - expected).abs().max()),
                         "pixel_agreement": float((got.argmax(1) == expected.argmax(1)).float().mean())})
    return {"max_abs_diff": max(r["max_abs_diff"] for r in per_size),
            "pixel_agreement": min(r["pixel_agreement"] for r in per_size), "sizes": per_size}


