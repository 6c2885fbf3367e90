"""The INT8 step of an export (inference/pipeline.py): post-training static quantization, calibrated on
training images exactly as the predictor feeds them to the model (same padding or resizing), so activation
ranges are those seen in use. It sits between writing the fp32 ONNX file and writing the final format.

ONNX Runtime: QDQ format, per-channel int8 weights and uint8 activations (the VNNI path on x86 CPUs).
OpenVINO: NNCF's post-training quantization, mixed preset (symmetric weights, asymmetric activations: the
activations after EfficientNet's ReLU6 and FPN's sums are not centred on zero).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import torch

from seglab.data.classes import ClassSet
from seglab.inference.backends import TorchBackend
from seglab.inference.export.onnx import set_onnx_metadata
from seglab.inference.metadata import ONNX_INPUT
from seglab.inference.predictor import Predictor

CALIBRATION_IMAGES = 100  # training images to calibrate INT8 on (NNCF defaults to 300; each costs a forward)


class _Recorder:
    """A backend that runs another and keeps every input it is given: the tensors a quantizer must see.
    ``fixed_size``: the input size of the static export being calibrated (None: any), so the predictor pads
    and tiles as it will for that export."""

    def __init__(self, backend, fixed_size: tuple[int, int] | None):
        self.backend, self.inputs = backend, []
        self.fixed_size, self.max_batch = fixed_size, backend.max_batch

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        self.inputs.append(images.numpy().astype(np.float32))
        return self.backend(images)


def calibration_inputs(model: torch.nn.Module, classes: ClassSet, input_size: tuple[int, int] | None,
                       images: list[np.ndarray], fixed_size: tuple[int, int] | None = None) -> list[np.ndarray]:
    """(1, 3, H, W) float32 model inputs (0..255) of ``images`` as a batch-1 Predictor prepares them."""
    recorder = _Recorder(TorchBackend(model, "cpu", amp=False), fixed_size)
    predictor = Predictor(recorder, classes, batch_size=1, input_size=input_size, tta="none")
    for image in images:
        predictor.predict(image)
    return recorder.inputs


def calibration_set(reference: Predictor, source, count: int = CALIBRATION_IMAGES,
                    fixed_size: tuple[int, int] | None = None) -> list[np.ndarray]:
    """Model inputs of ``count`` training images of ``source`` (a fixed random choice), prepared as
    ``reference`` prepares them; ``fixed_size``: the input size of a static export."""
    from seglab.data.dataset import SegmentationDataset

    train = SegmentationDataset(source.split("train"), source.lut, reference.num_classes,
                                color_table=source.color_table, cache=False)
    picks = np.random.default_rng(0).permutation(len(train))[:count]
    return calibration_inputs(reference.backend.model, reference.classes, reference.input_size,
                              [train.decoded(int(i))[0] for i in picks], fixed_size)


def quantize_onnx(fp32_path: Path, out_path: Path, inputs: list[np.ndarray], metadata: str) -> Path:
    """Write the INT8 (QDQ) version of an fp32 ONNX export, with ``metadata`` under the key "seglab"."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        """Hands ORT the inputs in chunks (``set_range``): it reduces each chunk's activations to ranges
        before the next, so memory holds a few images' activations (~80 MB each at 384x480), not all."""

        def __init__(self):
            self.items = iter(())

        def __len__(self) -> int:
            return len(inputs)

        def set_range(self, start_index: int, end_index: int) -> None:
            self.items = iter(inputs[start_index:end_index])

        def get_next(self):
            x = next(self.items, None)
            return None if x is None else {ONNX_INPUT: x}

    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    stride = max(d for d in range(1, 9) if len(inputs) % d == 0)  # ORT needs chunks that divide the count
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # ORT's quantizer logs a line per copied bias, on the root logger
    try:
        _quantize_static(fp32_path, out_path, Reader(), stride)
    finally:
        root.setLevel(level)
    set_onnx_metadata(out_path, metadata)
    return out_path


def _quantize_static(fp32_path: Path, out_path: Path, reader, stride: int) -> None:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="seglab-quant-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)  # fold and infer shapes
        quantize_static(str(prepared), str(out_path), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        extra_options={"CalibStridedMinMax": stride})


def quantize_openvino(model, inputs: list[np.ndarray]):
    """The INT8 version of an ``openvino.Model`` by NNCF post-training quantization."""
    logging.getLogger("nncf").setLevel(logging.WARNING)
    import nncf

    return nncf.quantize(model, nncf.Dataset(inputs), subset_size=len(inputs),
                         preset=nncf.QuantizationPreset.MIXED)
