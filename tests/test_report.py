"""Study comparison and report on a fabricated study folder: no training, only the files a study leaves.

Two groups (cnn, vit) x (baseline + one variant) x two seeds, plus one failed run; the best run (by
validation mIoU) gets a real tiny checkpoint and the data folder is a fake CamVid, so the qualitative grid
runs real inference. report.html must say what report.md says and nothing more (same words, same table
cells, bold where the Markdown is bold), need no network, and open in headless Chromium when it is installed.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import shutil
import subprocess
from collections import Counter
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch
from fakes import make_camvid, make_run, run_cli
from PIL import Image
from scipy import stats

from seglab.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from seglab.data import CAMVID11
from seglab.errors import SeglabError
from seglab.metrics import ConfusionMatrix
from seglab.study.compare import IMAGE_TEST, SEED_TEST, load_results
from seglab.study.conclusions import TEST_NAMES, conclusions
from seglab.study.fairness import work_mismatches
from seglab.study.report import build_report, examples
from seglab.study.report_html import render_html, slug
from seglab.study.report_tables import esc, md_table
from seglab.training.callbacks import METRICS_COLUMNS

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
OFFLINE = "none (imagenet unavailable: no network)"
# configuration -> (group, baseline, model spec, weights, config overrides, test mIoU per seed)
CONFIGS = {
    "cnn": ("cnn", True, "scratch:simplesegnet", "none", {}, [0.50, 0.52]),
    "cnn+recipe": ("cnn", False, "scratch:simplesegnet", "none",
                   {"train": {"optimizer": "adamw", "scheduler": "cosine"}}, [0.58, 0.60]),
    "vit": ("vit", True, "segformer:mit_b0", OFFLINE, {}, [0.40, 0.44]),
    "vit+jitter": ("vit", False, "segformer:mit_b0", OFFLINE, {"data": {"color_jitter": True}}, [0.41, 0.46]),
}
BEST = "cnn+recipe-s1"  # highest validation mIoU (val = test + 0.02 below)
FAILED = ("vit+big-s0", "RuntimeError: CUDA out of memory")


def run_config(name: str, spec: str, overrides: dict, data_root: Path, seed: int) -> dict:
    cfg = RunConfig(name=name, model=ModelConfig(spec=spec, weights="none"),
                    data=DataConfig(root=str(data_root), size=(64, 96)), train=TrainConfig(epochs=5, seed=seed))
    for section, values in overrides.items():
        for k, v in values.items():
            setattr(getattr(cfg, section), k, v)
    return cfg.to_dict()


N_IMAGES = 30


def fake_per_image(miou: float, rng: np.random.Generator) -> np.ndarray:
    """(N_IMAGES, k, k) per-image matrices whose split mIoU is close to ``miou``: each image has its own
    scale (so test images disagree and a bootstrap has spread); the last class is absent, as CamVid allows."""
    k = CAMVID11.num_classes
    diag = 1000.0
    off = diag * (1 - miou) / (2 * (k - 2) * miou)  # uniform confusion among the k - 1 present classes
    scale, noise = rng.lognormal(0, 0.3, N_IMAGES), rng.lognormal(0, 0.4, N_IMAGES)
    noise /= (scale * noise).sum() / scale.sum()  # images disagree, the split total stays on target
    mats = np.zeros((N_IMAGES, k, k), np.int64)
    for i in range(N_IMAGES):
        m = np.full((k - 1, k - 1), off * noise[i]) + np.diag(np.full(k - 1, diag - off * noise[i]))
        mats[i, : k - 1, : k - 1] = np.round(m * scale[i])
    return mats


def fake_metrics(mats: np.ndarray) -> dict:
    """metrics.json as evaluate writes it, computed from the per-image matrices."""
    cm = ConfusionMatrix(CAMVID11.num_classes, list(CAMVID11.names))
    cm.mat = torch.as_tensor(mats.sum(0))
    return {**cm.compute(), "split": "test", "num_images": len(mats)}


def write_epochs(path: Path, final_val: float) -> None:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=METRICS_COLUMNS)
        w.writeheader()
        for e in range(1, 11):
            w.writerow({"step": 5 * e, "epoch": e / 2, "images": 40 * e, "train_loss": 2.0 / e + 1 - final_val,
                        "val_loss": 2.2 / e + 1.2 - final_val, "val_miou": final_val * e / 10,
                        "val_pixel_accuracy": 0.5 + e / 40, "val_mean_dice": final_val * e / 10 + 0.05,
                        "val_mean_class_accuracy": 0.4, "lr": 1e-3, "seconds": 12.5})


def make_study(root: Path, data_root: Path, seeds: list[int], checkpoint: bool = True) -> Path:
    """A study folder as the runner leaves it; returns its path."""
    rng = np.random.default_rng(0)
    entries = []
    for cname, (group, baseline, spec, weights, overrides, mious) in CONFIGS.items():
        for seed in seeds:
            name = f"{cname}-s{seed}" if len(seeds) > 1 else cname
            run_dir = root / "runs" / name
            config = run_config(name, spec, overrides, data_root, seed)
            mats = fake_per_image(mious[seed], rng)
            metrics = fake_metrics(mats)
            info = {"status": "finished", "name": name, "model": spec, "params": 1_234_567 if group == "cnn" else 3_700_000,
                    "weights": weights, "precision": "32", "accelerator": "cpu", "num_classes": 11,
                    "class_names": list(CAMVID11.names), "epochs": 5.0, "steps": 50, "steps_planned": 50,
                    "batch_size": 8, "images_seen": 400, "train_seconds": 62.5 + seed, "cpu_seconds": 120.0,
                    "img_per_s": 6.4, "best_val_miou": metrics["miou"] + 0.02,
                    "environment": {"seglab": "0.1.0", "python": "3.11.2", "torch": torch.__version__,
                                    "platform": "Linux", "cpu": "x86_64", "cpu_threads": 2, "gpu": None,
                                    "commit": "abc1234"}}
            best = checkpoint and name == (BEST if len(seeds) > 1 else "cnn+recipe")  # only the best has weights
            make_run(run_dir, config, checkpoint=best, info=info, metrics=metrics,
                     per_image=(mats, [f"img{i:03d}.png" for i in range(N_IMAGES)]))
            write_epochs(run_dir / "metrics.csv", metrics["miou"] + 0.02)
            entries.append({"name": name, "group": group, "baseline": baseline, "config_name": cname, "seed": seed,
                            "status": "finished", "error": None, "dir": f"runs/{name}"})
    make_run(root / "runs" / FAILED[0], run_config(FAILED[0], "segformer:mit_b2", {}, data_root, 0), checkpoint=False,
             info={"status": "failed", "name": FAILED[0], "error": FAILED[1]})
    entries.append({"name": FAILED[0], "group": "vit", "baseline": False, "config_name": "vit+big", "seed": 0,
                    "status": "failed", "error": FAILED[1], "dir": f"runs/{FAILED[0]}"})
    (root / "study.json").write_text(json.dumps({"name": root.name, "description": "CNN vs transformer, one idea each",
                                                 "created": "2025-01-02T03:04:05+00:00", "runs": entries}))
    return root


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("study")
    return make_study(tmp / "demo", make_camvid(tmp / "camvid"), seeds=[0, 1])


@pytest.fixture(scope="module")
def built(study) -> tuple[Path, Path]:
    return build_report(study)


def test_rows_aggregate_seeds_and_test_paired_by_seed(study):
    res = load_results(study)
    rows = {r.config_name: r for r in res.rows}
    assert list(rows) == [*CONFIGS, "vit+big"]
    deltas = []
    for name, row in rows.items():
        if name == "vit+big":
            assert row.status_counts() == {"failed": 1} and row.stats["test_miou"].n == 0 and row.delta is None
            continue
        mious = [r.test["miou"] for r in sorted(row.finished, key=lambda r: r.seed)]
        assert mious == pytest.approx(CONFIGS[name][-1], abs=0.01)  # the fakes hit their targets
        s = row.stats["test_miou"]
        assert s.n == 2 and s.mean == pytest.approx(np.mean(mious)) and s.std == pytest.approx(np.std(mious, ddof=1))
        assert row.stats["val_miou"].mean == pytest.approx(np.mean(mious) + 0.02)
        assert row.stats["steps"].mean == 50 and row.stats["images_seen"].mean == 400
        if row.baseline:
            assert row.delta is None
            continue
        base_runs = sorted(rows[row.group].finished, key=lambda r: r.seed)
        base = [r.test["miou"] for r in base_runs]
        ref = stats.ttest_rel(mious, base)  # paired by seed: same seed, same data order and initialisation
        d = row.delta
        assert d.test == SEED_TEST and d.training_noise_measured
        assert d.diff == pytest.approx(np.mean(mious) - np.mean(base))
        assert d.p_value == pytest.approx(ref.pvalue)
        assert d.ci[0] < d.diff < d.ci[1]
        assert d.images is not None and d.images.low < d.diff < d.images.high  # test-image noise, also reported
        deltas.append(d)
    ps = sorted(d.p_value for d in deltas)
    assert sorted(d.p_holm for d in deltas) == pytest.approx([min(1, 2 * ps[0]), max(min(1, 2 * ps[0]), ps[1])])
    assert res.best_run().name == BEST and res.best_row().config_name == "cnn+recipe"


def test_single_runs_verdicts_cover_test_images_only(tmp_path):
    study = make_study(tmp_path / "single", make_camvid(tmp_path / "camvid", n_per_split=1), seeds=[0],
                       checkpoint=False)
    res = load_results(study)
    rows = {r.config_name: r for r in res.rows}
    d = rows["cnn+recipe"].delta
    assert d.test == IMAGE_TEST and not d.training_noise_measured and d.seeds.p_value is None
    assert d.images.estimate == pytest.approx(d.diff) and 0 < d.images.low < d.diff < d.images.high
    assert d.significant  # +8 points over 30 images
    text = "\n".join(conclusions(res))
    assert re.search(r"\*\*cnn\+recipe\*\* scored higher than \*\*cnn\*\*: test mIoU \+[78]\.\d points", text)
    assert "covers only which test images were drawn, not training noise" in text and "--repeats 3" in text
    assert "no difference here is a verdict on the idea itself" in text
    assert not re.search(r"\bhelped\b", text)  # no improvement claimed without training noise
    assert "Holm-corrected" in text
    iv = rows["cnn"].finished[0].test_interval
    assert iv.low < rows["cnn"].stats["test_miou"].mean < iv.high
    md, page = build_report(study)
    assert "not measured (one run per configuration)" in md.read_text()
    assert "**+" not in md.read_text() and "<strong>+" not in page.read_text()  # no verdict without training noise
    assert "has no checkpoint" in md.read_text() and "has no checkpoint" in page.read_text()
    assert not (study / "report_files" / "examples.png").exists()


def test_conclusions_name_effects_failures_and_weights(study):
    text = "\n".join(conclusions(load_results(study)))
    assert re.search(r"\*\*cnn\+recipe\*\* (helped|showed no change larger than the noise) against \*\*cnn\*\*: "
                     r"test mIoU \+[78]\.\d points", text)
    assert TEST_NAMES[SEED_TEST].capitalize() in text and "Holm-corrected" in text and "covers training noise" in text
    assert "d_z = " in text and "exact sign-flip test cannot go below p = 0.5" in text  # two seeds
    assert FAILED[0] in text and FAILED[1] in text
    assert re.search(r"Weights: \*\*cnn\*\*, \*\*cnn\+recipe\*\* start from random initialisation \(from "
                     r"scratch\); \*\*vit\*\*, \*\*vit\+jitter\*\* start from random initialisation because "
                     r"ImageNet weights were unavailable \(no network\)", text)


def test_unequal_work_is_flagged(tmp_path):
    study = make_study(tmp_path / "work", make_camvid(tmp_path / "camvid", n_per_split=1), seeds=[0],
                       checkpoint=False)
    info = study / "runs" / "cnn+recipe" / "run.json"
    info.write_text(json.dumps({**json.loads(info.read_text()), "images_seen": 376, "steps": 47}))  # -6%
    res = load_results(study)
    assert [(r.name, b.name, round(off, 3)) for r, b, off in work_mismatches(res)] == [("cnn+recipe", "cnn", -0.06)]
    text = "\n".join(conclusions(res))
    assert "Unequal work: **cnn+recipe** trained on 376 images and **cnn** on 400, -6%" in text
    assert "stopped early, after 94% of its planned training (47 of 50 steps)" in text
    info.write_text(json.dumps({**json.loads(info.read_text()), "images_seen": 384, "steps": 48}))  # -4%: fine
    assert work_mismatches(load_results(study)) == []


def test_report_has_table_rows_and_every_section(study, built):
    md, page = built
    text = md.read_text()
    for name in [*CONFIGS, "vit+big"]:
        assert re.search(rf"^\| (★ )?{re.escape(name)} \|", text, re.MULTILINE), name
    for title in ("Summary", "Comparison", "Conclusions", "Training curves", "Per-class IoU", "Confusion matrix",
                  "Qualitative examples", "Per-run details", "Environment"):
        assert f"## {title}" in text and title in page.read_text()
    for fig in ("curves", "per_class_iou", "confusion", "examples"):
        assert f"(report_files/{fig}.png)" in text and (study / "report_files" / f"{fig}.png").is_file()
    assert re.search(r"\| \*\*\+8\.\d\*\* \|", text) and "failed" in text and FAILED[1] in text and OFFLINE in text
    assert "| steps | images | epochs |" in text and "training seeds" in text and "single-thread" not in text
    assert "`train.optimizer=adamw`" in text  # config diff against the defaults


class Page(HTMLParser):
    """What a reader of report.html sees: its text (image alt text included) and its tables' cells."""

    def __init__(self, page: str):
        super().__init__()
        self.text, self.tables, self.skip, self.in_cell = [], [], False, False
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        self.skip = tag == "style"
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self.tables[-1][-1].append("")
            self.in_cell = True
        self.text += [v for k, v in attrs if k == "alt"]

    def handle_endtag(self, tag):
        self.skip = False
        self.in_cell = self.in_cell and tag not in ("td", "th")

    def handle_data(self, data):
        if not self.skip:
            self.text.append(data)
            if self.in_cell:
                self.tables[-1][-1][-1] += data

    def cells(self) -> list[list[list[str]]]:
        return [[[c.strip() for c in row] for row in table] for table in self.tables]


