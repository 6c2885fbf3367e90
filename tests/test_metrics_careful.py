"""Issue 24's metrics, each checked against an independent implementation: Boundary IoU against the paper's
definition computed pixel by pixel (and the authors' reference erosion), ECE against plain NumPy and
torchmetrics, the temperature against the one it was drawn with, the per-image loss against torch's own
criterion, and the headline figures' arrays against the confusion matrix."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from torchmetrics.functional.classification import multiclass_calibration_error

from seglab.constants import IGNORE_INDEX
from seglab.metrics import (
    ConfusionMatrix,
    boundary_counts,
    boundary_iou,
    boundary_width,
    ece,
    fit_temperature,
)
from seglab.metrics.calibration import calibration_histogram, reliability
from seglab.metrics.summary import bootstrap_intervals, split_value, summable
from seglab.scoring import Extras, measure_batch
from seglab.study import stats

VOID = IGNORE_INDEX


# --- Boundary IoU ----------------------------------------------------------------------------------------


def paper_band(labels: np.ndarray, c: int, d: int, void_is_inside: bool) -> np.ndarray:
    """The paper's G_d ∩ G, pixel by pixel: a pixel of class ``c`` whose chessboard d-neighbourhood holds a
    pixel outside the image or of another class (void counts as another class unless ``void_is_inside``)."""
    h, w = labels.shape
    out = np.zeros((h, w), bool)
    for y in range(h):
        for x in range(w):
            if labels[y, x] != c:
                continue
            for dy in range(-d, d + 1):
                for dx in range(-d, d + 1):
                    yy, xx = y + dy, x + dx
                    outside = not (0 <= yy < h and 0 <= xx < w)
                    if outside or (labels[yy, xx] != c and not (void_is_inside and labels[yy, xx] == VOID)):
                        out[y, x] = True
    return out


def paper_counts(pred: np.ndarray, target: np.ndarray, num_classes: int, d: int) -> np.ndarray:
    labelled = target != VOID
    out = np.zeros((num_classes, 2), np.int64)
    for c in range(num_classes):
        g = paper_band(target, c, d, void_is_inside=True) & labelled
        p = paper_band(pred, c, d, void_is_inside=False) & labelled
        out[c] = [(g & p).sum(), (g | p).sum()]
    return out


def blocky(rng, shape, classes, void: bool) -> np.ndarray:
    """Labels made of rectangles (real masks have regions, not salt and pepper)."""
    out = np.full(shape, rng.integers(classes), np.int64)
    for _ in range(6):
        y, x = rng.integers(0, shape[0]), rng.integers(0, shape[1])
        out[y:y + rng.integers(2, 8), x:x + rng.integers(2, 9)] = rng.integers(classes)
    if void:
        y, x = rng.integers(0, shape[0]), rng.integers(0, shape[1])
        out[y:y + 3, x:x + 4] = VOID
    return out


@pytest.mark.parametrize("d", [1, 2, 3])
def test_boundary_counts_match_the_papers_definition_pixel_by_pixel(d):
    rng = np.random.default_rng(d)
    for _ in range(4):
        target = blocky(rng, (14, 17), 4, void=True)
        pred = blocky(rng, (14, 17), 4, void=False)
        pred[target == 2] = 2  # some agreement, so intersections are not all empty
        got = boundary_counts(pred[None], target[None], 4, width=d)[0]
        np.testing.assert_array_equal(got, paper_counts(pred, target, 4, d))


def test_boundary_band_is_the_reference_codes_erosion_without_void():
    """boundary_iou_api's mask_to_boundary: pad with 0, erode with a 3x3 square d times, subtract."""
    rng = np.random.default_rng(0)
    target = blocky(rng, (30, 41), 3, void=False)
    pred = blocky(rng, (30, 41), 3, void=False)
    d = boundary_width(30, 41, 0.05)
    assert d == round(0.05 * np.hypot(30, 41)) == 3

    def reference(mask):
        padded = cv2.copyMakeBorder(mask.astype(np.uint8), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
        eroded = cv2.erode(padded, np.ones((3, 3), np.uint8), iterations=d)[1:-1, 1:-1]
        return (mask.astype(np.uint8) - eroded).astype(bool)

    got = boundary_counts(pred[None], target[None], 3, fraction=0.05)[0]
    for c in range(3):
        g, p = reference(target == c), reference(pred == c)
        assert got[c].tolist() == [(g & p).sum(), (g | p).sum()]


def test_boundary_iou_by_hand():
    """A 6x6 square of class 1 in an 8x8 image of class 0, d = 1. Its band is the square's outer ring: 20
    pixels. Predicted shifted right by one column: the predicted ring shares 9 pixels with the true ring
    (columns 3 and 6 of rows 2 and 7... counted below), so class 1 scores 9 / (20 + 20 - 9)."""
    target = np.zeros((8, 8), np.int64)
    target[1:7, 1:7] = 1
    pred = np.zeros((8, 8), np.int64)
    pred[1:7, 2:8] = 1
    counts = boundary_counts(pred[None], target[None], 2, width=1)[0]
    ring_t = np.zeros((8, 8), bool)
    ring_t[1:7, 1:7] = True
    ring_t[2:6, 2:6] = False
    ring_p = np.roll(ring_t, 1, axis=1)
    shared = int((ring_t & ring_p).sum())
    assert ring_t.sum() == 20 and shared == 10  # top and bottom rows overlap in 5 pixels each
    assert counts[1].tolist() == [shared, 40 - shared]
    assert boundary_iou(counts)[1] == pytest.approx(10 / 30)
    perfect = boundary_counts(target[None], target[None], 2, width=1)[0]
    assert (boundary_iou(perfect) == 1).all()


def test_an_edge_against_void_is_no_contour_and_void_pixels_do_not_count():
    """Class 1 fills the image but for a void stripe; predicted class 1 everywhere. The label's only contours
    are the image border (as in the reference), so the prediction's band is the label's: IoU 1, although
    treating void as background would have put a false contour along the stripe."""
    target = np.ones((12, 12), np.int64)
    target[:, 5:7] = VOID
    pred = np.ones((12, 12), np.int64)
    counts = boundary_counts(pred[None], target[None], 2, width=2)[0]
    assert counts[1, 0] == counts[1, 1] > 0
    assert np.isnan(boundary_iou(counts)[0])  # class 0 appears nowhere: undefined, not 0 or 1


# --- calibration ---------------------------------------------------------------------------------------


def numpy_ece(conf: np.ndarray, correct: np.ndarray, bins: int) -> float:
    """Guo et al.'s ECE, written out: right-closed bins ((m-1)/M, m/M], sum of |acc - conf| weighted by size."""
    total = 0.0
    for m in range(bins):
        lo, hi = m / bins, (m + 1) / bins
        inside = (conf > lo) & (conf <= hi) if m else (conf >= lo) & (conf <= hi)
        if inside.any():
            total += inside.mean() * abs(correct[inside].mean() - conf[inside].mean())
    return total


def test_ece_matches_numpy_and_torchmetrics_with_void_left_out():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 20, 24, generator=g) * 2
    probs = logits.softmax(1)
    target = torch.randint(0, 5, (3, 20, 24), generator=g)
    target[:, :4] = VOID
    hist = calibration_histogram(probs, target, 15)
    assert hist[..., 0].sum() == (target != VOID).sum()
    conf, pred = probs.max(1)
    keep = target != VOID
    ref = numpy_ece(conf[keep].numpy().astype(np.float64), (pred == target)[keep].numpy(), 15)
    assert ece(hist.sum(0)) == pytest.approx(ref, abs=1e-9)
    flat_p = probs.permute(0, 2, 3, 1).reshape(-1, 5)
    tm = multiclass_calibration_error(flat_p, target.reshape(-1), num_classes=5, n_bins=15, norm="l1",
                                      ignore_index=VOID)
    assert ece(hist.sum(0)) == pytest.approx(float(tm), abs=1e-5)
    # per-image histograms add up to the split's: the split's ECE is not a mean of per-image ECEs
    assert ece(hist.sum(0)) != pytest.approx(float(np.mean([ece(h) for h in hist])), abs=1e-6)
    diagram = reliability(hist.sum(0))
    assert sum(diagram["count"]) == int(keep.sum()) and len(diagram["edges"]) == 16


