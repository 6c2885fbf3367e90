"""Study comparison and report on a fabricated study folder: no training, only the files a study leaves.

Two groups (cnn, vit) x (baseline + one variant) x two seeds, plus one failed run; the best run (by
validation mIoU) gets a real tiny checkpoint and the data folder is a fake CamVid, so the qualitative grid
runs real inference. The HTML is also opened in headless Chromium when it is installed.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import make_camvid
from PIL import Image
from scipy import stats

from seglab.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from seglab.data import CAMVID11
from seglab.errors import SeglabError
from seglab.study.compare import SINGLE_RUN, compare, conclusions, load_results
from seglab.study.report import build_report, examples
from seglab.training.callbacks import EPOCH_COLUMNS

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
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


def fake_metrics(miou: float, rng: np.random.Generator) -> dict:
    """A metrics.json whose mIoU is exactly ``miou``; the last class is absent (null), as CamVid allows."""
    k = CAMVID11.num_classes
    per_class = [miou + o for o in np.linspace(-0.25, 0.25, k - 1)] + [None]
    cm = rng.integers(0, 400, (k, k)) + np.diag(rng.integers(5000, 20000, k))
    cm[-1] = 0
    return {"miou": miou, "pixel_accuracy": miou + 0.3, "mean_class_accuracy": miou + 0.1, "per_class_iou": per_class,
            "mean_dice": miou + 0.1, "per_class_dice": per_class, "fw_iou": miou + 0.2,
            "confusion_matrix": cm.tolist(), "class_names": list(CAMVID11.names), "split": "test", "num_images": 3}


def write_epochs(path: Path, final_val: float) -> None:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=EPOCH_COLUMNS)
        w.writeheader()
        for e in range(1, 6):
            w.writerow({"epoch": e, "train_loss": 2.0 / e + 1 - final_val, "val_loss": 2.2 / e + 1.2 - final_val, "val_miou": final_val * e / 5,
                        "val_pixel_accuracy": 0.5 + e / 20, "val_mean_dice": final_val * e / 5 + 0.05,
                        "val_mean_class_accuracy": 0.4, "lr": 1e-3, "seconds": 12.5})


def save_checkpoint(run_dir: Path, config: dict) -> None:
    from seglab.training.module import SegModule

    m = SegModule(config, list(CAMVID11.names), [list(c) for c in CAMVID11.colors], pretrained=False)
    (run_dir / "checkpoints").mkdir()
    torch.save({"state_dict": m.state_dict(), "hyper_parameters": dict(m.hparams)}, run_dir / "checkpoints/best.ckpt")


def make_study(root: Path, data_root: Path, seeds: list[int], checkpoint: bool = True) -> Path:
    """A study folder as the runner leaves it; returns its path."""
    rng = np.random.default_rng(0)
    entries = []
    for cname, (group, baseline, spec, weights, overrides, mious) in CONFIGS.items():
        for seed in seeds:
            name = f"{cname}-s{seed}" if len(seeds) > 1 else cname
            run_dir = root / "runs" / name
            run_dir.mkdir(parents=True)
            config = run_config(name, spec, overrides, data_root, seed)
            (run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
            test = mious[seed]
            info = {"status": "finished", "name": name, "model": spec, "params": 1_234_567 if group == "cnn" else 3_700_000,
                    "weights": weights, "precision": "32", "accelerator": "cpu", "num_classes": 11,
                    "class_names": list(CAMVID11.names), "epochs": 5, "steps": 50, "train_seconds": 62.5 + seed,
                    "best_val_miou": test + 0.02,
                    "environment": {"seglab": "0.1.0", "python": "3.11.2", "torch": torch.__version__,
                                    "platform": "Linux", "cpu": "x86_64", "cpu_threads": 2, "gpu": None,
                                    "commit": "abc1234"}}
            (run_dir / "run.json").write_text(json.dumps(info))
            (run_dir / "metrics.json").write_text(json.dumps(fake_metrics(test, rng)))
            write_epochs(run_dir / "metrics.csv", test + 0.02)
            if checkpoint and name == (BEST if len(seeds) > 1 else "cnn+recipe"):
                save_checkpoint(run_dir, config)
            entries.append({"name": name, "group": group, "baseline": baseline, "config_name": cname, "seed": seed,
                            "status": "finished", "error": None, "dir": f"runs/{name}"})
    failed = root / "runs" / FAILED[0]
    failed.mkdir()
    (failed / "config.yaml").write_text(yaml.safe_dump(run_config(FAILED[0], "segformer:mit_b2", {}, data_root, 0)))
    (failed / "run.json").write_text(json.dumps({"status": "failed", "name": FAILED[0], "error": FAILED[1]}))
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


def test_rows_aggregate_seeds_and_test_against_baseline(study):
    res = load_results(study)
    rows = {r.config_name: r for r in res.rows}
    assert list(rows) == [*CONFIGS, "vit+big"]
    for name, row in rows.items():
        if name == "vit+big":
            assert row.status == "failed" and row.stats["test_miou"].n == 0 and row.delta is None
            continue
        mious = CONFIGS[name][-1]
        s = row.stats["test_miou"]
        assert s.n == 2 and s.mean == pytest.approx(np.mean(mious)) and s.std == pytest.approx(np.std(mious, ddof=1))
        assert row.stats["val_miou"].mean == pytest.approx(np.mean(mious) + 0.02)
        if row.baseline:
            assert row.delta is None
            continue
        base = CONFIGS[row.group][-1]
        ref = stats.ttest_ind(mious, base, equal_var=False)
        assert row.delta.diff == pytest.approx(np.mean(mious) - np.mean(base))
        assert row.delta.p_value == pytest.approx(ref.pvalue)
        assert row.delta.ci[0] < row.delta.diff < row.delta.ci[1]
    assert rows["cnn+recipe"].delta.significant and not rows["vit+jitter"].delta.significant
    assert res.best_run().name == BEST and res.best_row().config_name == "cnn+recipe"


def test_single_runs_get_no_noise_estimate():
    d = compare([0.6], [0.5, 0.52], "base")
    assert d.p_value is None and d.test == SINGLE_RUN and d.significant is None
    assert d.diff == pytest.approx(0.09)
    assert compare([0.6, 0.6], [0.5, 0.5], "base").p_value is None  # no spread: t would be infinite


def test_conclusions_name_effects_failures_and_offline_weights(study):
    text = "\n".join(conclusions(load_results(study)))
    assert re.search(r"\*\*cnn\+recipe\*\* helped .*\+8\.0 points", text)
    assert "Welch" in text and "p = " in text
    assert re.search(r"\*\*vit\+jitter\*\* showed no change larger than the noise", text)
    assert FAILED[0] in text and FAILED[1] in text
    assert "imagenet unavailable" in text


def test_conclusions_are_honest_with_one_seed(tmp_path):
    study = make_study(tmp_path / "single", make_camvid(tmp_path / "camvid", n_per_split=1), seeds=[0],
                       checkpoint=False)
    text = "\n".join(conclusions(load_results(study)))
    assert "apparently helped" in text and "no noise estimate" in text and "repeats: 3" in text
    assert " helped against" not in text.replace("apparently helped", "")
    md, page = build_report(study)
    assert "has no checkpoint" in md.read_text() and "has no checkpoint" in page.read_text()
    assert not (study / "report_files" / "examples.png").exists()


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
    assert "+8.0" in text and "failed" in text and FAILED[1] in text and OFFLINE in text
    assert "`train.optimizer=adamw`" in text  # config diff against the defaults


def test_html_is_self_contained_with_valid_images(built):
    page = built[1].read_text()
    assert 'src="http' not in page and 'href="http' not in page and "url(" not in page and "<script" not in page
    sources = re.findall(r'<img [^>]*src="([^"]+)"', page)
    assert len(sources) == 4
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) as im:
            assert im.format == "PNG" and im.size[0] > 300
            im.verify()


def test_unreachable_data_skips_examples_with_a_note(study, tmp_path):
    best = load_results(study).best_run()
    blocks = examples(best, str(tmp_path / "nowhere"), tmp_path / "x.png")
    assert len(blocks) == 1 and "not found" in blocks[0].text and not (tmp_path / "x.png").exists()


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
    import typer
    from typer.testing import CliRunner

    from seglab.study.report_cli import register

    app = typer.Typer()
    register(app)

    @app.command()
    def other():  # a second command, so typer keeps "report" as a subcommand name
        pass

    assert "--data" in CliRunner().invoke(app, ["report", "--help"]).output
    result = CliRunner().invoke(app, ["report", str(study)])
    assert result.exit_code == 0 and "report.html" in result.output


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
    assert dom.count("<table") >= 5 and dom.count('<img src="data:image/png;base64,') == 4
    assert 'id="conclusions"' in dom and "cnn+recipe" in dom
