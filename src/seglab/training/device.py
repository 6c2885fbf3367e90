"""Accelerator and precision chosen for the machine at hand, overridable by config."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from seglab.errors import SeglabError

# Lightning precision settings (besides auto) and the autocast dtype each runs under (None: plain fp32).
PRECISIONS = {"32": None, "bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}
ACCELERATORS = ("cpu", "cuda", "gpu", "mps")
# Lightning strategies for several devices or machines (auto: one device, or Lightning's pick)
STRATEGIES = ("ddp", "ddp_spawn")


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """True on CPUs with bf16 matrix units (AMX or AVX512-BF16), where bf16 autocast is ~2.5x faster."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_accelerator(accelerator: str) -> str:
    """auto: CUDA when present, else the CPU. A device the machine cannot serve is one clear line."""
    if accelerator == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    acc = "cuda" if accelerator == "gpu" else accelerator
    available = {"cuda": torch.cuda.is_available, "mps": torch.backends.mps.is_available}.get(acc, lambda: True)
    if not available():
        have = "CUDA" if torch.cuda.is_available() else "MPS" if torch.backends.mps.is_available() else "only the CPU"
        raise SeglabError(f"train.accelerator={accelerator}: this machine has no {acc.upper()} device "
                          f"(it has {have}); use auto or cpu")
    return acc


def resolve_precision(precision: str, accelerator: str) -> str:
    """auto: bf16 autocast on CUDA cards and CPUs that support it, fp16 AMP on older cards, else fp32."""
    if precision != "auto":
        return precision
    acc = resolve_accelerator(accelerator)
    if acc == "cuda":
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    if acc == "cpu" and cpu_has_fast_bf16():
        return "bf16-mixed"
    return "32"


@dataclass(frozen=True)
class Runtime:
    """Where and how a run computes, resolved once per command from ``train.accelerator`` and
    ``train.precision``; training, evaluation and the budget calibration all run with it."""

    accelerator: str  # cpu, cuda or mps
    precision: str  # 32, bf16-mixed or 16-mixed
    processes: int = 1  # devices x nodes: the data-parallel world size

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return PRECISIONS[self.precision]


def resolve_runtime(train) -> Runtime:
    """The Runtime of a TrainConfig on this machine."""
    accelerator = resolve_accelerator(train.accelerator)
    return Runtime(accelerator, resolve_precision(train.precision, accelerator),
                   device_count(train.devices, accelerator) * train.nodes)


def device_count(devices: str, accelerator: str) -> int:
    """Devices per machine as Lightning reads ``train.devices``: auto and -1 are every GPU, one CPU process."""
    text = str(devices).strip()
    if text in ("auto", "-1"):
        return max(1, torch.cuda.device_count()) if accelerator == "cuda" else 1
    return len([d for d in text.split(",") if d]) if "," in text else int(text)
