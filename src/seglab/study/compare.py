"""Read a finished study folder into numbers a reader can trust: one row per configuration, aggregated over
its seeds, with the change against the group's baseline and whether that change is larger than the noise.

Decisions (best configuration, best run) use the validation mIoU; the test mIoU is only reported, so the
test split is never used to pick a winner. The noise test is Welch's t-test (two-sided, unequal
variances) on test mIoU across seeds; with a single seed on either side no noise estimate exists, and the
report says so instead of calling a difference an improvement.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from scipy import stats

from seglab.errors import SeglabError
from seglab.runs import RunDir
from seglab.training.callbacks import read_epoch_csv

ALPHA = 0.05  # significance level of the two-sided Welch test
TEST_NAME = "Welch's t-test (two-sided, unequal variances)"
SINGLE_RUN = "single run: no noise estimate"
# Aggregated per configuration: key -> where it comes from (metrics.json key, or run.json key).
METRICS = {"test_miou": "miou", "pixel_accuracy": "pixel_accuracy", "mean_dice": "mean_dice"}
RUN_FACTS = {"val_miou": "best_val_miou", "train_seconds": "train_seconds", "epochs": "epochs"}


@dataclass
class RunRecord:
    """One run (one seed) of the study, with whatever its folder holds."""

    name: str
    config_name: str
    group: str
    baseline: bool
    seed: int
    status: str  # finished | failed | running | pending | incomplete (finished but no test metrics)
    error: str | None
    run_dir: RunDir
    info: dict  # run.json
    test: dict | None  # metrics.json
    config: dict | None  # config.yaml

    @property
    def finished(self) -> bool:
        return self.status == "finished"

    def value(self, key: str) -> float | None:
        """A metric of this run by aggregated key (see METRICS and RUN_FACTS)."""
        if key in METRICS:
            return (self.test or {}).get(METRICS[key])
        if key == "val_miou" and self.info.get("best_val_miou") is None:
            vals = [r["val_miou"] for r in self.epochs() if r.get("val_miou") is not None]
            return max(vals) if vals else None
        return self.info.get(RUN_FACTS[key])

    def epochs(self) -> list[dict]:
        return read_epoch_csv(self.run_dir.epochs_csv)


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
    """Change of a configuration's mean test mIoU against its group's baseline."""

    baseline: str
    diff: float
    n: int  # finished seeds of this configuration
    base_n: int  # finished seeds of the baseline
    p_value: float | None  # None: no test possible (see ``test``)
    test: str  # the test used, or why there is none
    ci: tuple[float, float] | None = None  # 95% confidence interval of the difference (Welch)

    @property
    def significant(self) -> bool | None:
        return None if self.p_value is None else self.p_value < ALPHA


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

    @property
    def status(self) -> str:
        """'2 finished' (the number of seeds), or a summary such as '1/2 finished, 1 failed'."""
        counts: dict[str, int] = {}
        for r in self.runs:
            counts[r.status] = counts.get(r.status, 0) + 1
        if counts.get("finished", 0) == len(self.runs):
            return f"{len(self.runs)} finished"
        if len(self.runs) == 1:
            return self.runs[0].status
        rest = ", ".join(f"{n} {s}" for s, n in counts.items() if s != "finished")
        return f"{counts.get('finished', 0)}/{len(self.runs)} finished, {rest}"

    def fact(self, key: str):
        """A run.json fact shared by the seeds (model, params, weights), from the first run that has it."""
        return next((r.info[key] for r in self.runs if r.info.get(key) is not None), None)


@dataclass
class StudyResults:
    path: Path
    name: str
    description: str
    created: str | None
    runs: list[RunRecord]
    rows: list[ConfigRow]

    @property
    def finished(self) -> list[RunRecord]:
        return [r for r in self.runs if r.finished]

    def best_row(self) -> ConfigRow | None:
        """The configuration with the best mean validation mIoU (test mIoU only where no validation)."""
        scored = [r for r in self.rows if r.finished]
        return max(scored, key=lambda r: _rank(r.stats["val_miou"].mean, r.stats["test_miou"].mean), default=None)

    def best_run(self) -> RunRecord | None:
        """The finished run with the best validation mIoU: the one shown in confusion matrix and examples."""
        return max(self.finished, key=lambda r: _rank(r.value("val_miou"), r.value("test_miou")), default=None)


def _rank(val: float | None, test: float | None) -> tuple[int, float]:
    return (1, val) if val is not None else (0, test if test is not None else -1.0)


def _read(path: Path, loader):
    try:
        return loader(path.read_text()) if path.is_file() else None
    except (OSError, ValueError, yaml.YAMLError):
        return None


def load_results(study_dir: str | Path) -> StudyResults:
    """Every run of ``study_dir/study.json`` with its files; a folder without finished runs is an error."""
    path = Path(study_dir)
    if not path.is_dir():
        raise SeglabError(f"{path}: no such study folder; studies live in runs/studies/<name> "
                          f"(run `seglab study ...` first)")
    index = _read(path / "study.json", json.loads)
    entries = [e for e in (index or {}).get("runs", []) if isinstance(e, dict) and e.get("name")]
    if not entries:
        raise SeglabError(f"{path}: no finished runs to report (no study.json with runs); run "
                          f"`seglab study ...` first")
    runs = [_load_run(path, entry) for entry in entries]
    if not any(r.finished for r in runs):
        states = ", ".join(sorted({r.status for r in runs}))
        raise SeglabError(f"{path}: no finished runs to report ({len(runs)} runs: {states}); run "
                          f"`seglab study ...` first")
    return StudyResults(path, index.get("name") or path.name, index.get("description") or "", index.get("created"),
                        runs, aggregate(runs))


def _load_run(study_dir: Path, entry: dict) -> RunRecord:
    run_dir = RunDir(study_dir / entry.get("dir", f"runs/{entry['name']}"))
    info = _read(run_dir.info, json.loads) or {}
    test = _read(run_dir.metrics("test"), json.loads)
    status, error = entry.get("status", "pending"), entry.get("error")
    if test is not None and info.get("status") == "finished":
        status = "finished"
    elif status == "finished":  # the index says finished but the test metrics are missing or unreadable
        status, error = "incomplete", error or f"{run_dir.metrics('test').name} missing or unreadable"
    if status == "failed" and not error:
        error = info.get("error")
    return RunRecord(entry["name"], entry.get("config_name", entry["name"]), entry.get("group", "default"),
                     bool(entry.get("baseline", False)), int(entry.get("seed", 0)), status, error, run_dir, info,
                     test, _read(run_dir.config, yaml.safe_load))


def aggregate(runs: list[RunRecord]) -> list[ConfigRow]:
    """One row per configuration (study order), with stats over finished seeds and deltas vs baseline."""
    rows: dict[str, ConfigRow] = {}
    for r in runs:
        rows.setdefault(r.config_name, ConfigRow(r.config_name, r.group, r.baseline, [])).runs.append(r)
    for row in rows.values():
        for key in (*METRICS, *RUN_FACTS):
            row.stats[key] = Stat([v for v in (r.value(key) for r in row.finished) if v is not None])
    baselines = {row.group: row for row in rows.values() if row.baseline}
    for row in rows.values():
        base = baselines.get(row.group)
        if base is not None and row is not base and row.finished and base.finished:
            row.delta = compare(row.stats["test_miou"].values, base.stats["test_miou"].values, base.config_name)
    return list(rows.values())


def compare(values: list[float], base: list[float], base_name: str) -> Delta | None:
    """Mean difference and, when both sides have n >= 2, Welch's t-test and 95% CI of the difference."""
    if not values or not base:
        return None
    diff = sum(values) / len(values) - sum(base) / len(base)
    sizes = (base_name, diff, len(values), len(base))
    if len(values) < 2 or len(base) < 2:
        return Delta(*sizes, None, SINGLE_RUN)
    if Stat(values).std == 0 and Stat(base).std == 0:  # the t statistic would be infinite
        return Delta(*sizes, None, "identical results across seeds: no noise estimate")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # near-identical seeds: scipy warns, result stands
        res = stats.ttest_ind(values, base, equal_var=False)
    ci = res.confidence_interval(0.95)
    return Delta(*sizes, float(res.pvalue), TEST_NAME, (float(ci.low), float(ci.high)))


