"""The report's tables, as Markdown: the comparison (on the study's primary metric, the others beside it),
per-class IoU and Boundary IoU, every run, configurations, environment.

Markdown is the report's only source, so a cell's look is written into its text, never beside it:
**bold** marks a difference that beats training noise (and its p-value), *emphasis* marks something
wrong (a failed run, an error, an environment that differs between runs), and report_html.py colours
a cell green or red from its leading + or - sign and mutes a lone "—".
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

from seglab.config import RunConfig, format_seconds
from seglab.constants import VERSION
from seglab.study.compare import ConfigRow, Stat, StudyResults
from seglab.study.conclusions import NOISE, fmt_ci, fmt_p, fmt_stat, status_text
from seglab.study.primary import METRICS, Metric

MIOU = METRICS["miou"]
# Beside the primary metric in the comparison: (head, ConfigRow.stats key, metric if it has an interval)
BESIDE = [("test mIoU", "test_miou", "miou"), ("mean Dice", "mean_dice", "dice"),
          ("pixel acc.", "pixel_accuracy", "pixel_accuracy"), ("Boundary IoU", "boundary_iou", "boundary_iou")]

SKIP_KEYS = ("name", "out_dir", "data.root", "train.seed")  # differ by design; shown elsewhere
FILES = "report_files"  # the report's figures, beside report.md


def note(text: str) -> str:
    """A warning in its section: something the report could not show, and why."""
    return f"> {text}"


def figure(path, alt: str, missing: str) -> str:
    """The image, linked relative to report.md, or a note saying why there is none."""
    return f"![{alt}]({FILES}/{path.name})" if path else note(f"No {alt} figure: {missing}.")


def esc(text: str) -> str:
    """Text from outside the report (errors, environment) as literal Markdown: its markup characters escaped.
    An underscore inside a word ('x86_64') cannot start emphasis, so it stays as it is."""
    text = re.sub(r"([\\`*\[\]<>|&])", r"\\\1", text)
    return re.sub(r"(?<![^\W_])_|_(?![^\W_])", r"\\_", text)


def wrong(text: str) -> str:
    """A cell that says something went wrong (emphasised; report_html.py shows it in red)."""
    return f"*{text}*" if text else ""


def md_table(head: list[str], rows: list[list[str]]) -> str:
    def cell(text: str) -> str:
        return re.sub(r"(?<!\\)\|", r"\\|", text).replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows])


def count(v: float | None, digits: int = 0) -> str:
    return "—" if v is None else f"{v:,.{digits}f}"


def single_interval(row: ConfigRow, metric: Metric = MIOU):
    """The 95% interval over test images of ``metric`` for a configuration that ran once, else None (several
    seeds show their spread as ± std instead)."""
    return row.finished[0].interval(metric) if len(row.finished) == 1 else None


def interval_pct(row: ConfigRow, metric: Metric = MIOU) -> str | None:
    """'47.2–51.0%' for a single finished run with per-image arrays (or a recorded interval) of ``metric``."""
    iv = single_interval(row, metric)
    return None if iv is None else f"{100 * iv.low:.1f}–{100 * iv.high:.1f}%"


def fmt_loss(s: Stat) -> str:
    """A loss is no fraction: three decimals, mean ± std over seeds."""
    return fmt_stat(s, scale=1, digits=3)


def comparison_table(rows: list[ConfigRow], metric: Metric = MIOU) -> str:
    """One row per configuration: work, the primary metric (validation, test, interval), the other test
    metrics beside it, the test loss, and the change of the primary metric against the group's baseline."""
    groups = len({row.group for row in rows}) > 1
    beside = [(head, key) for head, key, name in BESIDE if name != metric.name]
    head = ["configuration", *(["group"] if groups else []), "model", "steps", "images", "epochs",
            f"val {metric.label}", f"test {metric.label}", "test 95% CI", *(h for h, _ in beside), "test loss",
            f"Δ test {metric.label}", "Δ 95% CI", "p (Holm)", "noise", "status"]
    body = []
    for row in rows:
        s, d = row.stats, row.delta
        if row.baseline:
            delta, ci, p, noise = "baseline", "", "", ""
        elif d is None:
            base = next((b for b in rows if b.baseline and b.group == row.group), None)
            why = ("no baseline" if base is None else "baseline unfinished" if not base.finished else
                   f"no test {metric.label}")
            delta, ci, p, noise = "—", "", "", why if row.finished else ""
        else:
            verdict = bool(d.significant) and d.training_noise_measured  # bold only what beats training noise
            delta, p = f"{100 * d.diff:+.1f}", fmt_p(d.p_holm)
            delta, p = (f"**{delta}**", f"**{p}**") if verdict else (delta, p)
            ci = fmt_ci(*d.ci) if d.ci else "—"
            noise = NOISE.get(d.test, "none")
        status = status_text(row)
        body.append([("★ " if row.baseline else "") + row.config_name, *([row.group] if groups else []),
                     row.fact("model") or "—", count(s["steps"].mean), count(s["images_seen"].mean),
                     count(s["epochs"].mean, 1), fmt_stat(s[metric.val_key]), fmt_stat(s[metric.test_key]),
                     interval_pct(row, metric) or "—", *(fmt_stat(s[key]) for _, key in beside),
                     fmt_loss(s["test_loss"]), delta, ci, p, noise,
                     status if status.endswith(" finished") else wrong(status)])
    return md_table(head, body)