def test_a_temperature_is_recovered_from_labels_drawn_with_it():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(40_000, 6, generator=g) * 3
    labels = torch.multinomial((z / 2.5).softmax(1), 1, generator=g).squeeze(1)
    t, before, after = fit_temperature(z, labels)
    assert t == pytest.approx(2.5, rel=0.05)
    grid = {s: float(torch.nn.functional.cross_entropy(z / s, labels)) for s in np.linspace(1.5, 3.5, 41)}
    assert after <= min(grid.values()) + 1e-6 and after < before
    # a temperature changes no prediction, so no IoU: it only moves confidence
    assert torch.equal((z / t).argmax(1), z.argmax(1))


# --- loss and the headline arrays ------------------------------------------------------------------------


@pytest.mark.parametrize("weights", [None, [0.5, 2.0, 1.0, 3.0]])
def test_the_per_image_loss_is_the_criterions_own(weights):
    """The cross-entropy computed from the probabilities at hand equals nn.CrossEntropyLoss on each image,
    class weights and void included, even where logits are far apart enough for a probability to underflow."""
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(3, 4, 10, 12, generator=g) * 3
    logits[0, 1, 0, 0] = 200.0  # softmax of the true class underflows to 0 where the label is not 1
    target = torch.randint(0, 4, (3, 10, 12), generator=g)
    target[0, 0, 0] = 2
    target[1, :3] = VOID
    target[2] = VOID  # an image with no labelled pixel has no loss
    ce = torch.nn.CrossEntropyLoss(weight=None if weights is None else torch.tensor(weights),
                                   ignore_index=VOID)
    got = measure_batch(logits, target, 4, Extras(loss=ce))["loss"]
    for i in range(2):
        assert got[i] == pytest.approx(float(ce(logits[i:i + 1], target[i:i + 1])), rel=1e-5)
    assert np.isnan(got[2])
    dice_like = measure_batch(logits, target, 4, Extras(loss=_Wrapped(ce)))["loss"]  # the general path
    np.testing.assert_allclose(dice_like[:2], got[:2], rtol=1e-5)


