"""Read a finished study folder into numbers a reader can trust: one row per configuration, aggregated over
its seeds, with the change against the group's baseline and whether that change is larger than the noise.

Everything rests on the study's primary metric (``primary_metric:``, mIoU by default; study/primary.py):
decisions (best configuration, best run) use its validation value; its test value is only reported, so
the test split is never used to pick a winner. Two noise estimates (study/stats.py): a paired bootstrap
over test images on the metric's per-image arrays (every run stores one confusion matrix and one set of
boundary counts per test image), and, with ``repeats`` >= 2, a paired t-test across training seeds. A verdict rests on the seed test when there is one (training noise is the
larger for short runs) and on the image bootstrap otherwise; p-values are Holm-corrected across all the
study's comparisons. This module holds numbers only: every word built on them (test names, verdicts,
statuses) lives in conclusions.py, and the tables in report_tables.py. One run's files are read by
records.py; whether the compared runs did the work they were meant to is fairness.py.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from seglab.errors import SeglabError
from seglab.runs import StudyDir
from seglab.study import primary, stats
from seglab.study.primary import Metric
from seglab.study.records import METRICS, RUN_FACTS, VAL_COLUMNS, RunRecord, load_run

ALPHA = 0.05  # significance level, two-sided, after Holm's correction
SEED_TEST = "seeds"  # which test a verdict rests on (Delta.test); conclusions.TEST_NAMES words them
IMAGE_TEST = "images"


@dataclass
class Stat:
    """Mean and sample standard deviation (ddof=1) of one metric over a configuration's finished seeds."""

    values: list[float]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return sum(self.values) / self.n if self.values else None

    @property
    def std(self) -> float | None:
        if self.n < 2:
            return None
        m = self.mean
        return math.sqrt(sum((v - m) ** 2 for v in self.values) / (self.n - 1))


@dataclass
class Delta:
    """Change of a configuration's mean test value of the primary metric against its group's baseline, with
    its noise estimates."""

    baseline: str
    diff: float
    n: int  # finished seeds of this configuration
    base_n: int  # finished seeds of the baseline
    images: stats.Interval | None  # paired bootstrap over test images (test-set noise)
    seeds: stats.SeedTest | None  # paired by seed (training noise); p_value None when n < 2
    p_holm: float | None = None  # the verdict's p-value, Holm-corrected across the study's comparisons

    @property
    def test(self) -> str | None:
        """The test the verdict rests on: seeds when there are >= 2 pairs, else test images, else none."""
        if self.seeds is not None and self.seeds.p_value is not None:
            return SEED_TEST
        if self.images is not None and self.images.p_value is not None:
            return IMAGE_TEST
        return None

    @property
    def p_value(self) -> float | None:
        """Uncorrected p-value of the verdict's test."""
        if self.test == SEED_TEST:
            return self.seeds.p_value
        return self.images.p_value if self.test == IMAGE_TEST else None

    @property
    def ci(self) -> tuple[float, float] | None:
        """95% interval of the difference from the verdict's test."""
        if self.test == SEED_TEST:
            return (self.seeds.low, self.seeds.high)
        return (self.images.low, self.images.high) if self.test == IMAGE_TEST else None

    @property
    def significant(self) -> bool | None:
        return None if self.p_holm is None else self.p_holm < ALPHA

    @property
    def training_noise_measured(self) -> bool:
        return self.test == SEED_TEST


@dataclass
class ConfigRow:
    """One configuration of the study (its seeds together)."""

    config_name: str
    group: str
    baseline: bool
    runs: list[RunRecord]
    stats: dict[str, Stat] = field(default_factory=dict)
    delta: Delta | None = None

    @property
    def finished(self) -> list[RunRecord]:
        return [r for r in self.runs if r.finished]

    def status_counts(self) -> dict[str, int]:
        """How many of its seeds are in each run status, in order of first appearance."""
        return dict(Counter(r.status for r in self.runs))

    def fact(self, key: str):
        """A run.json fact shared by the seeds (model, params, weights), from the first run that has it."""
        return next((r.info[key] for r in self.runs if r.info.get(key) is not None), None)


@dataclass(frozen=True)
class Selection:
    """What the best configuration and run are picked by: ``key`` (a RunRecord.value key) is the validation
    value of ``metric``; ``missing`` names the finished runs without the primary metric's validation value,
    which make the pick fall back to validation mIoU (runs logged before val_boundary_iou existed)."""

    key: str
    metric: Metric
    missing: list[str]

    @property
    def fell_back(self) -> bool:
        return bool(self.missing)


