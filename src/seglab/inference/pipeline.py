"""``seglab export`` as one library call: ``export_model(run, format=..., int8=..., out=...) -> Exported``.

The steps, each in its own module, so one can change without touching the others:

1. the run loaded as the fp32 PyTorch reference (inference/predictor.py);
2. ONNX and OpenVINO: the fp32 ONNX file (inference/export/onnx.py), which every such export starts from;
3. INT8 only: calibration on training images and quantization (inference/quantize.py);
4. OpenVINO only: conversion to an IR, saved with seglab's metadata (inference/export/openvino.py);
5. the check: the written file reopened by the backend that will run it (ONNX Runtime for .onnx, OpenVINO
   for .xml) inside the same Predictor `seglab predict` uses, on validation images (training images when
   the data has no validation split; never test images), against PyTorch fp32: the share of pixels
   labelled alike and the mIoU of both. Without the dataset it falls back to synthetic images (agreement
   only).

A pretrained folder (inference/export/pretrained.py) keeps the trained weights: no quantization, and the
check reloads the folder alone and compares it with the run on a random image.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seglab.errors import BadValue, SeglabError
from seglab.inference.export.onnx import check_opset, export_onnx
from seglab.inference.export.openvino import convert_openvino, save_openvino
from seglab.inference.export.pretrained import save_pretrained
from seglab.inference.metadata import ONNX_OPSET, model_info
from seglab.inference.predictor import Predictor, TorchBackend, load
from seglab.inference.quantize import CALIBRATION_IMAGES, calibration_set, quantize_onnx, quantize_openvino
from seglab.inference.verify import compare, labelled_pairs, smooth_random_images
from seglab.sizes import round_up

FORMATS = ("onnx", "openvino", "pretrained")
# Share of pixels an export must label as PyTorch fp32 does: fp32 files differ only by summation order;
# INT8 files trade a little agreement for speed, and the mIoU change says what that costs.
MIN_AGREEMENT = {"fp32": 0.995, "int8": 0.97}


@dataclass
class Check:
    """What the written file was checked on, and how it did against PyTorch fp32."""

    images: str  # e.g. "20 val images of /data/camvid" or "8 synthetic 384x480 images"
    pixel_agreement: float
    miou_pytorch: float | None = None
    miou_export: float | None = None
    required: float = 0.0  # the agreement below which the export counts as failed


@dataclass
class Exported:
    path: Path  # the .onnx, the .xml (its .bin beside it) or the pretrained folder
    fmt: str
    precision: str  # fp32 or int8
    shape: str  # "dynamic batch, height and width", "static 1x3xHxW" or "any size"
    check: Check | None  # None when asked not to verify

    @property
    def files(self) -> list[Path]:
        """Every file written: an IR is a graph and its weights, a pretrained folder its contents."""
        if self.fmt == "pretrained":
            return sorted(self.path.iterdir())
        return [self.path, self.path.with_suffix(".bin")] if self.fmt == "openvino" else [self.path]

    @property
    def agrees(self) -> bool:
        return self.check is None or self.check.pixel_agreement >= self.check.required


def export_model(target: Path, format: str = "onnx", out: Path | None = None, int8: bool = False,
                 dynamic: bool = False, size: tuple[int, int] | None = None, opset: int = ONNX_OPSET,
                 data: Path | None = None, calibration_images: int = CALIBRATION_IMAGES, check_images: int = 20,
                 verify: bool = True) -> Exported:
    """Write ``target`` (run folder, .ckpt or pretrained folder) as ``format`` and check it (module docstring).

    ``int8``: quantize, calibrated on ``calibration_images`` training images (of ``data``, else the run's own
    dataset). ``dynamic``: free batch, height and width; otherwise static 1 x 3 x ``size`` (default: the
    training size, else the dataset's frame size padded, else 512x512). ``check_images``: validation images
    the check runs on; ``verify=False`` skips the check.
    """
    if format not in FORMATS:
        raise BadValue("format", format, f"choose one of {', '.join(FORMATS)}")
    check_opset(opset)
    if format == "pretrained":
        if int8:
            raise BadValue("int8", int8, "INT8 quantizes ONNX or OpenVINO exports; a pretrained folder keeps "
                                         "the trained weights")
        return _export_pretrained(target, out, verify)
    reference = _reference(target, device="cpu", amp=False, batch_size=1, tta="none")  # fp32, contiguous
    source, why_not = _dataset(target, data)
    if int8 and source is None:
        raise SeglabError(f"--int8 calibrates on the run's training images, and {why_not}; pass --data")
    check_split = next((s for s in ("val", "train") if source and source.splits.get(s)), None)
    frame = _first_frame(source, check_split)
    h, w = size or reference.input_size or (frame and (round_up(frame[0]), round_up(frame[1]))) or (512, 512)
    out = export_path(out, _base(target), format, int8)
    inputs = calibration_set(reference, source, calibration_images, None if dynamic else (h, w)) if int8 else None
    out = write_export(reference, format, out, inputs, dynamic=dynamic, size=(h, w), opset=opset)
    shape = "dynamic batch, height and width" if dynamic else f"static 1x3x{h}x{w}"
    precision = "int8" if int8 else "fp32"
    check = None
    if verify:
        shipped = load(out, batch_size=1, tta="none", amp=None if int8 else False)
        check = _check(reference, shipped, source, check_split, check_images, (h, w))
        check.required = MIN_AGREEMENT[precision]
    return Exported(out, format, precision, shape, check)


def export_path(out: Path | None, base: Path, fmt: str, int8: bool) -> Path:
    """Where an ONNX or OpenVINO export goes: ``out`` with the format's suffix (a file is reopened by its
    suffix to be checked, so ``--out model`` becomes model.onnx), a default name inside ``out`` when it is a
    folder, or the default name beside the run."""
    suffix, default = (".onnx" if fmt == "onnx" else ".xml"), f"model{'_int8' if int8 else ''}"
    if out is None or Path(out).is_dir():
        return Path(out or base) / f"{default}{suffix}"
    out = Path(out)
    return out if out.suffix.lower() == suffix else out.with_name(out.name + suffix)


def write_export(reference: Predictor, fmt: str, out: Path, int8_inputs: list[np.ndarray] | None = None,
                 dynamic: bool = False, size: tuple[int, int] = (512, 512), opset: int = ONNX_OPSET) -> Path:
    """Steps 2 to 4 of the module docstring: ``reference``'s fp32 PyTorch model written as ``fmt``, INT8 when
    calibration inputs are given. Returns the file written (.onnx, or .xml beside its .bin)."""
    model, classes = reference.backend.model, reference.classes
    precision = "fp32" if int8_inputs is None else "int8"
    info = json.dumps(model_info(model, classes, reference.input_size, precision, reference.temperature))
    with tempfile.TemporaryDirectory(prefix="seglab-export-") as tmp:
        fp32_onnx = out if (fmt, precision) == ("onnx", "fp32") else Path(tmp) / "fp32.onnx"
        export_onnx(model, classes, fp32_onnx, dynamic=dynamic, size=size, opset=opset,
                    input_size=reference.input_size, temperature=reference.temperature)
        if fmt == "onnx":
            return out if int8_inputs is None else quantize_onnx(fp32_onnx, out, int8_inputs, info)
        graph = convert_openvino(fp32_onnx)
        if int8_inputs is not None:
            graph = quantize_openvino(graph, int8_inputs)
        return save_openvino(graph, out, info)


def _reference(target: Path, **options) -> Predictor:
    """The trained model on PyTorch: what every export is written from and checked against."""
    reference = load(target, **options)
    if not isinstance(reference.backend, TorchBackend):
        raise SeglabError(f"{target}: already an exported file; export from the run folder or checkpoint")
    return reference


def _base(target: Path) -> Path:
    """The folder exports go into by default: the run's."""
    return Path(target) if Path(target).is_dir() else Path(target).parent


