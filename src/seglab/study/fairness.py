"""Whether a study's comparisons are fair: runs compared with each other trained on the work their budgets
meant them to (a budget in seconds buys fewer steps on a busier machine), finished it, started from the
weights they asked for, and were meant to train alike (same size, batch and length) beside their idea. Each is
a warning in the report, beside numbers that would otherwise look sound.
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


# The settings that set how much a run trains on, and at what size: a variant that changes one of them beside its
# idea is compared with its baseline on unequal terms, whatever its work was meant to be.
PROTOCOL_KEYS = (("data", "size", "size"), ("data", "batch_size", "batch"), ("train", None, "length"))


def _length(config: dict) -> str:
    """How long a run trains as its config says: a budget, a step count or epochs."""
    t = config.get("train") or {}
    if t.get("budget"):  # its steps are the budget's, converted per model: equal work by design
        return f"budget {t['budget']}"
    return f"{t['steps']} steps" if t.get("steps") else f"{t.get('epochs')} epochs"


def _protocol(config: dict) -> dict[str, str]:
    out = {}
    for section, key, label in PROTOCOL_KEYS:
        if key is None:
            out[label] = _length(config)
        else:
            value = (config.get(section) or {}).get(key)
            out[label] = "x".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
    return out


def protocol_differences(res: StudyResults) -> list[tuple[str, str, list[tuple[str, str, str]]]]:
    """Compared configurations (variant vs its group's baseline) whose image size, batch or training length
    differ: (variant, baseline, [(setting, variant's value, baseline's value)]). Such a comparison mixes the
    idea with the amount of training; a study may do it on purpose (one that reruns a notebook as it ran)."""
    out = []
    for row in res.rows:
        base = next((b for b in res.rows if b.baseline and b.group == row.group and b is not row), None)
        if row.baseline or base is None:
            continue
        mine = next((r.config for r in row.runs if r.config), None)
        theirs = next((r.config for r in base.runs if r.config), None)
        if mine is None or theirs is None:
            continue
        a, b = _protocol(mine), _protocol(theirs)
        diffs = [(label, a[label], b[label]) for label in a if a[label] != b[label]]
        if diffs:
            out.append((row.config_name, base.config_name, diffs))
    return out


def short_runs(res: StudyResults) -> list[tuple[RunRecord, float]]:
    """Finished runs that trained on fewer images than planned (early stop, max_time): (run, share done)."""
    return [(r, r.work() / r.planned_work()) for r in res.finished
            if r.work() is not None and r.planned_work() and r.work() < (1 - WORK_TOLERANCE) * r.planned_work()]


def weights_substituted(weights: str | None) -> bool:
    """run.json says e.g. "none (imagenet unavailable: ...)" when ImageNet weights could not be had."""
    return bool(weights) and "unavailable" in str(weights).lower()