class _Wrapped(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, logits, target):
        return self.inner(logits, target)


def test_headline_arrays_agree_with_the_confusion_matrix_and_the_study_bootstrap():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(12, 4, 16, 20, generator=g)
    target = torch.randint(0, 4, (12, 16, 20), generator=g)
    target[:, :2] = VOID
    arrays = measure_batch(logits, target, 4, Extras(temperature=1.7, loss=torch.nn.CrossEntropyLoss(
        ignore_index=VOID)))
    cm = ConfusionMatrix(4)
    cm.mat = torch.from_numpy(arrays["matrices"].sum(0))
    m = cm.compute()
    for name in ("miou", "mean_dice", "pixel_accuracy"):
        assert float(split_value(summable(arrays, name), name)) == pytest.approx(m[name])
    intervals = bootstrap_intervals(arrays, n_resamples=999)
    assert set(intervals) == {"miou", "mean_dice", "pixel_accuracy", "boundary_iou", "ece", "ece_calibrated",
                              "loss"}
    for name, (low, high) in intervals.items():
        value = float(split_value(summable(arrays, name), name))
        assert low <= value <= high, name
    study = stats.bootstrap_miou(arrays["matrices"], n_resamples=999)
    assert (study.low, study.high) == pytest.approx(intervals["miou"])
    # a temperature changes confidence, never the prediction
    assert arrays["calibration_t"][..., 2].sum() == arrays["calibration"][..., 2].sum()


# --- evaluate end to end ---------------------------------------------------------------------------------


def test_evaluate_writes_and_prints_intervals_and_fits_the_temperature_on_val_only(tiny_camvid, tmp_path):
    from typer.testing import CliRunner

    from seglab.cli import app

    runner = CliRunner()
    out = tmp_path / "runs"
    res = runner.invoke(app, ["train", "--data", str(tiny_camvid), "--model", "scratch:simplesegnet", "--steps", "2",
                              "--size", "64x96", "--out", str(out), "--name", "r"])
    assert res.exit_code == 0, res.output
    assert "mIoU" in res.output and "[" in res.output and "95% intervals" in res.output
    m = json.loads((out / "r" / "metrics.json").read_text())
    for key in ("miou", "mean_dice", "pixel_accuracy", "boundary_iou", "ece", "loss"):
        low, high = m["intervals"][key]
        assert low <= m[key] <= high, key
    assert m["calibration"]["fitted_on"] == "val" and m["temperature"] > 0
    assert m["boundary"]["width_px"] == [boundary_width(64, 96)] * 2
    info = json.loads((out / "r" / "run.json").read_text())["calibration"]
    assert info["temperature"] == m["temperature"] and info["fitted_on"] == "val"
    arrays = np.load(out / "r" / "per_image_test.npz")
    assert {"matrices", "boundary", "calibration", "calibration_t", "loss", "images"} <= set(arrays.files)

    # the temperature is val's: other test labels change the test figures, never the temperature
    for label in (tiny_camvid / "testannot").iterdir():
        cv2.imwrite(str(label), np.zeros((64, 96), np.uint8))
    res = runner.invoke(app, ["evaluate", str(out / "r")])
    assert res.exit_code == 0, res.output
    (other,) = (out / "r").glob("metrics_test@*.json")  # other labels are other data: their own file
    again = json.loads(other.read_text())
    assert again["temperature"] == m["temperature"] and again["miou"] != m["miou"]
    assert json.loads((out / "r" / "metrics.json").read_text()) == m  # the run's own results untouched


