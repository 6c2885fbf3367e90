"""Whether a study's comparisons are fair: runs compared with each other trained on the work their budgets
meant them to (a budget in seconds buys fewer steps on a busier machine), finished it, and started from the
weights they asked for. Each is a warning in the report, beside numbers that would otherwise look sound.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from seglab.study.records import RunRecord

if TYPE_CHECKING:
    from seglab.study.compare import StudyResults

WORK_TOLERANCE = 0.05  # compared runs whose work differs from what their budgets intended by more are flagged


def work_mismatches(res: StudyResults) -> list[tuple[RunRecord, RunRecord, float]]:
    """Compared pairs (same seed, variant vs baseline) whose ratio of images trained differs from the ratio
    their budgets intended by more than WORK_TOLERANCE: (run, baseline run, actual / intended - 1)."""
    out = []
    for row in res.rows:
        base = next((b for b in res.rows if b.baseline and b.group == row.group and b is not row), None)
        if row.baseline or base is None:
            continue
        by_seed = {r.seed: r for r in base.finished}
        for r in row.finished:
            b = by_seed.get(r.seed)
            if b is None or None in (r.work(), b.work(), r.planned_work(), b.planned_work()) or not b.work():
                continue
            off = (r.work() / b.work()) / (r.planned_work() / b.planned_work()) - 1
            if abs(off) > WORK_TOLERANCE:
                out.append((r, b, off))
    return out


def short_runs(res: StudyResults) -> list[tuple[RunRecord, float]]:
    """Finished runs that trained on fewer images than planned (early stop, max_time): (run, share done)."""
    return [(r, r.work() / r.planned_work()) for r in res.finished
            if r.work() is not None and r.planned_work() and r.work() < (1 - WORK_TOLERANCE) * r.planned_work()]


def weights_substituted(weights: str | None) -> bool:
    """run.json says e.g. "none (imagenet unavailable: ...)" when ImageNet weights could not be had."""
    return bool(weights) and "unavailable" in str(weights).lower()
