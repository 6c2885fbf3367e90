"""``seglab export`` as a library call: write an ONNX or OpenVINO file (fp32, or INT8 calibrated on training
images), then check it against the PyTorch fp32 model on real images of the run's dataset.

The check runs the written file through the backend that will run it (ONNX Runtime for .onnx, OpenVINO for
.xml) inside the same Predictor `seglab predict` uses, on validation images (training images when the data
has no validation split; never test images), and reports the share of pixels labelled as PyTorch labels them
and the mIoU of both. Without the dataset the check falls back to synthetic images (agreement only).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seglab.errors import SeglabError
from seglab.inference import export as ex
from seglab.inference.predictor import Predictor, TorchBackend, load
from seglab.inference.verify import compare, labelled_pairs, smooth_random_images
from seglab.sizes import round_up

FORMATS = ("onnx", "openvino")
CALIBRATION_IMAGES = 100  # training images to calibrate INT8 on (NNCF defaults to 300; each costs a forward)
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


@dataclass
class Exported:
    path: Path
    fmt: str
    precision: str  # fp32 or int8
    shape: str  # "dynamic batch, height and width" or "static 1x3xHxW"
    check: Check

    @property
    def agrees(self) -> bool:
        return self.check.pixel_agreement >= MIN_AGREEMENT[self.precision]


def export_model(target: Path, fmt: str, out: Path | None = None, int8: bool = False, dynamic: bool = False,
                 size: tuple[int, int] | None = None, opset: int = ex.ONNX_OPSET, data: Path | None = None,
                 calibration_images: int = CALIBRATION_IMAGES, check_images: int = 20) -> Exported:
    """Write ``target`` (run folder, .ckpt or pretrained folder) as ``fmt`` and check it (module docstring)."""
    if fmt not in FORMATS:
        raise SeglabError(f"export format {fmt!r}: choose one of {', '.join(FORMATS)}")
    reference = load(target, device="cpu", amp=False, batch_size=1, tta="none")  # exports are fp32, contiguous
    if not isinstance(reference.backend, TorchBackend):
        raise SeglabError(f"{target}: already an exported file; export from the run folder or checkpoint")
    source, why_not = _dataset(target, data)
    if int8 and source is None:
        raise SeglabError(f"--int8 calibrates on the run's training images, and {why_not}; pass --data")
    check_split = next((s for s in ("val", "train") if source and source.splits.get(s)), None)
    frame = _first_frame(source, check_split)
    h, w = size or reference.input_size or (frame and (round_up(frame[0]), round_up(frame[1]))) or (512, 512)
    base = target if Path(target).is_dir() else Path(target).parent
    out = export_path(out, base, fmt, int8)
    inputs = calibration_set(reference, source, calibration_images, None if dynamic else (h, w)) if int8 else None
    out = write_export(reference, fmt, out, inputs, dynamic=dynamic, size=(h, w), opset=opset)
    shipped = load(out, batch_size=1, tta="none", amp=None if int8 else False)
    check = _check(reference, shipped, source, check_split, check_images, (h, w))
    shape = "dynamic batch, height and width" if dynamic else f"static 1x3x{h}x{w}"
    return Exported(out, fmt, "int8" if int8 else "fp32", shape, check)


def export_path(out: Path | None, base: Path, fmt: str, int8: bool) -> Path:
    """Where the export goes: ``out`` with the format's suffix (a file is reopened by its suffix to be
    checked, so ``--out model`` becomes model.onnx), a default name inside ``out`` when it is a folder, or
    the default name beside the run."""
    suffix, default = (".onnx" if fmt == "onnx" else ".xml"), f"model{'_int8' if int8 else ''}"
    if out is None or Path(out).is_dir():
        return Path(out or base) / f"{default}{suffix}"
    out = Path(out)
    return out if out.suffix.lower() == suffix else out.with_name(out.name + suffix)


def calibration_set(reference: Predictor, source, count: int = CALIBRATION_IMAGES,
                    fixed_size: tuple[int, int] | None = None) -> list[np.ndarray]:
    """Model inputs of ``count`` training images (a fixed random choice), prepared as ``reference`` prepares
    them; ``fixed_size``: the input size of a static export."""
    from seglab.data.dataset import SegmentationDataset
    from seglab.inference.quantize import calibration_inputs

    train = SegmentationDataset(source.split("train"), source.lut, reference.num_classes,
                                color_table=source.color_table, cache=False)
    picks = np.random.default_rng(0).permutation(len(train))[:count]
    return calibration_inputs(reference.backend.model, reference.classes, reference.input_size,
                              [train.decoded(int(i))[0] for i in picks], fixed_size)


def write_export(reference: Predictor, fmt: str, out: Path, int8_inputs: list[np.ndarray] | None = None,
                 dynamic: bool = False, size: tuple[int, int] = (512, 512), opset: int = ex.ONNX_OPSET) -> Path:
    """Write ``reference``'s fp32 PyTorch model as ``fmt``; INT8 when calibration inputs are given. Returns the
    file written (.onnx, or .xml beside its .bin)."""
    model, classes = reference.backend.model, reference.classes
    precision = "fp32" if int8_inputs is None else "int8"
    info = json.dumps(ex.model_info(model, classes, reference.input_size, precision))
    with tempfile.TemporaryDirectory(prefix="seglab-export-") as tmp:
        fp32_onnx = out if (fmt, precision) == ("onnx", "fp32") else Path(tmp) / "fp32.onnx"
        ex.export_onnx(model, classes, fp32_onnx, dynamic=dynamic, size=size, opset=opset,
                       input_size=reference.input_size)
        if fmt == "openvino":
            return ex.export_openvino(fp32_onnx, out, info, int8_inputs=int8_inputs)
        if precision == "int8":
            from seglab.inference.quantize import quantize_onnx

            out.parent.mkdir(parents=True, exist_ok=True)
            quantize_onnx(fp32_onnx, out, int8_inputs, info)
    return out


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
