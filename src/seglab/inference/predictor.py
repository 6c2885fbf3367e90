"""Predict label masks for images of any size, with a PyTorch model, ONNX Runtime or OpenVINO.

A Predictor takes one of two strategies, chosen by ``input_size``: ``ResizeToScale`` (inference/resize.py)
resizes every image to the scale the model was trained at and upsamples the result, as evaluation scores
it; ``NativeTiles`` (inference/tiling.py) predicts at each image's own resolution, padded and, when large,
tiled. ``load`` builds one from a run, checkpoint, pretrained folder, ONNX or OpenVINO file, with the run's
scale, test-time augmentation and precision, and the temperature its calibrated probabilities use
(inference/temperature.py).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from seglab.constants import SIZE_DIVISOR
from seglab.data.classes import ClassSet
from seglab.errors import BadValue, SeglabError
from seglab.imageio import to_rgb
from seglab.inference.backends import BACKENDS, Backend, OnnxBackend, OpenVinoBackend, TorchBackend
from seglab.inference.backends.pretrained import load_pretrained
from seglab.inference.forward import Forward, check_tta
from seglab.inference.metadata import KEY, stored_classes
from seglab.inference.resize import ResizeToScale
from seglab.inference.temperature import Temperature, as_temperature, run_temperature, stored_temperature
from seglab.inference.tiling import NativeTiles
from seglab.sizes import check_model_size

__all__ = ["OnnxBackend", "OpenVinoBackend", "Predictor", "TorchBackend", "load"]

ImageLike = np.ndarray | Image.Image


class Predictor:
    """Label masks (or class probabilities) for RGB, grey, RGBA or 16-bit images of any size.

    Args:
        backend: TorchBackend, OnnxBackend or OpenVinoBackend.
        classes: class names and colours, for palettes and overlays.
        tile: largest tile side in pixels (a multiple of 32); bounds the memory of one forward pass.
        overlap: pixels shared by neighbouring tiles (a multiple of 32); cover the receptive field you need.
        batch_size: images or tiles per forward pass.
        input_size: (H, W) the model was trained at: each image is resized to it and the prediction
            resized back, so the model sees objects at the scale it learned. None: native resolution,
            padded (and tiled when large).
        tta: test-time augmentation of every forward pass (none, flip, flip+scales or flip+scales:S1,S2,...), as
            evaluation does.
        temperature: the model's fitted temperature (inference/temperature.py), which calibrated
            probabilities divide the logits by; ``load`` reads it from run.json or the export's metadata.
    """

    def __init__(self, backend: Backend, classes: ClassSet, tile: int = 1024, overlap: int = 128,
                 batch_size: int = 4, input_size: tuple[int, int] | None = None, tta: str = "none",
                 temperature: Temperature | float | None = None):
        check_tta(tta, backend)
        _check_tiles(tile, overlap)
        if batch_size < 1:
            raise BadValue("batch_size", batch_size, "must be at least 1")
        self.classes, self.tile, self.overlap = classes, tile, overlap
        self.calibration = as_temperature(temperature)
        self.forward = Forward(backend, classes.num_classes, batch_size, tta)
        if input_size and backend.fixed_size:
            input_size = backend.fixed_size  # a static ONNX file takes only its own size
        self.strategy = ResizeToScale(self.forward, input_size, band_pixels=tile * tile) if input_size \
            else NativeTiles(self.forward, tile, overlap)

    @property
    def backend(self) -> Backend:
        return self.forward.backend

    @property
    def batch_size(self) -> int:
        return self.forward.batch_size

    @property
    def input_size(self) -> tuple[int, int] | None:
        """The training scale images are resized to; None at native resolution."""
        return self.strategy.size if isinstance(self.strategy, ResizeToScale) else None

    @property
    def tta(self) -> str:
        return self.forward.tta

    @tta.setter
    def tta(self, mode: str) -> None:
        self.forward.tta = check_tta(mode, self.backend)

    @property
    def temperature(self) -> float | None:
        """The fitted temperature calibrated probabilities use; None when the model has none."""
        return self.calibration.value

    @property
    def num_classes(self) -> int:
        return self.classes.num_classes

    def palette(self) -> np.ndarray:
        return self.classes.palette()

    def predict(self, image: ImageLike) -> np.ndarray:
        """(H, W) uint8 class indices, the same size as ``image``."""
        return self.predict_batch([image])[0]

    def predict_proba(self, image: ImageLike, calibrated: bool = False) -> np.ndarray:
        """(C, H, W) float32 softmax probabilities (they sum to 1 over C); ``calibrated``: softmax(logits / T)
        with the model's fitted temperature T (SeglabError saying how to fit one when it has none)."""
        return self.predict_batch([image], proba=True, calibrated=calibrated)[0]

    def predict_batch(self, images: Sequence[ImageLike], proba: bool = False,
                      calibrated: bool = False) -> list[np.ndarray]:
        """Masks (or probabilities, calibrated ones with ``calibrated``) for several images; images of one size
        share forward passes."""
        if calibrated and not proba:
            raise BadValue("calibrated", calibrated, "a temperature changes probabilities, not masks; pass "
                                                     "proba=True")
        temperature = self.calibration.require() if calibrated else 1.0
        return self.strategy([to_rgb(im) for im in images], proba, temperature)