def per_class_table(rows: list[ConfigRow], class_names: list[str], key: str = "per_class_iou",
                    head: str = "class (test IoU %)", mean: Metric | None = None) -> str:
    """One row per class, one column per configuration (mean ± std over its seeds) of metrics.json's
    per-class list ``key``; with ``mean``, a last row with that metric and its 95% interval (single runs)."""
    done = [r for r in rows if r.finished]

    def value(run, i: int) -> float | None:
        values = (run.test or {}).get(key) or []
        return values[i] if i < len(values) else None

    body = [[name, *(fmt_stat(Stat([v for r in row.finished if (v := value(r, i)) is not None])) for row in done)]
            for i, name in enumerate(class_names)]
    if mean is not None:
        body.append([f"**{mean.label} (class mean) [95% CI]**", *(
            fmt_stat(row.stats[mean.test_key]) + (f" [{100 * iv.low:.1f}, {100 * iv.high:.1f}]"
                                                  if (iv := single_interval(row, mean)) else "") for row in done)])
    return md_table([head, *(r.config_name for r in done)], body)


def runs_table(res: StudyResults) -> str:
    """Every run, one per seed: its status, work, time, the primary metric (validation, test and interval)
    and its test loss."""
    metric = res.primary
    def percent(v: float | None) -> str:
        return "—" if v is None else f"{100 * v:.1f}"

    def steps(r) -> str:
        done, planned = r.info.get("steps"), r.info.get("steps_planned")
        return "—" if done is None else f"{done:,}" + (f" of {planned:,}" if planned and planned != done else "")

    def test(r) -> str:
        iv = r.interval(metric) if r.finished else None
        return percent(r.value(metric.test_key)) + (f" [{100 * iv.low:.1f}, {100 * iv.high:.1f}]" if iv else "")

    def loss(r) -> str:
        v = r.value("test_loss")
        return "—" if v is None else f"{v:.3f}" + (f" ({r.test['loss_name']})" if r.test.get("loss_name") else "")

    body = [[r.name, str(r.seed), r.status if r.finished else wrong(r.status), esc(r.info.get("weights") or "—"),
             steps(r), count(r.info.get("images_seen")), count(r.info.get("epochs"), 2),
             format_seconds(r.info.get("train_seconds")), format_seconds(r.info.get("cpu_seconds")),
             count(r.info.get("img_per_s"), 1), percent(r.value(metric.val_key)), test(r), loss(r),
             wrong(esc(r.error or ""))]
            for r in res.runs]
    return md_table(["run", "seed", "status", "weights", "steps", "images", "epochs", "wall time", "CPU time",
                     "img/s", f"val {metric.label}", f"test {metric.label} [95% CI]", "test loss", "error"], body)


TEST_FIGURES = (("miou", "mIoU", 100, 1), ("mean_dice", "mean Dice", 100, 1), ("pixel_accuracy", "pixel acc.", 100, 1),
                ("boundary_iou", "Boundary IoU", 100, 1), ("ece", "ECE", 100, 1), ("ece_calibrated", "ECE at T", 100, 1),
                ("loss", "test loss", 1, 3))


def test_figures_table(res) -> str | None:
    """Every finished run's headline test figures, each with its 95% bootstrap interval over test images as its
    evaluation wrote it (metrics.json ``intervals``): no figure without its noise. None when no run has them."""
    runs = [r for r in res.finished if (r.test or {}).get("intervals")]
    if not runs:
        return None

    def cell(m: dict, key: str, scale: float, digits: int) -> str:
        v, iv = m.get(key), (m.get("intervals") or {}).get(key)
        if v is None:
            return "—"
        text = f"{scale * v:.{digits}f}"
        return text + (f" [{scale * iv[0]:.{digits}f}, {scale * iv[1]:.{digits}f}]" if iv and None not in iv else "")

    shown = [f for f in TEST_FIGURES if any((r.test or {}).get(f[0]) is not None for r in runs)]
    return md_table(["run", *(label for _, label, _, _ in shown)],
                    [[esc(r.name), *(cell(r.test, key, scale, digits) for key, _, scale, digits in shown)]
                     for r in runs])


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and k in ("data", "model", "train"):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = list(v) if isinstance(v, tuple) else v
    return out


def config_table(rows: list[ConfigRow]) -> str:
    """Each configuration's settings that differ from seglab's defaults; the ones all share come first."""
    defaults = flatten(RunConfig().to_dict())
    diffs = {}
    for row in rows:
        cfg = next((r.config for r in row.runs if r.config), None)
        diffs[row.config_name] = None if cfg is None else {
            k: v for k, v in flatten(cfg).items() if k not in SKIP_KEYS and defaults.get(k, object()) != v}
    known = [d for d in diffs.values() if d is not None]
    shared = {k: v for k, v in known[0].items() if all(d.get(k) == v for d in known)} if known else {}

    def show(d: dict) -> str:
        return ", ".join(f"`{k}={v}`" for k, v in d.items()) or "(defaults)"

    body = [["all configurations", show(shared)]] if len(known) > 1 else []
    body += [[name, "config.yaml missing" if d is None else show({k: v for k, v in d.items() if k not in shared})]
             for name, d in diffs.items()]
    return md_table(["configuration", "settings different from the defaults"], body)


def environment_table(res: StudyResults) -> str:
    envs = [(r.name, r.info.get("environment") or {}) for r in res.finished]
    keys = list(dict.fromkeys(k for _, e in envs for k in e))
    body = []
    for k in keys:
        values = list(dict.fromkeys("none" if e.get(k) is None else esc(str(e[k])) for _, e in envs))
        body.append([esc(k), values[0] if len(values) == 1 else wrong("; ".join(values) + " (differs between runs)")])
    built = datetime.now(timezone.utc).isoformat(timespec="seconds")
    body.append(["report built", f"seglab {VERSION}, {built}"])
    return md_table(["", "value (from run.json)"], body)