# ---------------------------------------------------------------------------------------------------
# Conclusions: sentences the data supports, no more.


def pts(x: float) -> str:
    """A difference of two fractions in percentage points, signed."""
    return f"{100 * x:+.1f} points"


def pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def verdict(delta: Delta) -> str:
    if delta.significant is None:
        return "apparently helped" if delta.diff > 0 else "apparently hurt" if delta.diff < 0 else "changed nothing"
    if delta.significant:
        return "helped" if delta.diff > 0 else "hurt"
    return "showed no change larger than the noise"


def conclusions(res: StudyResults) -> list[str]:
    """Markdown sentences: each hypothesis' effect with its confidence, the winner, and what went wrong."""
    lines = [_hypothesis(row) for row in res.rows if row.delta is not None]
    tested = sum(1 for row in res.rows if row.delta is not None and row.delta.p_value is not None)
    if tested >= 2:
        lines.append(f"{tested} changes were tested at α = {ALPHA} without correction for multiple comparisons: "
                     f"about {tested * ALPHA:.1f} false positive{'s' if tested * ALPHA != 1 else ''} are expected "
                     f"by chance alone, so treat p-values near {ALPHA} with care.")
    groups = {row.group for row in res.rows}
    for group in sorted(groups):
        members = [row for row in res.rows if row.group == group]
        base = next((row for row in members if row.baseline), None)
        if base is None and len(members) > 1:
            lines.append(f"Group **{group}** has no baseline (`baseline: true`), so its changes are not measured.")
        elif base is not None and not base.finished and len(members) > 1:
            lines.append(f"The baseline **{base.config_name}** of group **{group}** has no finished run, so its "
                         f"variants cannot be compared.")
    best = res.best_row()
    if best is not None:
        s = best.stats
        lines.append(f"Best configuration by validation mIoU: **{best.config_name}** ({fmt_stat(s['val_miou'])}% "
                     f"validation, {fmt_stat(s['test_miou'])}% test mIoU over {s['test_miou'].n} "
                     f"run{'s' if s['test_miou'].n != 1 else ''}).")
    lines += _problems(res)
    return lines


