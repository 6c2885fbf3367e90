"""One device vocabulary and one precision rule, for training, evaluation, prediction and benchmarks.

A device is named the same way everywhere (``train.accelerator``, ``seglab predict --device``, the run plan):
``auto`` (CUDA when present, else the CPU), ``cpu``, ``cuda``, ``cuda:N`` (one card), or ``mps``; ``gpu`` is
read as ``cuda``. A precision is a Lightning precision string; ``auto`` picks bf16 autocast where the device
computes it fast, so a model is evaluated and served in the arithmetic it was trained in.
"""

from __future__ import annotations

import functools
import re

from seglab.errors import BadValue

DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
PRECISION_NAMES = ("32", "bf16-mixed", "16-mixed")  # Lightning's names, besides auto
DTYPE_NAMES = {"32": "fp32", "bf16-mixed": "bf16", "16-mixed": "fp16"}


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """True on CPUs with bf16 matrix units (AMX or AVX512-BF16), where bf16 autocast is ~2.5x faster."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def check_device_name(name: str, key: str = "device") -> str:
    """``name`` if it is in the vocabulary (whatever this machine has), else BadValue naming ``key``."""
    if str(name) in ("auto", "cpu", "cuda", "gpu", "mps") or re.fullmatch(r"cuda:\d+", str(name)):
        return str(name)
    raise BadValue(key, name, f"use {', '.join(DEVICES)}")


def resolve_device(name: str | None = "auto", key: str = "device"):
    """The ``torch.device`` a name means on this machine; a device the machine cannot serve is one line."""
    import torch  # here, not at the top: the CLI checks names before torch loads

    name = check_device_name("auto" if name is None else name, key)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device("cuda" if name == "gpu" else name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        have = "MPS" if torch.backends.mps.is_available() else "only the CPU"
        raise BadValue(key, name, f"this machine has no CUDA device (it has {have}); use auto or cpu")
    if dev.type == "cuda" and (dev.index or 0) >= torch.cuda.device_count():
        raise BadValue(key, name, f"this machine has {torch.cuda.device_count()} CUDA device(s); use auto or cuda")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise BadValue(key, name, "this machine has no MPS device; use auto or cpu")
    return dev


def check_precision_name(precision: str, key: str = "precision") -> str:
    if precision == "auto" or precision in PRECISION_NAMES:
        return precision
    raise BadValue(key, precision, f"use auto, {', '.join(PRECISION_NAMES)}")


def resolve_precision(precision: str, device_type: str, amp: bool | None = None) -> str:
    """"32", "bf16-mixed" or "16-mixed" for ``precision`` (a ``train.precision`` value) on ``device_type``.

    auto: bf16 autocast on CUDA cards that have it (fp16 AMP on older ones) and on CPUs with bf16 units, else
    fp32. ``amp`` (--amp/--no-amp) overrides: False is fp32; True autocasts even a run trained in fp32, in the
    16-bit type auto picks here. CPUs autocast in bf16 only (Lightning refuses fp16 mixed precision on the CPU),
    so a "16-mixed" run on a CPU uses bf16.
    """
    import torch

    if amp is False:
        return "32"
    resolved = precision
    if precision == "auto" or (amp and precision == "32"):
        if device_type == "cuda":
            resolved = "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
        elif device_type == "cpu" and cpu_has_fast_bf16():
            resolved = "bf16-mixed"
        else:
            resolved = ("bf16-mixed" if device_type == "cpu" else "16-mixed") if amp else "32"
    if device_type == "cpu" and resolved == "16-mixed":
        resolved = "bf16-mixed"
    return resolved


def autocast_dtype(precision: str):
    """The dtype a resolved precision autocasts to; None for plain fp32."""
    import torch

    return {"32": None, "bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}[precision]