def _check_tiles(tile: int, overlap: int) -> None:
    try:
        check_model_size((tile, tile))
    except ValueError:
        raise BadValue("tile", tile, f"need a positive multiple of {SIZE_DIVISOR}") from None
    if overlap < 0 or overlap % SIZE_DIVISOR or overlap >= tile:
        raise BadValue("overlap", overlap, f"need a multiple of {SIZE_DIVISOR} with 0 <= overlap < tile ({tile})")


# ---------------------------------------------------------------------------------------------------
# Loading


def load(target: str | Path, device: str | None = "auto", amp: bool | None = None, tile: int = 1024,
         overlap: int = 128, batch_size: int = 4, input_size: tuple[int, int] | str | None = None,
         tta: str | None = None, backend: str = "auto", threads: int | None = None) -> Predictor:
    """A Predictor from a run folder, a ``.ckpt``, a ``save_pretrained`` folder, an ``.onnx`` file or an
    OpenVINO ``.xml`` file.

    ``input_size``: None uses the scale the model was trained at (stored with it); "native" or (H, W) override.
    ``tta``: None uses the run's test-time augmentation (none for exported files); or none, flip, flip+scales.
    ``amp``: None predicts in the precision the run trained in (its plan), as training resolves it on this device (``auto``
    for pretrained folders and OpenVINO; ONNX Runtime runs what the file holds); True or False override.
    ``backend``: auto (PyTorch for trained models, the file's own runtime for exports) or a key of BACKENDS;
    a trained model asked to run on onnxruntime or openvino is exported to ONNX first (fp32, any size).
    ``threads``: inference threads of ONNX Runtime and OpenVINO (None: their default).
    The temperature of ``predict_proba(image, calibrated=True)``: run.json's ``calibration.temperature`` (what
    ``seglab evaluate`` fitted on val for this checkpoint), or the export's metadata; ``predictor.temperature``.
    Nothing loaded here can run code: checkpoints are read weights-only, pretrained folders are safetensors,
    ONNX and OpenVINO files are graphs.
    """
    path = Path(target)
    if backend != "auto" and backend not in BACKENDS:
        raise BadValue("backend", backend, f"choose auto or one of {', '.join(BACKENDS)}")
    options = {"tile": tile, "overlap": overlap, "batch_size": batch_size, "tta": tta or "none"}

    def size(stored) -> tuple[int, int] | None:
        chosen = stored if input_size is None else input_size
        return None if chosen in (None, "native") else tuple(chosen)

    suffix = path.suffix.lower()
    if suffix in (".onnx", ".xml"):
        if not path.is_file():
            raise SeglabError(f"{path}: no such {'ONNX' if suffix == '.onnx' else 'OpenVINO'} file")
        runtimes = ("onnxruntime", "openvino") if suffix == ".onnx" else ("openvino",)
        if backend not in ("auto", *runtimes):
            raise BadValue("backend", backend, f"a {suffix} file runs on {' or '.join(runtimes)}")
        on_openvino = suffix == ".xml" or backend == "openvino"
        runs = OpenVinoBackend(path, device, amp, threads=threads) if on_openvino \
            else OnnxBackend(path, device, threads=threads)
        classes, meta = stored_classes(runs.metadata, runs.num_classes, path), json.loads(runs.metadata.get(KEY, "{}"))
        return Predictor(runs, classes, input_size=size(meta.get("input_size")),
                         temperature=stored_temperature(meta, path), **options)
    if path.is_dir() and (path / "seglab.json").is_file():
        model, classes = load_pretrained(path)
        meta = json.loads((path / "seglab.json").read_text())
        stored, precision, temperature = meta.get("input_size"), "auto", stored_temperature(meta, path)
    else:
        from seglab.runs import read_trained

        trained = read_trained(path)
        model, classes, stored = trained.build(), trained.classes, trained.config.data.eval_input_size()
        # the precision the run's plan resolved (runs older than the plan: its train.precision, resolved here)
        cfg = trained.config
        options["tta"], precision = tta or cfg.data.tta, cfg.plan.precision or cfg.train.precision
        temperature = run_temperature(trained, path)
    runs = _trained_backend(model, classes, backend, device, amp, precision, threads)
    return Predictor(runs, classes, input_size=size(stored), temperature=temperature, **options)


def _trained_backend(model, classes: ClassSet, backend: str, device, amp, precision: str, threads) -> Backend:
    """A trained PyTorch model on the backend asked for; ONNX Runtime and OpenVINO get a fresh fp32 export."""
    if backend in ("auto", "torch", "torch-compile"):
        return TorchBackend(model, device, amp, precision=precision, compile=backend == "torch-compile")
    import tempfile

    from seglab.inference.export.onnx import export_onnx

    with tempfile.TemporaryDirectory(prefix="seglab-export-") as tmp:
        onnx_path = export_onnx(model.float(), classes, Path(tmp) / "model.onnx", dynamic=True)
        if backend == "onnxruntime":
            return OnnxBackend(onnx_path.read_bytes(), device, threads=threads)
        return OpenVinoBackend(onnx_path, device, amp, precision=precision, threads=threads)

