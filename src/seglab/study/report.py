"""Build a study's report: ``report.md`` (figures in report_files/) and a self-contained ``report.html``.

    seglab report runs/studies/quick

The report is first assembled as a list of sections made of a few block types (paragraph, note, list,
table, image), then written out by two small renderers, so the Markdown and the HTML always say the
same thing. The HTML embeds its images as data URIs and its CSS inline: one file to mail or archive,
no network needed to view it. Optional pieces that cannot be made (no checkpoint, data unreachable)
become a note in their section; only a study without any finished run is an error.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import seglab
from seglab.config import RunConfig
from seglab.errors import SeglabError, first_line
from seglab.runs import write_text
from seglab.study import figures
from seglab.study.compare import ALPHA, IMAGE_TEST, SEED_TEST, ConfigRow, Stat, StudyResults, load_results
from seglab.study.conclusions import conclusions, fmt_ci, fmt_p, fmt_stat

FILES = "report_files"
FIGURES = ("curves", "per_class_iou", "confusion", "examples")
SKIP_KEYS = ("name", "out_dir", "data.root", "train.seed")  # differ by design; shown elsewhere


@dataclass
class Cell:
    text: str
    css: str = ""  # HTML class: pos / neg / sig / muted


@dataclass
class Table:
    head: list[str]
    rows: list[list[str | Cell]]


@dataclass
class Image:
    path: Path
    alt: str


@dataclass
class Note:
    text: str
    warn: bool = True  # False: an explanatory caption rather than a warning


@dataclass
class Section:
    title: str
    blocks: list = field(default_factory=list)  # str (paragraph), Note, list[str] (bullets), Table, Image

    @property
    def anchor(self) -> str:
        """The id GitHub and most Markdown viewers give the heading, so one link works in both files."""
        return re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-")


def build_report(study_dir: str | Path, data_root: str | None = None) -> tuple[Path, Path]:
    """Write report.md and report.html into ``study_dir`` from its finished runs; returns both paths."""
    res = load_results(study_dir)
    files = res.path / FILES
    files.mkdir(exist_ok=True)
    for name in FIGURES:  # a figure that cannot be rebuilt must not survive from an older report
        (files / f"{name}.png").unlink(missing_ok=True)
    sections = assemble(res, files, data_root)
    md, page = res.path / "report.md", res.path / "report.html"
    write_text(md, render_markdown(res, sections))
    write_text(page, render_html(res, sections))
    return md, page


def assemble(res: StudyResults, files: Path, data_root: str | None) -> list[Section]:
    """Every section in report order; figures are written to ``files`` on the way."""
    best = res.best_run()
    class_names = (best.test or {}).get("class_names") or best.info.get("class_names") or []
    return [
        Section("Summary", [*([res.description] if res.description else []), summary(res)]),
        Section("Comparison", [comparison_table(res.rows), Note(
            "Percent; mean ± standard deviation where a configuration ran with several seeds. Work: optimizer "
            "steps, images trained on and epochs (steps / steps per epoch); budgets are converted into steps "
            "before training, so load from other programs cannot change them. Test 95% CI: bootstrap over test "
            "images (single runs). Δ: change of the mean test mIoU against the group's baseline (★), in points, "
            f"with the 95% interval of the test named under 'noise': '{SEED_TEST}' covers training noise, "
            f"'{IMAGE_TEST}' only test-image sampling. p is Holm-corrected across the study's comparisons; bold "
            f"when < {ALPHA} by a test that covers training noise. The best configuration is picked by "
            f"validation mIoU, never by test.", warn=False)]),
        Section("Conclusions", [conclusions(res)]),
        Section("Training curves", [_figure(
            figures.training_curves(res.rows, files / "curves.png"), "training curves",
            "no run has a metrics.csv yet")]),
        Section("Per-class IoU", [_figure(
            figures.per_class_iou(res.rows, class_names, files / "per_class_iou.png"), "per-class IoU",
            "no per-class IoU in metrics.json"), per_class_table(res.rows, class_names)]),
        Section("Confusion matrix", [_figure(
            figures.confusion_matrix(best.test or {}, f"{best.name}: test confusion matrix (row-normalised, %)",
                                     files / "confusion.png"), "confusion matrix", "no confusion matrix recorded"),
            (f"Best run by validation mIoU: **{best.name}**. Rows are true classes and sum to 100%; the diagonal "
             f"is each class's recall.")]),
        Section("Qualitative examples", examples(best, data_root, files / "examples.png")),
        Section("Per-run details", [budget_note(res), "Every run of the study, one per seed:", runs_table(res),
                                    "What each configuration changes against seglab's defaults:",
                                    config_table(res.rows)]),
        Section("Environment", [environment_table(res)]),
    ]


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


def _figure(path: Path | None, alt: str, missing: str):
    return Image(path, alt) if path else Note(f"No {alt} figure: {missing}.")


# ---------------------------------------------------------------------------------------------------
# Section contents


def fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    s = round(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def fmt_params(n) -> str:
    return "—" if n is None else f"{n / 1e6:.2f} M"


def improvements(res: StudyResults) -> str:
    """'2 (a, b)', '0', or why none can be counted: only tests that cover training noise count."""
    measured = [r for r in res.rows if r.delta and r.delta.training_noise_measured]
    if not measured:
        return "not measured (one run per configuration)" if any(r.delta for r in res.rows) else "no comparisons"
    helped = [r.config_name for r in measured if r.delta.significant and r.delta.diff > 0]
    return f"{len(helped)}" + (f" ({', '.join(helped)})" if helped else "")


def summary(res: StudyResults) -> list[str]:
    row = res.best_row()
    seconds = sum(r.info.get("train_seconds") or 0 for r in res.runs)
    interval = _interval_pct(row)
    return [
        (f"Runs: **{len(res.finished)}/{len(res.runs)} finished** in {len(res.rows)} configurations, "
         f"{len({r.group for r in res.rows})} group{'s' if len({r.group for r in res.rows}) > 1 else ''}"),
        f"Best configuration (validation mIoU): **{row.config_name}**, test mIoU {fmt_stat(row.stats['test_miou'])}%"
        + (f" (95% CI {interval})" if interval else ""),
        f"Improvements beyond training noise: **{improvements(res)}**",
        f"Total training time: {fmt_time(seconds)} wall-clock",
    ]


def _interval_pct(row: ConfigRow) -> str | None:
    """'47.2–51.0%' for a single finished run with per-image matrices."""
    if len(row.finished) != 1 or row.finished[0].test_interval is None:
        return None
    iv = row.finished[0].test_interval
    return f"{100 * iv.low:.1f}–{100 * iv.high:.1f}%"


def _count(v: float | None, digits: int = 0) -> str:
    return "—" if v is None else f"{v:,.{digits}f}"


def comparison_table(rows: list[ConfigRow]) -> Table:
    groups = len({row.group for row in rows}) > 1
    head = ["configuration", *(["group"] if groups else []), "model", "steps", "images", "epochs", "val mIoU",
            "test mIoU", "test 95% CI", "pixel acc.", "mean Dice", "Δ test mIoU", "Δ 95% CI", "p (Holm)", "noise",
            "status"]
    body = []
    with_baseline = {row.group for row in rows if row.baseline}
    for row in rows:
        s, d = row.stats, row.delta
        if row.baseline:
            delta, ci, p, noise = Cell("baseline", "muted"), "", "", ""
        elif d is None:
            why = "baseline unfinished" if row.group in with_baseline else "no baseline"
            delta, ci, p, noise = Cell("—", "muted"), "", "", Cell(why if row.finished else "", "muted")
        else:
            tone = "pos" if d.diff > 0 else "neg" if d.diff < 0 else ""
            verdict = bool(d.significant) and d.training_noise_measured  # bold only what beats training noise
            delta = Cell(f"{100 * d.diff:+.1f}", f"{tone} sig" if verdict else tone)
            ci = fmt_ci(*d.ci) if d.ci else "—"
            p = Cell(fmt_p(d.p_holm), "sig" if verdict else "muted")
            noise = Cell({SEED_TEST: "training seeds", IMAGE_TEST: "test images only"}.get(d.test, "none"), "muted")
        body.append([("★ " if row.baseline else "") + row.config_name, *([row.group] if groups else []),
                     row.fact("model") or "—", _count(s["steps"].mean), _count(s["images_seen"].mean),
                     _count(s["epochs"].mean, 1), fmt_stat(s["val_miou"]), Cell(fmt_stat(s["test_miou"]), "strong"),
                     _interval_pct(row) or "—", fmt_stat(s["pixel_accuracy"]), fmt_stat(s["mean_dice"]),
                     delta, ci, p, noise, Cell(row.status, "" if row.status.endswith("finished") else "neg")])
    return Table(head, body)


def per_class_table(rows: list[ConfigRow], class_names: list[str]) -> Table:
    done = [r for r in rows if r.finished]

    def iou(run, i: int) -> float | None:
        values = (run.test or {}).get("per_class_iou") or []
        return values[i] if i < len(values) else None

    body = [[name, *(fmt_stat(Stat([v for r in row.finished if (v := iou(r, i)) is not None])) for row in done)]
            for i, name in enumerate(class_names)]
    return Table(["class (test IoU %)", *(r.config_name for r in done)], body)


def examples(best, data_root: str | None, path: Path) -> list:
    """The qualitative grid, or a note that says why there is none."""
    if not best.run_dir.best.is_file() and not best.run_dir.last.is_file():
        return [Note(f"No examples: {best.name} has no checkpoint (checkpoints/best.ckpt).")]
    try:
        ex, names, colors = figures.predict_examples(best, data_root)
    except SeglabError as e:
        return [Note(f"No examples: {e}.")]
    except Exception as e:  # noqa: BLE001 - a broken optional figure must not cost the whole report
        return [Note(f"No examples: inference failed ({type(e).__name__}: {first_line(e, 200)}).")]
    out = figures.qualitative_grid(ex, names, colors, f"{best.name} on fixed test images", path)
    return [_figure(out, "qualitative examples", "the test split is empty"),
            (f"The same {len(ex)} test images every build (evenly spaced through the split), native resolution. "
             f"Error map: red = wrong, grey = void (not scored).")]


def runs_table(res: StudyResults) -> Table:
    def percent(v: float | None) -> str:
        return "—" if v is None else f"{100 * v:.1f}"

    def steps(r) -> str:
        done, planned = r.info.get("steps"), r.info.get("steps_planned")
        return "—" if done is None else f"{done:,}" + (f" of {planned:,}" if planned and planned != done else "")

    def test(r) -> str:
        iv = r.test_interval
        return percent(r.value("test_miou")) + (f" [{100 * iv.low:.1f}, {100 * iv.high:.1f}]" if iv else "")

    body = [[r.name, str(r.seed), Cell(r.status, "" if r.finished else "neg"), r.info.get("weights") or "—",
             steps(r), _count(r.info.get("images_seen")), _count(r.info.get("epochs"), 2),
             fmt_time(r.info.get("train_seconds")), fmt_time(r.info.get("cpu_seconds")),
             _count(r.info.get("img_per_s"), 1), percent(r.value("val_miou")), test(r), Cell(r.error or "", "neg")]
            for r in res.runs]
    return Table(["run", "seed", "status", "weights", "steps", "images", "epochs", "wall time", "CPU time",
                  "img/s", "val mIoU", "test mIoU [95% CI]", "error"], body)


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and k in ("data", "model", "train"):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = list(v) if isinstance(v, tuple) else v
    return out


def config_table(rows: list[ConfigRow]) -> Table:
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
    return Table(["configuration", "settings different from the defaults"], body)


def environment_table(res: StudyResults) -> Table:
    envs = [(r.name, r.info.get("environment") or {}) for r in res.finished]
    keys = list(dict.fromkeys(k for _, e in envs for k in e))
    body = []
    for k in keys:
        values = list(dict.fromkeys("none" if e.get(k) is None else str(e[k]) for _, e in envs))
        body.append([k, values[0] if len(values) == 1 else Cell("; ".join(values) + " (differs between runs)", "neg")])
    built = datetime.now(timezone.utc).isoformat(timespec="seconds")
    body.append(["report built", f"seglab {seglab.__version__}, {built}"])
    return Table(["", "value (from run.json)"], body)


# ---------------------------------------------------------------------------------------------------
# Renderers


def render_markdown(res: StudyResults, sections: list[Section]) -> str:
    out = [f"# Study report: {res.name}", "", _dates(res), ""]
    out += ["Contents: " + " · ".join(f"[{s.title}](#{s.anchor})" for s in sections), ""]
    for s in sections:
        out += [f"## {s.title}", ""]
        for b in s.blocks:
            out += [_md_block(b, res.path), ""]
    return "\n".join(out)


def _md_block(b, root: Path) -> str:
    if isinstance(b, str):
        return b
    if isinstance(b, Note):
        return f"> {b.text}"
    if isinstance(b, list):
        return "\n".join(f"- {item}" for item in b)
    if isinstance(b, Image):
        return f"![{b.alt}]({b.path.relative_to(root).as_posix()})"

    def cell(c) -> str:
        return (c.text if isinstance(c, Cell) else c).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(b.head) + " |", "|" + "---|" * len(b.head)]
    return "\n".join(lines + ["| " + " | ".join(cell(c) for c in row) + " |" for row in b.rows])


def _dates(res: StudyResults) -> str:
    created = f"created {res.created[:16].replace('T', ' ')}, " if res.created else ""
    return f"{created}report built {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M')} UTC"


def inline(text: str) -> str:
    """The Markdown the report uses inside text (**bold**, `code`) as HTML, everything else escaped."""
    t = html.escape(text)
    t = re.sub(r"`([^`]+)`", r"<code>\1</code>", t)
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", t)


def _html_block(b) -> str:
    if isinstance(b, str):
        return f"<p>{inline(b)}</p>"
    if isinstance(b, Note):
        return f'<p class="{"note" if b.warn else "caption"}">{inline(b.text)}</p>'
    if isinstance(b, list):
        return "<ul>" + "".join(f"<li>{inline(i)}</li>" for i in b) + "</ul>"
    if isinstance(b, Image):
        data = base64.b64encode(b.path.read_bytes()).decode("ascii")
        return f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(b.alt)}"></figure>'

    def cell(c) -> str:
        c = c if isinstance(c, Cell) else Cell(c)
        return f'<td class="{c.css}">{inline(c.text)}</td>' if c.css else f"<td>{inline(c.text)}</td>"

    head = "".join(f"<th>{html.escape(h)}<span class=\"sort\">⇅</span></th>" if h else "<th></th>" for h in b.head)
    rows = "".join("<tr>" + "".join(cell(c) for c in row) + "</tr>" for row in b.rows)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>'


def render_html(res: StudyResults, sections: list[Section]) -> str:
    nav = "".join(f'<a href="#{s.anchor}">{html.escape(s.title)}</a>' for s in sections)
    body = "".join(f'<section id="{s.anchor}"><h2><a href="#{s.anchor}">{html.escape(s.title)}</a></h2>'
                   + "".join(_html_block(b) for b in s.blocks) + "</section>" for s in sections)
    desc = f"<p class=\"lead\">{inline(res.description)}</p>" if res.description else ""
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(res.name)}: seglab study report</title><style>{CSS}</style></head><body>"
            f'<header><div class="wrap"><div class="kicker">seglab study report</div>'
            f"<h1>{html.escape(res.name)}</h1>{desc}<p class=\"dates\">{html.escape(_dates(res))}</p>"
            f"{_cards(res)}</div></header><nav><div class=\"wrap\">{nav}</div></nav>"
            f'<main class="wrap">{body}</main></body></html>\n')


def _cards(res: StudyResults) -> str:
    row = res.best_row()
    cards = [("runs finished", f"{len(res.finished)}/{len(res.runs)}"), ("configurations", str(len(res.rows))),
             ("best configuration", row.config_name), ("its test mIoU", fmt_stat(row.stats["test_miou"]) + "%"),
             ("improvements beyond training noise", improvements(res))]
    return '<div class="cards">' + "".join(
        f'<div class="card"><div class="v">{html.escape(v)}</div><div class="k">{html.escape(k)}</div></div>'
        for k, v in cards) + "</div>"


CSS = """
:root{--ink:#1f2430;--muted:#6b7280;--line:#e5e7eb;--bg:#f7f8fa;--accent:#2563eb;--pos:#15803d;--neg:#b91c1c}
*{box-sizing:border-box}
body{margin:0;font:15px/1.55 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
color:var(--ink);background:var(--bg)}
.wrap{max-width:1200px;margin:0 auto;padding:0 24px}
header{background:linear-gradient(135deg,#1e3a8a,#2563eb);color:#fff;padding:28px 0 24px}
header h1{margin:2px 0 6px;font-size:30px;letter-spacing:-.01em}
.kicker{text-transform:uppercase;font-size:12px;letter-spacing:.12em;opacity:.8}
.lead{margin:0 0 4px;font-size:16px;opacity:.95}.dates{margin:0;font-size:13px;opacity:.8}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin-top:18px}
.card{background:rgba(255,255,255,.12);border:1px solid rgba(255,255,255,.25);border-radius:10px;
padding:10px 16px;min-width:150px}
.card .v{font-size:20px;font-weight:650}.card .k{font-size:12px;opacity:.85}
nav{position:sticky;top:0;background:#fff;border-bottom:1px solid var(--line);z-index:1}
nav .wrap{display:flex;flex-wrap:wrap;gap:4px 18px;padding-top:10px;padding-bottom:10px}
nav a{color:var(--muted);text-decoration:none;font-size:14px}nav a:hover{color:var(--accent)}
section{background:#fff;border:1px solid var(--line);border-radius:12px;padding:8px 24px 18px;margin:22px 0}
h2{font-size:20px;margin:14px 0 10px}h2 a{color:inherit;text-decoration:none}
h2 a:hover::after{content:" #";color:var(--muted)}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:13px;font-variant-numeric:tabular-nums}
th{text-align:left;background:#f1f5f9;color:#334155;font-weight:600;padding:8px 6px;
border-bottom:2px solid #cbd5e1;vertical-align:bottom}
th .sort{color:#94a3b8;font-size:11px;margin-left:4px}
td{padding:7px 6px;border-bottom:1px solid var(--line);vertical-align:top}
tbody tr:nth-child(even){background:#fafbfc}tbody tr:hover{background:#eef4ff}
td.pos{color:var(--pos)}td.neg{color:var(--neg)}td.sig{font-weight:700}td.muted{color:var(--muted)}
td.strong{font-weight:600}td:first-child{white-space:nowrap}
code{background:#f1f5f9;border-radius:4px;padding:1px 5px;font-size:12.5px}
.note{background:#fffbeb;border-left:4px solid #f59e0b;padding:8px 12px;border-radius:4px;color:#78350f}
.caption{color:var(--muted);font-size:13px;margin-top:8px}
figure{margin:10px 0}img{max-width:100%;height:auto;border:1px solid var(--line);border-radius:6px}
ul{padding-left:22px}li{margin:4px 0}
"""