def md_tables(text: str) -> list[list[list[str]]]:
    """report.md's tables as cell text, markup and escapes removed (the separator rows dropped)."""
    tables, previous = [], ""
    for line in text.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            cells = re.split(r"(?<!\\)\|", line.strip()[1:-1])
            cells = [re.sub(r"\\(.)", r"\1", re.sub(r"(?<!\\)(\*\*|\*|`)", "", c.strip())) for c in cells]
            if not previous.startswith("|"):
                tables.append([])
            tables[-1].append(cells)
        previous = line
    return tables


def words(text: str) -> Counter:
    return Counter(re.findall(r"\w+", re.sub(r"\\(.)", r"\1", text)))


def test_html_says_what_the_markdown_says(built):
    """Same tables cell for cell, and the same words: the page adds none (nor drops any) of its own; it only
    repeats the title (as the window title) and the Summary's bullets (as the header cards)."""
    md, page = built[0].read_text(), Page(built[1].read_text())
    tables = md_tables(md)
    assert len(tables) == 7 and sum(len(t) for t in tables) > 30  # + per-image view: distribution, worst images
    assert page.cells() == tables
    visible = re.sub(r"\]\([^)]*\)", "]", md)  # link targets and image paths are not text
    title = md.splitlines()[0]
    summary = re.search(r"## Summary\n\n(?:.*\n\n)?((?:- .*\n)+)", md).group(1)
    assert summary.count("\n") == 4 and "Runs: " in summary
    assert words(" ".join(page.text)) == words(visible) + words(title) + words(summary)