def _export_pretrained(target: Path, out: Path | None, verify: bool) -> Exported:
    """A save_pretrained folder of ``target``, checked by reloading it from the folder alone."""
    reference = _reference(target, device="cpu", amp=False)
    folder = save_pretrained(reference.backend.model, reference.classes, out or _base(target) / "pretrained",
                             reference.input_size, reference.temperature)
    check = None
    if verify:
        reloaded = load(folder, device="cpu", amp=False)
        image = np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8)
        agree = float((reloaded.predict_batch([image])[0] == reference.predict(image)).mean())
        check = Check("a random 96x128 image", agree)
    return Exported(Path(folder), "pretrained", "fp32", "any size", check)


def _dataset(target: Path, data: Path | None):
    """(DataSource, None) for ``data`` or else the run's own dataset; (None, why not) when it is not here."""
    from seglab.data.open import open_data
    from seglab.data.sources import open_source
    from seglab.runs import read_trained

    if data is not None:
        return open_source(data), None  # asked for by name: a problem with it is the user's error
    if (Path(target) / "seglab.json").is_file():
        return None, "a pretrained folder does not name its dataset"
    config = read_trained(target).config.data
    if config.root is None or not Path(config.root).is_dir():
        return None, f"the run's dataset ({config.root or 'CamVid, default place'}) is not here"
    try:
        return open_data(config), None
    except SeglabError as e:
        return None, f"the run's dataset is not usable ({e})"


def _first_frame(source, split: str | None) -> tuple[int, int] | None:
    if source is None or split is None:
        return None
    from seglab.imageio import read_image

    return read_image(source.split(split)[0].image).shape[:2]


def _check(reference: Predictor, shipped: Predictor, source, split: str | None, count: int,
           size: tuple[int, int]) -> Check:
    if source is None or split is None:
        images = smooth_random_images(min(count, 8), size)
        result = compare({"pytorch": reference, "export": shipped}, ((im, None) for im in images), "pytorch")
        return Check(f"{len(images)} synthetic {size[0]}x{size[1]} images (no dataset here)",
                     result["export"]["pixel_agreement"])
    from seglab.data.dataset import SegmentationDataset

    dataset = SegmentationDataset(source.split(split), source.lut, reference.num_classes,
                                  color_table=source.color_table, cache=False)
    result = compare({"pytorch": reference, "export": shipped}, labelled_pairs(dataset, count), "pytorch")
    return Check(f"{min(count, len(dataset))} {split} images of {source.root}", result["export"]["pixel_agreement"],
                 result["pytorch"]["miou"], result["export"]["miou"])
