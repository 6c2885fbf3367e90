"""Image sizes: reading "HxW", and the one rule that model inputs are multiples of ``SIZE_DIVISOR``.

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