def test_significant_difference_is_bold_and_signed_in_both(study, built):
    md, page = built[0].read_text(), built[1].read_text()
    rows = {r.config_name: r for r in load_results(study).rows if r.delta is not None}
    verdicts = {name: bool(r.delta.significant) and r.delta.training_noise_measured for name, r in rows.items()}
    assert sorted(verdicts.values()) == [False, True]  # the fixture has one of each
    for name, bold in verdicts.items():
        delta = f"{100 * rows[name].delta.diff:+.1f}"
        row = re.search(rf"^\| {re.escape(name)} \|.*$", md, re.MULTILINE).group()
        assert (f"| **{delta}** |" in row) == bold and (f"| {delta} |" in row) != bold
        tone = "pos" if delta.startswith("+") else "neg"
        cell = f'<td class="{tone}"><strong>{delta}</strong></td>' if bold else f'<td class="{tone}">{delta}</td>'
        assert cell in page, cell
    assert page.count("<td><em>failed</em></td>") >= 1 and "| *failed* |" in md  # a failed run stands out


def test_contents_links_match_heading_anchors_as_on_github(built):
    md, page = built[0].read_text(), built[1].read_text()
    assert slug("Per-class IoU") == "per-class-iou" and slug("Study report: demo") == "study-report-demo"
    links = re.findall(r"\]\(#([^)]+)\)", md)
    assert len(links) == 14 and "per-run-details" in links  # 13 sections + the definitions, linked from Comparison
    for anchor in links:
        assert page.count(f'id="{anchor}"') == 1 and f'href="#{anchor}"' in page, anchor


