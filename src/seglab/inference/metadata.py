"""What an exported model carries besides its weights, in one place because both sides depend on it: the
writers (inference/export/) store it, the readers (inference/backends/) parse it back.

The same JSON goes into a pretrained folder's seglab.json, an ONNX file's metadata (key "seglab") and an
OpenVINO IR's runtime info (key "seglab"); ONNX and OpenVINO files name their input and output as below.
"""

from __future__ import annotations

import json

import torch

from seglab.constants import IGNORE_INDEX, SIZE_DIVISOR, VERSION
from seglab.data.classes import ClassSet, default_colors
from seglab.errors import SeglabError

ONNX_INPUT, ONNX_OUTPUT = "images", "logits"
ONNX_OPSET = 17
MIN_OPSET, MAX_OPSET = 7, 23  # what torch.onnx's TorchScript exporter (torch 2.14) accepts
KEY = "seglab"  # the metadata key of ONNX files and OpenVINO IRs
FORMAT = "seglab-pretrained"
INPUT_NOTE = (f"RGB (B, 3, H, W), values 0..255 (uint8 or float), H and W multiples of {SIZE_DIVISOR}; "
              "normalised inside")


def model_info(model: torch.nn.Module, classes: ClassSet, input_size: tuple[int, int] | None = None,
               precision: str = "fp32", temperature: float | None = None) -> dict:
    """What a user needs besides the weights: stored in seglab.json, the ONNX metadata and the OpenVINO IR's
    runtime info. ``precision``: what the file computes in (fp32, or int8 for quantized exports).
    ``temperature``: the T fitted on val that calibrated probabilities divide the logits by (softmax(logits /
    T)); None when the run had none. The file's output stays the raw logits either way."""
    if model.num_classes != classes.num_classes:
        raise SeglabError(f"model has {model.num_classes} outputs but {classes.num_classes} class names")
    return {"format": FORMAT, "version": 1, "seglab_version": VERSION, "spec": model.spec,
            "num_classes": model.num_classes, **classes.to_fields(), "mean": list(model.mean), "std": list(model.std),
            "input": INPUT_NOTE, "ignore_index": IGNORE_INDEX,
            "input_size": list(input_size) if input_size else None,  # the scale it was trained at; None: native
            "precision": precision, "temperature": temperature}


def stored_dtype(meta: str | None) -> str:
    """The arithmetic an export says it was made for (int8 for quantized ones), fp32 when it says nothing."""
    try:
        return json.loads(meta).get("precision", "fp32") if meta else "fp32"
    except (ValueError, AttributeError):
        return "fp32"


def stored_classes(metadata: dict, num_classes: int | None, where) -> ClassSet:
    """Classes stored in an export's metadata; numbered classes for files made elsewhere."""
    if KEY in metadata:
        return ClassSet.from_fields(json.loads(metadata[KEY]))
    if num_classes is None:
        raise SeglabError(f"{where}: no seglab metadata and no fixed class count in its output shape")
    return ClassSet(tuple(f"class{i}" for i in range(num_classes)), tuple(default_colors(num_classes)))
