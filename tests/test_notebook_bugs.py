"""The notebooks' metric bugs (study/notebook_bugs.py) against hand-computed examples, the figures they reported
(studies/*.reported.yaml) against their notebook lines, and the report section that sets both beside seglab's
own figures, built from a fabricated study folder."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from fakes import make_camvid, make_run
from PIL import Image
from test_layering import imports

from seglab.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from seglab.data import open_source
from seglab.metrics import ConfusionMatrix
from seglab.study import notebook_bugs as bugs
from seglab.study import notebook_report
from seglab.study.report import build_report
from seglab.study.spec import builtin_studies, load_study

SEEDS = Path(__file__).resolve().parents[1].parent / "shared" / "seeds"


# --- seed 000: colour masks read as grayscale ------------------------------------------------------------


def test_grayscale_read_of_colour_masks_by_hand(tmp_path):
    # car (64, 0, 128), road (128, 64, 128), tunnel (64, 0, 64), sky (128, 128, 128); libpng truncates
    # (9797 R + 19234 G + 3737 B) >> 15: car 1105344 >> 15 = 33 (33.73), road 2963520 >> 15 = 90 (90.43),
    # tunnel 866176 >> 15 = 26 (26.43), sky 128
    mask = np.array([[[64, 0, 128], [128, 64, 128]], [[64, 0, 64], [128, 128, 128]]], np.uint8)
    assert bugs.opencv_grayscale(mask).tolist() == [[33, 90], [26, 128]]
    Image.fromarray(mask).save(tmp_path / "m_L.png")  # exactly the notebook's call
    assert cv2.imread(str(tmp_path / "m_L.png"), cv2.IMREAD_GRAYSCALE).tolist() == [[33, 90], [26, 128]]
    assert np.asarray(Image.fromarray(mask).convert("L"))[0, 0] == 34  # PIL rounds: car would hit no key
    # MAP {11: 0, 24: 1, 33: 2, 26: 3, 28: 4, 29: 5}, the rest -> 0: car becomes class 2, tunnel class 3
    assert bugs.seed000_grayscale_labels(mask).tolist() == [[2, 0], [3, 0]]


def test_of_camvids_colours_only_car_and_tunnel_survive_the_map():
    grey = bugs.opencv_grayscale(np.array([list(bugs.CAMVID32_COLOURS.values())], np.uint8))[0]
    hits = {name: bugs.SEED000_MAP[int(g)] for name, g in zip(bugs.CAMVID32_COLOURS, grey) if int(g) in bugs.SEED000_MAP}
    assert hits == {"Car": 2, "Tunnel": 3}
    segnet = bugs.seed000_grayscale_labels(bugs.segnet_as_colours(np.arange(12, dtype=np.uint8)[None]))[0]
    assert segnet.tolist() == [0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0]  # of SegNet's 11 classes + void: car -> 2


# --- seed 000: Dice per batch, absent classes counted as 1 -----------------------------------------------


def test_per_batch_dice_with_absent_classes_as_one_by_hand():
    t1, p1 = np.array([[[0, 0], [2, 2]]]), np.array([[[0, 0], [0, 2]]])
    t2, p2 = np.array([[[0, 0], [0, 0]]]), np.array([[[0, 0], [0, 1]]])
    # batch 1: class 0 2*2/(3+2) = 0.8, class 2 2*1/(1+2) = 2/3, classes 1, 3, 4, 5 absent -> 1 each
    assert bugs.seed000_batch_dice(p1, t1) == pytest.approx((0.8 + 2 / 3 + 4) / 6, abs=1e-6)
    # batch 2: class 0 2*3/(3+4) = 6/7, class 1 predicted but absent ~ 0, classes 2-5 absent -> 1 each
    assert bugs.seed000_batch_dice(p2, t2) == pytest.approx((6 / 7 + 0 + 4) / 6, abs=1e-6)
    notebook = bugs.seed000_dice([p1, p2], [t1, t2])
    assert notebook == pytest.approx(((0.8 + 2 / 3 + 4) / 6 + (6 / 7 + 4) / 6) / 2, abs=1e-6)  # 0.8603
    # seglab: one matrix over the split; class 0 2*5/(6+6), class 1 0, class 2 2/3; classes 3-5 left out
    cm = ConfusionMatrix(6)
    cm.update(torch.from_numpy(np.concatenate([t1, t2])), torch.from_numpy(np.concatenate([p1, p2])))
    assert cm.compute()["mean_dice"] == pytest.approx((10 / 12 + 0 + 2 / 3) / 3)  # 0.5
    assert notebook - cm.compute()["mean_dice"] > 0.36


def test_a_smaller_last_batch_weighs_as_much_as_a_full_one():
    full = (np.zeros((3, 1, 1), int), np.zeros((3, 1, 1), int))  # 3 pixels right: Dice 1
    last = (np.ones((1, 1, 1), int), np.zeros((1, 1, 1), int))  # 1 pixel wrong
    d = bugs.seed000_dice([full[0], last[0]], [full[1], last[1]], num_classes=2)
    assert d == pytest.approx((1 + 0) / 2, abs=1e-6)  # the one wrong pixel costs half the score


# --- seed 001: 32-class macro IoU, void scored -----------------------------------------------------------


def test_macro_iou_over_32_classes_with_void_scored_by_hand():
    t, p = np.array([[0, 0, 1, 11]]), np.array([[0, 1, 1, 5]])
    cm = bugs.seed001_confusion(p, t)
    # class 0: 1/(2+1-1) = 0.5; class 1: 1/(1+2-1) = 0.5; class 5 predicted, never a label: 0; void (11) is a
    # label never predicted: 0; the 28 classes absent from both are left out (weight 0) -> (0.5+0.5+0+0)/4
    assert bugs.seed001_macro_iou(cm) == pytest.approx(0.25)
    assert bugs.seed001_pixel_accuracy(cm) == pytest.approx(2 / 4)
    keep = t != 11
    no_void = bugs.seed001_confusion(p[keep], t[keep])
    assert bugs.seed001_macro_iou(no_void) == pytest.approx(0.5)
    assert bugs.seed001_pixel_accuracy(no_void) == pytest.approx(2 / 3)


def test_macro_iou_is_torchmetrics_jaccard_index():
    torchmetrics = pytest.importorskip("torchmetrics")
    rng = np.random.default_rng(0)
    iou = torchmetrics.JaccardIndex(task="multiclass", num_classes=32)
    acc = torchmetrics.Accuracy(task="multiclass", num_classes=32)
    total = np.zeros((32, 32), np.int64)
    for _ in range(3):  # batches, as the notebook updated them
        t, p = rng.integers(0, 12, (2, 8, 8)), rng.integers(0, 14, (2, 8, 8))
        iou.update(torch.from_numpy(p), torch.from_numpy(t))
        acc.update(torch.from_numpy(p), torch.from_numpy(t))
        total += bugs.seed001_confusion(p, t)
    assert bugs.seed001_macro_iou(total) == pytest.approx(iou.compute().item(), abs=1e-6)
    assert bugs.seed001_pixel_accuracy(total) == pytest.approx(acc.compute().item(), abs=1e-6)


def test_label_resizes_are_the_notebooks_own():
    labels = np.random.default_rng(1).integers(0, 12, (360, 480)).astype(np.uint8)
    albumentations = pytest.importorskip("albumentations")
    resized = albumentations.Resize(256, 256)(image=np.zeros((360, 480, 3), np.uint8), mask=labels)["mask"]
    assert np.array_equal(bugs.cv2_nearest(labels, (256, 256)), resized)
    transforms = pytest.importorskip("torchvision.transforms")
    resized = np.array(transforms.Resize((128, 128), Image.NEAREST)(Image.fromarray(labels)))
    assert np.array_equal(bugs.pil_nearest(labels, (128, 128)), resized)


# --- the module is used by the report section only -------------------------------------------------------


def test_nothing_but_the_report_section_imports_the_bug_reproductions():
    importers = {m for m, target, _, _ in imports() if target == "seglab.study.notebook_bugs"}
    assert importers == {"seglab.study.notebook_report"}


# --- the notebooks' figures, as data ---------------------------------------------------------------------


@pytest.mark.parametrize("study", ["seed000", "seed001"])
def test_reported_figures_quote_their_notebook_lines(study):
    reported = notebook_report.load_reported(study)
    assert reported is not None and reported.runs
    assert set(reported.runs) <= {r.name for r in load_study(study).runs}  # keyed by the study's run names
    notebook = SEEDS / reported.notebook
    lines = notebook.read_text(encoding="utf-8").splitlines() if notebook.is_file() else None
    for run, entry in reported.runs.items():
        assert reported.size_of(run) and reported.batch_of(run) >= 1
        for fig in entry["figures"]:
            assert fig["metric"] in notebook_report.METRIC_NAMES
            if lines is not None:
                assert lines[fig["line"] - 1].strip() == fig["printed"].strip(), (run, fig)
                assert f"{fig['value']:.4f}".rstrip("0").rstrip(".") in fig["printed"]


def test_reported_files_are_not_studies_and_ship_with_the_package():
    assert "seed000" in builtin_studies() and not any(n.endswith(".reported") for n in builtin_studies())
    assert notebook_report.reported_file("seed001") is not None
    assert notebook_report.reported_file("quick") is None


# --- the report section, from a fabricated study ---------------------------------------------------------


def make_seed_study(root: Path, data: Path, study: str = "seed000", run: str = "simplesegnet",
                    remap: str | None = "camvid6") -> Path:
    """A finished seed study with one run (an untrained SimpleSegNet) and fake test metrics."""
    classes = open_source(data, remap=remap).classes
    cfg = RunConfig(name=run, model=ModelConfig(spec="scratch:simplesegnet", weights="none"),
                    data=DataConfig(root=str(data), size=(64, 64), remap=remap), train=TrainConfig(epochs=1))
    metrics = {"miou": 0.2, "mean_dice": 0.3, "pixel_accuracy": 0.5, "split": "test", "class_names": list(classes.names),
               "per_class_iou": [0.2] * classes.num_classes}
    info = {"status": "finished", "name": run, "model": "scratch:simplesegnet", "epochs": 1.0, "steps": 2,
            "best_val_miou": 0.21, "class_names": list(classes.names)}
    make_run(root / "runs" / run, cfg.to_dict(), names=classes.names, colors=classes.colors, info=info,
             metrics=metrics)
    (root / "study.json").write_text(json.dumps({"name": study, "description": "", "runs": [
        {"name": run, "group": run, "baseline": True, "config_name": run, "seed": 0,
         "status": "finished", "error": None, "dir": f"runs/{run}"}]}))
    return root


def test_report_section_sets_the_notebook_beside_seglab(tmp_path, monkeypatch):
    data = make_camvid(tmp_path / "camvid", n_per_split=5, size=(48, 64))
    study = make_seed_study(tmp_path / "seed000", data)
    md, page = build_report(study)
    text = md.read_text()
    assert f"## {notebook_report.TITLE}" in text
    row = next(line for line in text.splitlines() if line.startswith("| simplesegnet | Dice |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2] == "0.8302 (line 549)" and cells[4] == "0.3000"  # reported; correct from metrics.json
    assert 0 <= float(cells[3]) <= 1  # re-measured with the notebook's metric
    assert "Reading CamVid's colour masks as grayscale" in text and "counted as a perfect 1" in text
    assert "test loss | 0.1442 (line 549) | — | — |" in text
    assert "Not re-measured, not finished in this study: unet-r18" in text
    assert notebook_report.TITLE in page.read_text()
    cached = json.loads((study / "report_files" / notebook_report.CACHE).read_text())
    steps = cached["simplesegnet"]["values"]["dice"]
    assert steps["notebook"] == pytest.approx(float(cells[3]), abs=1e-4) and steps["correct"] == 0.3

    def fail(*a, **k):
        raise AssertionError("measured again although the checkpoint did not change")

    monkeypatch.setattr(notebook_report, "measure_run", fail)
    assert cells[3] in build_report(study)[0].read_text()  # the cache answers


def test_the_steps_add_up_to_the_whole_difference():
    reported = notebook_report.load_reported("seed001")
    measured = {"unet-r34": {"miou": {"notebook": 0.33, "void": 0.36, "classes": 0.36, "correct": 0.40},
                             "pixel_accuracy": {"notebook": 0.78, "void": 0.84, "classes": 0.84, "correct": 0.85}},
                "unet-mitb0": {"miou": {"notebook": 0.30, "void": 0.34, "classes": 0.34, "correct": 0.41},
                               "pixel_accuracy": {"notebook": 0.77, "void": 0.82, "classes": 0.82, "correct": 0.84}}}
    lines = notebook_report.sentences(reported, measured)
    assert len(lines) == 3  # void, 32 classes, resolution
    assert lines[0].startswith("Scoring void as a class")
    assert "lowered mIoU by 3.5 points on average over the 2 runs (single runs: -4.0 to -3.0)" in lines[0]
    assert "lowered pixel accuracy by 5.5 points" in lines[0]
    assert "left mIoU within 0.05 points in every run" in lines[1]
    assert "lowered mIoU by 5.5 points on average over the 2 runs" in lines[2]


def test_a_run_that_cannot_be_measured_becomes_a_note(tmp_path):
    data = make_camvid(tmp_path / "camvid", n_per_split=2, size=(32, 32))
    study = make_seed_study(tmp_path / "seed000", data)
    (study / "runs" / "simplesegnet" / "checkpoints" / "best.ckpt").unlink()
    text = build_report(study)[0].read_text()
    assert "> Not re-measured, simplesegnet: simplesegnet has no checkpoint." in text


def test_seed001_steps_without_void_match_seglabs_score_at_the_notebooks_size(tmp_path):
    data = make_camvid(tmp_path / "camvid", n_per_split=3, size=(48, 64))
    study = make_seed_study(tmp_path / "seed001", data, "seed001", "scratch-unet", remap=None)
    text = build_report(study)[0].read_text()
    assert "| scratch-unet | mIoU | 0.2291 (line 1507) |" in text
    assert "| scratch-unet | pixel accuracy | 0.6649 (line 1507) |" in text
    assert "Scoring void as a class" in text
    steps = json.loads((study / "report_files" / notebook_report.CACHE).read_text())["scratch-unet"]["values"]
    for fig in ("miou", "pixel_accuracy"):  # an 11-class model predicts no class 11-31: once void is dropped,
        s = steps[fig]                      # torchmetrics' 32-class score is seglab's 11-class score
        assert s["void"] == pytest.approx(s["classes"], abs=1e-9)
        assert s["correct"] == {"miou": 0.2, "pixel_accuracy": 0.5}[fig]