def _hypothesis(row: ConfigRow) -> str:
    d = row.delta
    head = (f"**{row.config_name}** {verdict(d)} against **{d.baseline}**: test mIoU {pts(d.diff)} "
            f"({pct(row.stats['test_miou'].mean)} vs {pct(row.stats['test_miou'].mean - d.diff)}, "
            f"{d.n} vs {d.base_n} run{'s' if d.base_n != 1 else ''}).")
    if d.p_value is not None:
        word = "larger than" if d.significant else "not larger than"
        return (f"{head} {TEST_NAME}: p = {d.p_value:.3g}, {word} the seed-to-seed noise at α = {ALPHA}; "
                f"95% CI of the change {100 * d.ci[0]:+.1f} to {100 * d.ci[1]:+.1f} points.")
    return (f"{head} {d.test.capitalize()}, so this change may be seed noise; repeat the study with "
            f"`repeats: 3` or more to test it.")


def fmt_stat(s: Stat, scale: float = 100, digits: int = 1) -> str:
    """'59.0 ± 1.4' (mean ± std, no-break spaces), '59.0' for one run, '—' for none."""
    if s.mean is None:
        return "—"
    mean = f"{scale * s.mean:.{digits}f}"
    return mean if s.std is None else f"{mean}\u00a0±\u00a0{scale * s.std:.{digits}f}"


def _problems(res: StudyResults) -> list[str]:
    lines = [f"Run **{r.name}** failed: `{r.error or 'no error recorded'}`; it is left out of every number."
             for r in res.runs if r.status == "failed"]
    unfinished = [r for r in res.runs if r.status not in ("finished", "failed")]
    if unfinished:
        lines.append(f"{len(unfinished)} run{'s' if len(unfinished) > 1 else ''} did not finish "
                     f"({', '.join(f'{r.name}: {r.status}' for r in unfinished)}) and "
                     f"{'are' if len(unfinished) > 1 else 'is'} left out; rerun the study to complete "
                     f"{'them' if len(unfinished) > 1 else 'it'}.")
    substituted = [r for r in res.runs if weights_substituted(r.info.get("weights"))]
    if substituted:
        notes = sorted({r.info["weights"] for r in substituted})
        lines.append(f"{len(substituted)} run{'s' if len(substituted) > 1 else ''} trained without the pretrained "
                     f"weights asked for ({', '.join(r.name for r in substituted)}: {'; '.join(notes)}); their "
                     f"numbers understate what pretrained encoders reach.")
    return lines


def weights_substituted(weights: str | None) -> bool:
    """run.json says e.g. "none (imagenet unavailable: ...)" when ImageNet weights could not be had."""
    return bool(weights) and "unavailable" in str(weights).lower()
