"""Durations: parsed once where text enters (a config file, an option), formatted by one function.

A config keeps a duration as ``Duration``: seconds that remember how they were written, so the code does
arithmetic on seconds while config.yaml, run names and calibration keys keep the user's "4m".
"""

from __future__ import annotations

import re

UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
EXAMPLES = "use e.g. 90s, 10m, 1.5h or 00:30:00"


def parse_duration(text) -> float:
    """'90s', '10m', '1.5h', '00:30:00' (or a number of seconds) -> seconds; ValueError says what is wrong
    (the caller names the key or option)."""
    t = str(text).strip()
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhd]?)", t)
    if m:
        return float(m.group(1)) * UNITS[m.group(2)]
    m = re.fullmatch(r"(?:(\d+):)?(\d+):(\d+)", t)
    if m:
        return int(m.group(1) or 0) * 3600 + int(m.group(2)) * 60 + int(m.group(3))
    raise ValueError(f"bad duration {text!r}; {EXAMPLES}")


class Duration(float):
    """Seconds, as written: ``Duration("4m") == 240.0`` and ``str(Duration("4m")) == "4m"``."""

    text: str

    def __new__(cls, value):
        if isinstance(value, Duration):
            return value
        if isinstance(value, bool):
            raise TypeError(f"bad duration {value!r}; {EXAMPLES}")
        d = super().__new__(cls, parse_duration(value))
        d.text = f"{value:g}s" if isinstance(value, (int, float)) else str(value).strip()
        return d

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"Duration({self.text!r})"

    def __reduce__(self):  # copies and pickles keep the text
        return Duration, (self.text,)


def format_seconds(seconds: float | None) -> str:
    """Elapsed or remaining time for people, in progress lines, logs and reports: '42s', '3m10s', '2h05m';
    None (not measured) is '—'."""
    if seconds is None:
        return "—"
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    return f"{s // 60}m{s % 60:02d}s" if s < 3600 else f"{s // 3600}h{s % 3600 // 60:02d}m"