def test_html_is_self_contained_with_valid_images(built):
    page = built[1].read_text()
    assert "url(" not in page and "<script" not in page and "<link" not in page and "@import" not in page
    assert {ref[:5] for ref in re.findall(r'(?:src|href)="([^"]*)"', page)} <= {"data:"} | {
        ref[:5] for ref in re.findall(r'href="(#[^"]*)"', page)}  # only data URIs and in-page links
    sources = re.findall(r'<img [^>]*src="([^"]+)"', page)
    assert len(sources) == 5  # the four figures + per-image mIoU (older runs: no reliability diagram)
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) as im:
            assert im.format == "PNG" and im.size[0] > 300
            im.verify()


def test_text_from_runs_is_shown_literally(tmp_path):
    """An error message is text: no markup of its own in either file, not even a table's | or HTML tags."""
    error = "x|y <script>alert(1)</script> __init__ *not bold* [no link](http://example.com) & `tick`"
    page = render_html(md_table(["error"], [[esc(error)]]), tmp_path)
    assert Page(page).cells() == [[["error"], [error]]]
    assert "<script" not in page and "<strong" not in page and "<em" not in page and "<a " not in page


def test_templates_ship_with_the_package():
    """report.html needs its page template and CSS: they must be package data, not only in the checkout."""
    templates = resources.files("seglab.study") / "templates"
    assert templates.joinpath("report.html.j2").is_file() and templates.joinpath("report.css").is_file()
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    config = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert "study/templates/*" in config["tool"]["setuptools"]["package-data"]["seglab"]
    declared = {re.split(r"[<>=!~;\[ ]", d)[0].lower() for d in config["project"]["dependencies"]}
    assert {"jinja2", "markdown-it-py"} <= declared  # imported by report_html.py, not only someone's dependency


