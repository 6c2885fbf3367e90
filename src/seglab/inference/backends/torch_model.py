"""The PyTorch backend: a trained network on one device, in the run's precision (device names and the
precision rule are seglab.device's, shared with training).
"""

from __future__ import annotations

import logging

import torch

from seglab.device import DTYPE_NAMES, resolve_device, resolve_precision
from seglab.errors import SeglabError, first_line

DTYPES = DTYPE_NAMES  # what a backend row says it computed in


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
        self.precision = resolve_precision(precision, self.device.type, amp)
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
