"""Image sizes: reading "HxW", and the one rule that model inputs are multiples of ``SIZE_DIVISOR``; memory
sizes ("4GB", "50%") for ``data.memory_budget``.

Functions here raise ``ValueError`` about the value alone ("250x320: must be multiples of 32"); the caller
knows where the value came from and adds that (the CLI its option, config loading its key).
"""

from __future__ import annotations

import re

from seglab.constants import SIZE_DIVISOR

Size = tuple[int, int]  # (H, W)
NATIVE = "native"  # evaluation/prediction at each image's own resolution, padded to the divisor


def parse_size(value) -> Size:
    """'192x256' -> (192, 256); 256 -> (256, 256); [192, 256] -> (192, 256). No divisibility check."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (value, value)
    if isinstance(value, str) and re.fullmatch(r"\s*\d+\s*[xX×]\s*\d+\s*", value):
        h, w = re.split(r"[xX×]", value)
        return (int(h), int(w))
    if isinstance(value, str) and value.strip().isdigit():
        return (int(value), int(value))
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        return (int(value[0]), int(value[1]))
    raise ValueError(f"{value!r}: expected HxW, e.g. 192x256")


def round_up(n: int, k: int = SIZE_DIVISOR) -> int:
    """The smallest multiple of ``k`` that holds ``n`` (the padded size of a side)."""
    return -(-n // k) * k


MAX_SCALE = 4.0  # largest training or test-time image scale: 16x the pixels is a typo, not a choice


def nearest_valid(n: int) -> int:
    return max(SIZE_DIVISOR, round(n / SIZE_DIVISOR) * SIZE_DIVISOR)


def check_model_size(size: Size) -> Size:
    """``size`` if both sides are positive multiples of SIZE_DIVISOR (what the encoders need), else ValueError
    with the nearest valid size."""
    h, w = size
    if min(h, w) <= 0 or h % SIZE_DIVISOR or w % SIZE_DIVISOR:
        raise ValueError(f"{h}x{w}: height and width must be positive multiples of {SIZE_DIVISOR} "
                         f"(e.g. {nearest_valid(h)}x{nearest_valid(w)})")
    return (h, w)


def model_size(value, allow_native: bool = False) -> Size | str:
    """A model input size from text, a number or a pair, checked; ``native`` too where ``allow_native``."""
    if allow_native and isinstance(value, str) and value.strip().lower() == NATIVE:
        return NATIVE
    try:
        size = parse_size(value)
    except ValueError:
        raise ValueError(f"{value!r}: expected HxW, e.g. 192x256" + (", or native" if allow_native else "")) \
            from None
    return check_model_size(size)


MEMORY_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
                "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_memory(value) -> tuple[int | None, float | None]:
    """'4GB' -> (4e9 bytes, None); '50%' -> (None, 0.5), a share of the memory available when it is used.
    Units are decimal (GB = 10^9 bytes) or binary (GiB = 2^30), case-insensitive."""
    text = str(value).strip().upper().replace(" ", "")
    share = re.fullmatch(r"(\d+\.?\d*|\.\d+)%", text)
    if share:
        fraction = float(share.group(1)) / 100
        if not 0 < fraction <= 1:
            raise ValueError(f"{value!r}: a share of the available memory is above 0% and at most 100%")
        return None, fraction
    size = re.fullmatch(r"(\d+\.?\d*|\.\d+)([KMGT]I?B|B)", text)
    if not size or float(size.group(1)) <= 0:
        raise ValueError(f"{value!r}: expected a size like 4GB or 512MiB, or a share of the available "
                         "memory like 50%")
    return int(float(size.group(1)) * MEMORY_UNITS[size.group(2)]), None
