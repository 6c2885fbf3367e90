"""Build a study's report: ``report.md`` (figures in report_files/) and a self-contained ``report.html``.

    seglab report runs/studies/quick

report.md is the one source: its sections are assembled here as Markdown (tables from report_tables.py,
sentences from conclusions.py), and report.html is that same Markdown rendered by report_html.py, with
images as data URIs and CSS inline, so the two files cannot disagree and the page needs no network.
Optional pieces that cannot be made (no checkpoint, data unreachable) become a note in their section;
only a study without any finished run is an error.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from seglab.config import format_seconds
from seglab.errors import SeglabError, first_line
from seglab.runs import write_text
from seglab.study import figures, notebook_report, report_metrics
from seglab.study.compare import ALPHA, IMAGE_TEST, SEED_TEST, StudyResults, load_results
from seglab.study.conclusions import NOISE, TEST_NAMES, conclusions, fmt_stat
from seglab.study.report_html import render_html, slug
from seglab.study.report_tables import (
    FILES,
    comparison_table,
    config_table,
    environment_table,
    esc,
    figure,
    interval_pct,
    note,
    per_class_table,
    runs_table,
    test_figures_table,
)

FIGURES = ("curves", "per_class_iou", "confusion", "examples", "reliability", "per_image", "worst")


def build_report(study_dir: str | Path, data_root: str | None = None) -> tuple[Path, Path]:
    """Write report.md and report.html into ``study_dir`` from its finished runs; returns both paths."""
    res = load_results(study_dir)
    files = res.path / FILES
    files.mkdir(exist_ok=True)
    for name in FIGURES:  # a figure that cannot be rebuilt must not survive from an older report
        (files / f"{name}.png").unlink(missing_ok=True)
    text = markdown(res, assemble(res, files, data_root))
    md, page = res.path / "report.md", res.path / "report.html"
    write_text(md, text)
    write_text(page, render_html(text, res.path))
    return md, page


def markdown(res: StudyResults, sections: list[tuple[str, list[str]]]) -> str:
    """The whole report.md: title, dates, a contents line linking every section, the sections."""
    created = f"created {res.created[:16].replace('T', ' ')}, " if res.created else ""
    built = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M")
    out = [f"# Study report: {res.name}", f"{created}report built {built} UTC",
           "Contents: " + " · ".join(f"[{title}](#{slug(title)})" for title, _ in sections)]
    for title, blocks in sections:
        out += [f"## {title}", *blocks]
    return "\n\n".join(out) + "\n"


def assemble(res: StudyResults, files: Path, data_root: str | None) -> list[tuple[str, list[str]]]:
    """Every section in report order as (title, Markdown blocks); figures are written to ``files`` on the way."""
    best, p = res.best_run(), res.primary
    picked = f"validation {res.selection().metric.label}"
    class_names = (best.test or {}).get("class_names") or best.info.get("class_names") or []
    return [
        ("Summary", [*([res.description] if res.description else []), summary(res)]),
        ("Comparison", [comparison_table(res.rows, p), (
            f"Percent (test loss: the loss's own units); mean ± standard deviation where a configuration ran with "
            f"several seeds. The study's primary metric is {p.label}: its validation and test values come first, "
            f"the other test metrics beside it (definitions: [What the numbers mean](#what-the-numbers-mean)). "
            f"Work: optimizer steps, images trained on and epochs (steps / steps per epoch); budgets are converted "
            f"into steps before training, so load from other programs cannot change them. Test 95% CI: bootstrap "
            f"over test images (single runs). Δ: change of the mean test {p.label} against the group's baseline "
            f"(★), in points, with the 95% interval of the test named under 'noise': '{NOISE[SEED_TEST]}' "
            f"({TEST_NAMES[SEED_TEST]}) covers training noise, '{NOISE[IMAGE_TEST]}' ({TEST_NAMES[IMAGE_TEST]}) "
            f"only test-image sampling. p is Holm-corrected across the study's comparisons; bold when < {ALPHA} "
            f"by a test that covers training noise. The best configuration is picked by {picked}, never "
            f"by test.")]),
        ("Conclusions", ["\n".join(f"- {line}" for line in conclusions(res))]),
        *notebook_report.section(res, files, data_root),  # only a study that ships its notebook's figures
        ("What the numbers mean", report_metrics.definitions(res, best)),
        ("Training curves", [figure(
            figures.training_curves(res.rows, files / "curves.png"), "training curves",
            "no run has a metrics.csv yet")]),
        ("Per-class IoU", [figure(
            figures.per_class_iou(res.rows, class_names, files / "per_class_iou.png"), "per-class IoU",
            "no per-class IoU in metrics.json"), per_class_table(res.rows, class_names)]),
        ("Boundary IoU per class", report_metrics.boundary_section(res, best, class_names)),
        ("Calibration", report_metrics.calibration_section(res, best, files)),
        ("Per-image view", report_metrics.per_image_section(res, best, class_names, data_root, files)),
        ("Confusion matrix", [figure(
            figures.confusion_matrix(best.test or {}, f"{best.name}: test confusion matrix (row-normalised, %)",
                                     files / "confusion.png"), "confusion matrix", "no confusion matrix recorded"),
            (f"Best run by {picked}: **{best.name}**. Rows are true classes and sum to 100%; the diagonal "
             f"is each class's recall.")]),
        ("Qualitative examples", examples(best, data_root, files / "examples.png")),
        ("Per-run details", [budget_note(res), "Every run of the study, one per seed:", runs_table(res),
                             *test_figures_blocks(res),
                             "What each configuration changes against seglab's defaults:", config_table(res.rows)]),
        ("Environment", [environment_table(res)]),
    ]


def test_figures_blocks(res: StudyResults) -> list[str]:
    """The per-run table of every test figure with its interval, with its caption, when the runs have them."""
    table = test_figures_table(res)
    if table is None:
        return []
    return [("Every finished run's test figures (percent; the loss in its own units), each with its 95% bootstrap "
             "interval over test images as its evaluation wrote it:"), table]


def budget_note(res: StudyResults) -> str:
    """How the runs' budgets became steps (from run.json's calibration records)."""
    cals = {}
    for r in res.runs:
        b = r.info.get("budget")
        if isinstance(b, dict) and b.get("steps"):
            cals.setdefault(b.get("key"), (b, []))[1].append(r.config_name)
    if not cals:
        return "No run had a compute budget: each trained for its configured epochs or steps."
    parts = [f"{', '.join(sorted(set(names)))}: {b['seconds_per_step']:.3f} s per step "
             f"({'GPU' if b['clock'] == 'cuda' else 'single-thread CPU'}) → {b['steps']:,} steps for "
             f"{b['budget']} × {b['threads']} thread{'s' if b['threads'] > 1 else ''}"
             for b, names in cals.values()]
    return ("Budgets were converted into steps before training, from each model's measured step cost "
            "(single-thread CPU time, which other programs on the machine do not inflate): " + "; ".join(parts) + ".")


def improvements(res: StudyResults) -> str:
    """'2 (a, b)', '0', or why none can be counted: only tests that cover training noise count."""
    measured = [r for r in res.rows if r.delta and r.delta.training_noise_measured]
    if not measured:
        return "not measured (one run per configuration)" if any(r.delta for r in res.rows) else "no comparisons"
    helped = [r.config_name for r in measured if r.delta.significant and r.delta.diff > 0]
    return f"{len(helped)}" + (f" ({', '.join(helped)})" if helped else "")


def summary(res: StudyResults) -> str:
    """The Summary's 'key: value' bullets (report.html repeats them as its header cards)."""
    row, p = res.best_row(), res.primary
    seconds = sum(r.info.get("train_seconds") or 0 for r in res.runs)
    interval = interval_pct(row, p)
    groups = len({r.group for r in res.rows})
    beside = "" if p.name == "miou" else f"; test mIoU {fmt_stat(row.stats['test_miou'])}%"
    return "\n".join(f"- {line}" for line in [
        (f"Runs: **{len(res.finished)}/{len(res.runs)} finished** in {len(res.rows)} configurations, "
         f"{groups} group{'s' if groups > 1 else ''}"),
        f"Best configuration (validation {res.selection().metric.label}): **{row.config_name}**, test {p.label} "
        f"{fmt_stat(row.stats[p.test_key])}%" + (f" (95% CI {interval})" if interval else "") + beside,
        f"Improvements beyond training noise: **{improvements(res)}**",
        f"Total training time: {format_seconds(seconds)} wall-clock",
    ])


def examples(best, data_root: str | None, path: Path) -> list:
    """The qualitative grid, or a note that says why there is none."""
    if not best.run_dir.best.is_file() and not best.run_dir.last.is_file():
        return [note(f"No examples: {best.name} has no checkpoint (checkpoints/best.ckpt).")]
    try:
        ex, names, colors = figures.predict_examples(best, data_root)
    except SeglabError as e:
        return [note(f"No examples: {esc(str(e))}.")]
    except Exception as e:  # noqa: BLE001 - a broken optional figure must not cost the whole report
        return [note(f"No examples: inference failed ({type(e).__name__}: {esc(first_line(e, 200))}).")]
    out = figures.qualitative_grid(ex, names, colors, f"{best.name} on fixed test images", path)
    return [figure(out, "qualitative examples", "the test split is empty"),
            (f"The same {len(ex)} test images every build (evenly spaced through the split), native resolution. "
             f"Error map: red = wrong, grey = void (not scored).")]


