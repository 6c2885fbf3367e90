"""Whether a run keeps its decoded images in memory (``data.cache``) or decodes them in DataLoader workers.

Caching reads each file once per run, which is why CamVid (about 0.5 GB decoded) trains fastest with no
workers at all; Cityscapes' training split alone is about 19 GB decoded and would push a 24 GB machine
into swap. ``data.cache: auto`` therefore caches only what fits ``data.memory_budget``, and the size is
estimated from the files' headers (PIL reads them without decoding pixels), so finding out costs
milliseconds, not the decode it is meant to avoid.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from seglab.config.checks import ConfigError
from seglab.config.schema import DataConfig
from seglab.data.sources import Sample
from seglab.errors import SeglabError
from seglab.imageio import orientation
from seglab.sizes import parse_memory

log = logging.getLogger("seglab")

DEFAULT_SHARE = 0.5  # of the memory available at the start: the rest is the model's, the optimizer's, the OS's
BYTES_PER_PIXEL = 4  # a cached pair: (H, W, 3) uint8 image + (H, W) uint8 label
MAX_AUTO_WORKERS = 8  # more decoders than this rarely help one training process, and each costs memory
GB = 1e9


def available_memory() -> int | None:
    """Bytes the system can hand out now without swapping (psutil if installed, else /proc/meminfo's
    MemAvailable); None where neither answers."""
    try:
        import psutil
        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024  # the kernel's "kB" are KiB
    except (OSError, ValueError, IndexError):
        pass
    return None


def header_size(path: Path) -> tuple[int, int]:
    """(H, W) of an image file as seglab decodes it (upright by its EXIF orientation), from its header."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            turn = orientation(im)
    except Exception:  # noqa: BLE001 - PIL raises many types for one problem; worded as the decoder words it
        raise SeglabError(f"{path}: cannot read image (missing, truncated or not an image)") from None
    return (w, h) if turn in (5, 6, 7, 8) else (h, w)


def decoded_bytes(samples: list[Sample]) -> int:
    """Bytes the dataset's cache holds once every sample is decoded: the image's pixels x 4 (an unlabelled
    sample gets an all-void label of the same size, so it counts the same)."""
    total = 0
    for sample in samples:
        h, w = header_size(sample.image)
        total += h * w * BYTES_PER_PIXEL
    return total


def stream_workers() -> int:
    """Decoders for streaming when ``data.workers`` is 0: usable cores - 1 (one for the training process),
    at least 1, at most MAX_AUTO_WORKERS; 0 where the platform cannot fork (a spawned worker re-imports
    the world for each loader, which costs more than it saves on the small machines that lack fork)."""
    if "fork" not in multiprocessing.get_all_start_methods():
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(MAX_AUTO_WORKERS, max(1, cores - 1))


def budget_bytes(cfg: DataConfig, available: int | None) -> int | None:
    """``data.memory_budget`` in bytes; None when it is a share and the available memory is unknown."""
    try:
        size, share = parse_memory(cfg.memory_budget) if cfg.memory_budget is not None else (None, DEFAULT_SHARE)
    except ValueError as e:
        raise ConfigError("data.memory_budget", str(e)) from None
    if size is not None:
        return size
    return int(share * available) if available is not None else None


def gb(n: int | None) -> str:
    return "unknown" if n is None else f"{n / GB:.3g} GB"


@dataclass(frozen=True)
class CachePolicy:
    """What a run does with decoded images, and why: recorded in run.json as ``data_cache``."""

    cache: bool
    workers: int
    reason: str
    decoded_bytes: int
    budget_bytes: int | None

    def record(self) -> dict:
        return {"cache": self.cache, "workers": self.workers, "decoded_gb": round(self.decoded_bytes / GB, 3),
                "budget_gb": None if self.budget_bytes is None else round(self.budget_bytes / GB, 3),
                "reason": self.reason}

    def describe(self) -> str:
        how = "cached in memory" if self.cache else "streamed (decoded every epoch)"
        return f"data: images {how}, {self.workers} DataLoader workers: {self.reason}"


def choose_policy(cfg: DataConfig, samples: list[Sample], available: int | None = None) -> CachePolicy:
    """Cache or stream ``samples`` (every split the run will cache) under ``cfg``; ``available`` defaults to
    the memory available now."""
    need = decoded_bytes(samples)
    if available is None:
        available = available_memory()
    budget = budget_bytes(cfg, available)
    if cfg.cache == "auto":
        if budget is None:
            cache, reason = True, f"{gb(need)} decoded; available memory unknown, so cached as before"
        else:
            cache = need <= budget
            reason = f"{gb(need)} decoded {'fits' if cache else 'exceeds'} the memory budget of {gb(budget)}"
    else:
        cache, reason = bool(cfg.cache), f"data.cache is {str(bool(cfg.cache)).lower()} ({gb(need)} decoded)"
    workers = cfg.workers
    if not cache and workers == 0:
        workers = stream_workers()
        reason += f"; {workers} workers chosen (usable cores - 1, at most {MAX_AUTO_WORKERS})" if workers else \
            "; no workers: this platform cannot fork"
    return CachePolicy(cache, workers, reason, need, budget)


def default_verdict(need: int) -> str:
    """What training under the default ``data.cache: auto`` would do with ``need`` decoded bytes on this
    machine now, for ``seglab data check``."""
    budget = budget_bytes(DataConfig(), available_memory())
    if budget is None:
        return f"decoded: {gb(need)} (available memory unknown: training caches it)"
    verb = "fits" if need <= budget else "exceeds"
    then = "caches it in memory" if need <= budget else "streams it through DataLoader workers"
    return (f"decoded: {gb(need)}, {verb} the default memory budget of {gb(budget)} "
            f"({DEFAULT_SHARE:.0%} of the memory available now): training {then}")
