"""What runs the model: a PyTorch module (in the run's precision) or an ONNX Runtime session, and the
batched, test-time-augmented forward pass both prediction strategies call.

A backend maps (B, 3, H, W) uint8 RGB to (B, C, H, W) float32 logits on the CPU, and says which input
sizes and batch sizes it takes (``fixed_size``, ``max_batch``: None where any works).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from seglab.errors import BadValue, SeglabError, first_line
from seglab.models.tta import TTA_SCALES, tta_logits
from seglab.training.device import resolve_precision


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
    memory (bf16 on CPUs with bf16 units: about 2.5x faster here, >99.5% of pixels as in fp32)."""

    fixed_size: tuple[int, int] | None = None  # any H, W divisible by SIZE_DIVISOR works
    max_batch: int | None = None

    def __init__(self, model: torch.nn.Module, device: str | None = "auto", amp: bool | None = None,
                 precision: str = "auto"):
        self.device = resolve_device(device)
        self.precision = predict_precision(precision, amp, self.device.type)
        self.amp = self.precision != "32"
        self.amp_dtype = torch.bfloat16 if self.precision == "bf16-mixed" else torch.float16
        self.model = model.eval().to(self.device)
        if self.amp:
            self.model = self.model.to(memory_format=torch.channels_last)

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) uint8 -> (B, C, H, W) float32 logits on the CPU."""
        x = images.to(self.device, non_blocking=True)
        if self.amp:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp):
            logits = self.model(x)
        return logits.float().cpu()


class OnnxBackend:
    """An exported model run by ONNX Runtime (CUDA provider when asked for and present, else CPU), with
    ``threads`` intra-op threads (None: ONNX Runtime's default, one per physical core).

    Input (B, 3, H, W) float32 in 0..255, output logits. A static export fixes H, W (and maybe B); the
    predictor then pads to, and tiles with, that size.
    """

    def __init__(self, path: Path, device: str | None = "auto", threads: int | None = None):
        import onnxruntime as ort

        want_cuda = device not in ("cpu",) and "CUDAExecutionProvider" in ort.get_available_providers()
        providers = (["CUDAExecutionProvider"] if want_cuda else []) + ["CPUExecutionProvider"]
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as e:  # noqa: BLE001 - ORT raises its own Fail/InvalidGraph/... types
            raise SeglabError(f"{path}: not a usable ONNX model ({first_line(e, 160)})") from None
        inp, out = self.session.get_inputs()[0], self.session.get_outputs()[0]
        if len(inp.shape) != 4 or len(out.shape) != 4:
            raise SeglabError(f"{path}: expected an image model, (B, 3, H, W) -> (B, C, H, W); "
                              f"got {inp.shape} -> {out.shape}")
        self.input_name = inp.name
        b, _, h, w = inp.shape  # entries are ints (static) or names (dynamic)
        self.fixed_size = (h, w) if isinstance(h, int) and isinstance(w, int) else None
        self.max_batch = b if isinstance(b, int) else None
        self.num_classes = out.shape[1] if isinstance(out.shape[1], int) else None
        self.metadata = self.session.get_modelmeta().custom_metadata_map

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = images.numpy().astype(np.float32)  # (B, 3, H, W)
        (logits,) = self.session.run(None, {self.input_name: x})
        return torch.from_numpy(logits)


Backend = TorchBackend | OnnxBackend


class Forward:
    """A backend applied to any number of images: ``batch_size`` at a time, test-time augmented (``tta``),
    and checked to give one output per known class."""

    def __init__(self, backend: Backend, num_classes: int, batch_size: int, tta: str = "none"):
        self.backend, self.num_classes = backend, num_classes
        self.batch_size = min(batch_size, backend.max_batch or batch_size)
        self.tta = tta

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) uint8 -> (N, C, H, W) float32 logits."""
        out = torch.cat([tta_logits(self.backend, images[s:s + self.batch_size], self.tta).float()
                         for s in range(0, len(images), self.batch_size)])
        if out.shape[1] != self.num_classes:
            raise SeglabError(f"model outputs {out.shape[1]} classes but {self.num_classes} class names are "
                              "known; the class list does not belong to this model")
        return out

    def probs(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) uint8 -> (N, C, H, W) float32 softmax probabilities."""
        return self.logits(images).softmax(1)


def check_tta(tta: str, backend: Backend) -> str:
    """``tta`` if the backend can run its views, else BadValue."""
    if tta not in TTA_SCALES:
        raise BadValue("tta", tta, f"choose one of {', '.join(TTA_SCALES)}")
    if backend.fixed_size and len(TTA_SCALES[tta]) > 1:
        raise BadValue("tta", tta, f"rescaled views need a model that takes any input size, and this export "
                                   f"takes only {backend.fixed_size[0]}x{backend.fixed_size[1]}; use flip or an "
                                   "export made with --dynamic")
    return tta
