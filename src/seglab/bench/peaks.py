"""The yardstick of FLOP utilisation: the matmul peak, measured again between timed rounds, and its spread.

One peak measurement on a shared machine can be off by half: the same CPU gave 207 and 382 GFLOP/s of bf16
matmul a few minutes apart (issue 13). So the peak is measured before, between and after the timed rounds,
under the same load as the steps, the median is the yardstick, and a run whose measurements disagree by
more than ``SPREAD_LIMIT`` of that median is flagged: its utilisation figures are not to be trusted.
"""

from __future__ import annotations

import logging
import statistics

from seglab.bench import flops

log = logging.getLogger("seglab")
SPREAD_LIMIT = 0.10  # (max - min) / median above which a run's peak is called unstable


def spread(values: list[float], limit: float = SPREAD_LIMIT) -> dict:
    """Median, min, max and relative spread (max - min) / median of ``values``; ``unstable`` past ``limit``."""
    median = statistics.median(values)
    rel = (max(values) - min(values)) / median
    return {"median": median, "min": min(values), "max": max(values), "spread": round(rel, 4),
            "unstable": rel > limit, "measurements": len(values)}


class PeakSampler:
    """``sample()`` measures every dtype's matmul peak once more (best of 1 thread and all ``cpus``);
    ``summary()`` gives each dtype's measurements with their spread, and whether any is unstable."""

    def __init__(self, cpus: int, measure=flops.machine_peaks):
        self.cpus, self.measure = cpus, measure
        self.samples: list[dict[str, dict[str, float]]] = []

    def sample(self) -> None:
        self.samples.append(self.measure(self.cpus))

    def median(self, dtype: str) -> float:
        return statistics.median(s[dtype]["best"] for s in self.samples)

    def summary(self) -> dict:
        per_dtype = {}
        for dtype in self.samples[0]:
            stats = spread([s[dtype]["best"] for s in self.samples])
            per_dtype[dtype] = {**stats, "each": [s[dtype] for s in self.samples]}
        unstable = [d for d, s in per_dtype.items() if s["unstable"]]
        for d in unstable:
            s = per_dtype[d]
            log.warning("warning: the %s matmul peak varied %.0f%% across %d measurements (%.0f-%.0f GFLOP/s): "
                        "the machine's load changed during the run, so its shares of the peak are unreliable",
                        d, 100 * s["spread"], s["measurements"], s["min"] / 1e9, s["max"] / 1e9)
        return {**per_dtype, "unstable": bool(unstable), "spread_limit": SPREAD_LIMIT}
