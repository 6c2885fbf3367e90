"""Versions and hardware, recorded with every run and benchmark so numbers can be traced and repeated."""

from __future__ import annotations

import platform
from pathlib import Path

import torch

from seglab.constants import VERSION


def environment() -> dict:
    """Versions and hardware, recorded with each run so numbers can be traced and repeated."""
    import lightning
    import segmentation_models_pytorch as smp
    import timm

    env = {"seglab": VERSION, "python": platform.python_version(), "torch": torch.__version__,
           "lightning": lightning.__version__, "smp": smp.__version__, "timm": timm.__version__,
           "platform": platform.platform(), "cpu": cpu_model(),
           "cpu_threads": torch.get_num_threads(),
           "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
           "commit": _git_commit()}
    return env


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (falls back to platform's guess): numbers differ by CPU."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str | None:
    import subprocess

    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5, check=False,
                             cwd=Path(__file__).parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None
