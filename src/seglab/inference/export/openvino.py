"""Write an OpenVINO IR (.xml graph beside its .bin weights) from an fp32 ONNX export, in two steps so that
quantization (inference/quantize.py) can run between them: ``convert_openvino`` reads the ONNX graph into an
``openvino.Model``, ``save_openvino`` stores a model with seglab's metadata in its runtime info.

Weights stay fp32 (``compress_to_fp16=False``): the CPU picks bf16 at run time where it has it.
"""

from __future__ import annotations

from pathlib import Path

from seglab.inference.metadata import KEY


def convert_openvino(onnx_path: Path):
    """The ``openvino.Model`` of an ONNX file, not yet written anywhere."""
    import openvino as ov

    return ov.convert_model(str(onnx_path))


def save_openvino(model, out: Path, metadata: str) -> Path:
    """Write ``model`` as ``out`` (suffix .xml, weights in the .bin beside it), with ``metadata`` (model_info
    as JSON) under the runtime-info key "seglab"; returns the .xml written."""
    import openvino as ov

    model.set_rt_info(metadata, [KEY])
    out = Path(out).with_suffix(".xml")
    out.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(out), compress_to_fp16=False)
    return out


def export_openvino(onnx_path: Path, out: Path, metadata: str) -> Path:
    """An fp32 ONNX export converted to an fp32 OpenVINO IR at ``out``: the two steps with nothing between."""
    return save_openvino(convert_openvino(onnx_path), out, metadata)