@dataclass
class StudyResults:
    path: Path
    name: str
    description: str
    created: str | None
    runs: list[RunRecord]
    rows: list[ConfigRow]
    primary: Metric = primary.METRICS[primary.DEFAULT]

    @property
    def finished(self) -> list[RunRecord]:
        return [r for r in self.runs if r.finished]

    def selection(self) -> Selection:
        """The primary metric's validation value when every finished run records it, else validation mIoU."""
        p = self.primary
        missing = [r.name for r in self.finished if r.value(p.val_key) is None]
        if missing and p.name != primary.DEFAULT:
            return Selection("val_miou", primary.METRICS[primary.DEFAULT], missing)
        return Selection(p.val_key, p, [])

    def best_row(self) -> ConfigRow | None:
        """The configuration with the best mean validation value of the selection's metric (its test value
        only where no run validated)."""
        key, test = self.selection().key, self.primary.test_key
        scored = [r for r in self.rows if r.finished]
        return max(scored, key=lambda r: _rank(r.stats[key].mean, r.stats[test].mean), default=None)

    def best_run(self) -> RunRecord | None:
        """The finished run with the best validation value: the one shown in confusion matrix and examples."""
        key, test = self.selection().key, self.primary.test_key
        return max(self.finished, key=lambda r: _rank(r.value(key), r.value(test)), default=None)


def _rank(val: float | None, test: float | None) -> tuple[int, float]:
    return (1, val) if val is not None else (0, test if test is not None else -1.0)


def load_results(study_dir: str | Path) -> StudyResults:
    """Every run of ``study_dir/study.json`` with its files; a folder without finished runs is an error."""
    path = Path(study_dir)
    if not path.is_dir():
        raise SeglabError(f"{path}: no such study folder; studies live in runs/studies/<name> "
                          f"(run `seglab study ...` first)")
    index = StudyDir(path).read_index()
    entries = [e for e in (index or {}).get("runs", []) if isinstance(e, dict) and e.get("name")]
    if not entries:
        raise SeglabError(f"{path}: no finished runs to report (no study.json with runs); run "
                          f"`seglab study ...` first")
    try:
        chosen = primary.metric(index.get("primary_metric"))
    except ValueError as e:
        raise SeglabError(f"{StudyDir(path).index}: 'primary_metric' {e}") from None
    runs = [load_run(path, entry) for entry in entries]
    if not any(r.finished for r in runs):
        states = ", ".join(sorted({r.status for r in runs}))
        raise SeglabError(f"{path}: no finished runs to report ({len(runs)} runs: {states}); run "
                          f"`seglab study ...` first")
    return StudyResults(path, index.get("name") or path.name, index.get("description") or "", index.get("created"),
                        runs, aggregate(runs, chosen), chosen)


def aggregate(runs: list[RunRecord], metric: Metric = primary.METRICS[primary.DEFAULT]) -> list[ConfigRow]:
    """One row per configuration (study order), with stats over finished seeds and deltas vs baseline on
    ``metric``; the deltas' p-values are Holm-corrected together."""
    rows: dict[str, ConfigRow] = {}
    for r in runs:
        rows.setdefault(r.config_name, ConfigRow(r.config_name, r.group, r.baseline, [])).runs.append(r)
    for row in rows.values():
        for key in (*METRICS, *VAL_COLUMNS, *RUN_FACTS):
            row.stats[key] = Stat([v for v in (r.value(key) for r in row.finished) if v is not None])
    baselines = {row.group: row for row in rows.values() if row.baseline}
    for row in rows.values():
        base = baselines.get(row.group)
        if base is not None and row is not base and row.finished and base.finished:
            row.delta = compare(row, base, metric)
    deltas = [row.delta for row in rows.values() if row.delta is not None]
    for d, p in zip(deltas, stats.holm([d.p_value for d in deltas])):
        d.p_holm = p
    return list(rows.values())


def compare(row: ConfigRow, base: ConfigRow, metric: Metric = primary.METRICS[primary.DEFAULT]) -> Delta | None:
    """Mean difference of ``metric``'s test value; a paired bootstrap over test images on its per-image
    arrays when every finished run has them (on the same images); a paired t-test over the seeds both
    configurations finished, on its test values. None when either side records no test value of it (runs
    evaluated before the metric existed)."""
    key = metric.test_key
    a, b = row.stats[key], base.stats[key]
    if a.mean is None or b.mean is None:  # older runs without this metric: nothing to compare
        return None
    images = None
    mats_a = [r.image_arrays(metric.arrays) for r in row.finished]
    mats_b = [r.image_arrays(metric.arrays) for r in base.finished]
    if all(m is not None for m in mats_a + mats_b) and len({m.shape for m in mats_a + mats_b}) == 1:
        images = stats.paired_bootstrap_diff(mats_a, mats_b, metric=metric.summary)
    by_seed = {r.seed: r.value(key) for r in base.finished}
    pairs = [(r.value(key), by_seed[r.seed]) for r in row.finished
             if r.seed in by_seed and r.value(key) is not None and by_seed[r.seed] is not None]
    seeds = stats.paired_seed_test([x for x, _ in pairs], [y for _, y in pairs]) if pairs else None
    return Delta(base.config_name, a.mean - b.mean, a.n, b.n, images, seeds)
