"""Peak resident memory of one benchmarked path, measured inside the benchmark's own process.

Both paths of a benchmark live in one process (so their timing ratio holds on a noisy machine), but
``getrusage``'s max RSS is process-wide and never goes down. Linux resets the process's high-water mark
(VmHWM) when 5 is written to ``/proc/self/clear_refs``, so a path's peak is read as
"RSS of the bare process + how far the high-water mark rose above the RSS at the start of its phase":
the memory it would peak at in a process of its own, whatever earlier paths still hold.
Without that file (other systems) a thread samples the RSS every few milliseconds instead.
"""

from __future__ import annotations

import threading
from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_mb(key: str) -> float:
    """VmRSS or VmHWM of this process in MiB (0.0 where /proc is missing)."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024  # the kernel reports kB
    except OSError:
        pass
    return 0.0


def rss_mb() -> float:
    """Current resident memory of this process in MiB."""
    return _status_mb("VmRSS")


def _reset_high_water_mark() -> bool:
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


class PeakRSS:
    """``with PeakRSS(baseline) as peak: ...`` then ``peak.mb`` = baseline + the rise above the RSS at entry.

    ``baseline`` is the RSS of the process before any benchmarked path was built (imports only).
    """

    def __init__(self, baseline_mb: float, interval_s: float = 0.005):
        self.baseline_mb, self.interval_s = baseline_mb, interval_s
        self.mb = 0.0
        self._start = 0.0
        self._sampled = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self):
        reset = _reset_high_water_mark()
        self._start = rss_mb()  # after the reset: the high-water mark starts from here
        if not reset:
            self._sampled = self._start
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sampled = max(self._sampled, rss_mb())

    def __exit__(self, *exc) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            peak = max(self._sampled, rss_mb())
        else:
            peak = _status_mb("VmHWM")
        self.mb = round(self.baseline_mb + max(peak - self._start, 0.0), 1)