def test_no_temperature_when_the_model_trained_on_val(tiny_camvid, tmp_path):
    from typer.testing import CliRunner

    from seglab.cli import app

    out = tmp_path / "runs"
    res = CliRunner().invoke(app, ["train", "--data", str(tiny_camvid), "--model", "scratch:simplesegnet", "--steps", "2",
                                   "--size", "64x96", "--out", str(out), "--name", "r",
                                   "--set", "data.train_splits=train+val"])
    assert res.exit_code == 0, res.output
    m = json.loads((out / "r" / "metrics.json").read_text())
    assert m["temperature"] is None and m["ece_calibrated"] is None and m["ece"] is not None
    assert "trained on val" in m["calibration"]["why_none"]
    assert "no temperature" in res.output


def test_calibration_and_loss_on_every_second_row_and_column_are_those_of_that_grid():
    """eval.calibration_stride=2: ECE and the loss of the grid of every 2nd pixel, exactly; confusion matrices
    and Boundary IoU still count every pixel."""
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(2, 4, 16, 20, generator=g)
    target = torch.randint(0, 4, (2, 16, 20), generator=g)
    target[:, :3] = VOID
    ce = torch.nn.CrossEntropyLoss(ignore_index=VOID)
    full = measure_batch(logits, target, 4, Extras(loss=ce))
    grid = measure_batch(logits, target, 4, Extras(loss=ce, stride=2))
    ref = measure_batch(logits[:, :, ::2, ::2], target[:, ::2, ::2], 4, Extras(loss=ce))
    np.testing.assert_allclose(grid["calibration"], ref["calibration"])
    np.testing.assert_allclose(grid["loss"], ref["loss"], rtol=1e-6)
    np.testing.assert_array_equal(grid["matrices"], full["matrices"])
    np.testing.assert_array_equal(grid["boundary"], full["boundary"])
    assert grid["calibration"][..., 0].sum() == (target[:, ::2, ::2] != VOID).sum()


@pytest.mark.parametrize("setting", ["eval.boundary_fraction=0", "eval.calibration_bins=0",
                                     "eval.calibration_stride=0"])
def test_bad_eval_settings_are_one_line_errors(tiny_camvid, tmp_path, setting):
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "seglab.cli", "train", "--data", str(tiny_camvid), "--steps", "1",
                          "--out", str(tmp_path / "runs"), "--set", setting], capture_output=True, text=True, check=False)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert setting.split("=")[0] in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_boundary_counts_with_more_classes_than_a_byte_holds():
    """ADE20K-sized label sets and beyond: 300 classes still get the reference code's bands."""
    rng = np.random.default_rng(5)
    target = blocky(rng, (24, 30), 300, void=False)
    pred = blocky(rng, (24, 30), 300, void=False)
    got = boundary_counts(pred[None], target[None], 300, width=2)[0]

    def reference(mask):
        padded = cv2.copyMakeBorder(mask.astype(np.uint8), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
        eroded = cv2.erode(padded, np.ones((3, 3), np.uint8), iterations=2)[1:-1, 1:-1]
        return (mask.astype(np.uint8) - eroded).astype(bool)

    for c in set(target.ravel()) | set(pred.ravel()):
        g, p = reference(target == c), reference(pred == c)
        assert got[c].tolist() == [(g & p).sum(), (g | p).sum()]
    assert got[:, 1].sum() > 0
