"""The PyTorch backend, and how a device name and a run's ``train.precision`` resolve on this machine (the
OpenVINO backend resolves its precision hint the same way).
"""

from __future__ import annotations

import logging

import torch

from seglab.errors import BadValue, SeglabError, first_line
from seglab.training.device import resolve_precision

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