def test_unreachable_data_skips_examples_with_a_note(study, tmp_path):
    best = load_results(study).best_run()
    blocks = examples(best, str(tmp_path / "nowhere"), tmp_path / "x.png")
    assert len(blocks) == 1 and blocks[0].startswith("> No examples:") and "not found" in blocks[0]
    assert not (tmp_path / "x.png").exists()


def test_no_finished_runs_is_one_line_error(tmp_path):
    with pytest.raises(SeglabError, match="no finished runs to report") as err:
        build_report(tmp_path)
    assert "\n" not in str(err.value)
    run = tmp_path / "runs" / "a"
    run.mkdir(parents=True)
    (run / "last.ckpt").write_bytes(b"keep me")
    (tmp_path / "study.json").write_text(json.dumps({"name": "x", "runs": [
        {"name": "a", "group": "g", "baseline": True, "config_name": "a", "seed": 0, "status": "running",
         "error": None, "dir": "runs/a"}]}))
    with pytest.raises(SeglabError, match="no finished runs to report.*running"):
        build_report(tmp_path)
    assert (run / "last.ckpt").read_bytes() == b"keep me" and not (tmp_path / "report.md").exists()


def test_cli_command(study, built):
    assert "--data" in run_cli(None, "report", "--help").out
    result = run_cli(None, "report", study)
    assert result.code == 0 and "report.html" in result.out + result.err, result.err[-2000:]


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium; CI installs it)")
def test_html_renders_in_headless_chromium(built, tmp_path):
    """One browser launch: screenshot (not blank), DOM (tables and images present), console (no errors)."""
    shot = tmp_path / "report.png"
    run = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                          "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                          f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--dump-dom",
                          "--window-size=1280,2000", "--enable-logging=stderr", "--v=0", built[1].resolve().as_uri()],
                         check=False, capture_output=True, text=True, timeout=60)
    assert shot.is_file(), run.stderr[-2000:]
    console = [line for line in run.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, console  # chromium logs page console messages and uncaught errors as INFO:CONSOLE
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(np.int64)
    colors = np.unique(pixels[..., 0] << 16 | pixels[..., 1] << 8 | pixels[..., 2])
    assert pixels.std() > 20 and len(colors) > 200
    dom = run.stdout
    images = re.findall(r'<img src="data:image/png;base64,[^"]*" alt="([^"]*)"', dom)
    # the fakes have no calibration or checkpoints for the worst images: those sections say so instead
    assert dom.count("<table") >= 5 and images == ["training curves", "per-class IoU", "per-image mIoU",
                                                    "confusion matrix", "qualitative examples"], images
    assert 'id="conclusions"' in dom and "cnn+recipe" in dom
