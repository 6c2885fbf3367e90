"""Calibrated probabilities from ``seglab predict`` and ``Predictor.predict_proba``: softmax(logits / T) with the
temperature ``seglab evaluate`` records in run.json (``calibration.temperature``), carried into exports.

A tiny untrained SimpleSegNet stands in for a trained run, with a hand-written run.json temperature; the
references are computed with torch from the network's own logits, not through the Predictor."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from fakes import assert_one_line_error, make_run, run_cli
from PIL import Image

from seglab.config import DataConfig, EvalConfig, ModelConfig, RunConfig
from seglab.errors import BadValue, SeglabError
from seglab.inference import export_model, load
from seglab.runs import read_trained

T = 2.5
CALIBRATION = {"temperature": T, "fitted_on": "val", "pixels": 1000, "nll_before": 1.2, "nll_after": 0.9,
               "checkpoint": "checkpoints/best.ckpt"}


def make(run: Path, calibration: dict | None = CALIBRATION, eval_size="native", train_splits="train",
         metrics: dict | None = None, fit: bool = True) -> Path:
    config = RunConfig(model=ModelConfig(spec="scratch:simplesegnet", weights="none"),
                       data=DataConfig(size=(64, 96), eval_size=eval_size, train_splits=train_splits),
                       eval=EvalConfig(temperature=fit)).to_dict()
    info = {"status": "done"} if calibration is None else {"status": "done", "calibration": calibration}
    return make_run(run, config, info=info, metrics=metrics)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return make(tmp_path_factory.mktemp("calibrated") / "run")


@pytest.fixture(scope="module")
def uncalibrated(tmp_path_factory) -> Path:
    return make(tmp_path_factory.mktemp("uncalibrated") / "run", calibration=None)


def image(h: int = 64, w: int = 96, seed: int = 0) -> np.ndarray:
    """A smooth random RGB image (blobs, so the model's confidence varies over it)."""
    low = np.random.default_rng(seed).integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(low).resize((w, h), Image.BILINEAR))


def torch_logits(run: Path, rgb: np.ndarray) -> torch.Tensor:
    """(C, H, W) logits of the run's network on an image whose sides are multiples of 32 (no padding)."""
    model = read_trained(run).build()
    with torch.no_grad():
        return model(torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float())[0]


def test_calibrated_is_softmax_of_logits_over_the_runs_temperature(run):
    predictor = load(run, device="cpu", amp=False)
    assert predictor.temperature == T and "run.json" in predictor.calibration.source
    rgb = image()
    logits = torch_logits(run, rgb)
    plain, calibrated = predictor.predict_proba(rgb), predictor.predict_proba(rgb, calibrated=True)
    np.testing.assert_allclose(plain, torch.softmax(logits, 0).numpy(), atol=1e-5)
    np.testing.assert_allclose(calibrated, torch.softmax(logits / T, 0).numpy(), atol=1e-5)
    np.testing.assert_allclose(calibrated.sum(0), 1.0, atol=1e-5)
    # T > 1 softens: the top class keeps its place, with less confidence (where it was not already uniform)
    np.testing.assert_array_equal(calibrated.argmax(0), plain.argmax(0))
    assert calibrated.max(0).mean() < plain.max(0).mean() - 1e-3


def test_resized_prediction_divides_the_upsampled_logits(tmp_path):
    """At the training scale the logits are upsampled, then divided: softmax(log(p) / T) of the plain
    probabilities p is softmax(z / T) of the same logits z, whatever the upsampling did."""
    predictor = load(make(tmp_path / "run", eval_size=None), device="cpu", amp=False)
    assert predictor.input_size == (64, 96)
    rgb = image(45, 70, seed=3)
    plain, calibrated = predictor.predict_proba(rgb), predictor.predict_proba(rgb, calibrated=True)
    assert calibrated.shape == (11, 45, 70)
    expected = torch.softmax(torch.from_numpy(plain).double().log() / T, 0).numpy()
    np.testing.assert_allclose(calibrated, expected, atol=1e-4)


def test_tiled_prediction_blends_calibrated_tile_probabilities(run):
    predictor = load(run, device="cpu", amp=False, tile=64, overlap=32)
    calibrated = predictor.predict_proba(image(100, 150, seed=1), calibrated=True)
    np.testing.assert_allclose(calibrated.sum(0), 1.0, atol=1e-5)
    assert not np.allclose(calibrated, predictor.predict_proba(image(100, 150, seed=1)), atol=1e-3)


def test_predict_writes_calibrated_npy_and_npz(tmp_path, run):
    rgb = image()
    Image.fromarray(rgb).save(tmp_path / "photo.png")
    expected = torch.softmax(torch_logits(run, rgb) / T, 0).numpy()
    for fmt in ("npy", "npz"):
        out = tmp_path / fmt
        r = run_cli(None, "predict", run, tmp_path / "photo.png", "--out", out, "--format", fmt, "--calibrated",
                    "--no-amp")
        assert r.code == 0, r.out + r.err
    npy = np.load(tmp_path / "npy" / "photo.npy")
    assert npy.dtype == np.float32 and npy.shape == (11, 64, 96)
    np.testing.assert_allclose(npy, expected, atol=1e-5)
    with np.load(tmp_path / "npz" / "photo.npz") as f:
        probs, names, temperature = f["probabilities"], list(f["class_names"]), float(f["temperature"])
    assert probs.dtype == np.float16 and probs.shape == (11, 64, 96)
    np.testing.assert_allclose(probs.astype(np.float32), expected, atol=5e-4)  # float16: 11 bits of mantissa
    np.testing.assert_allclose(probs.astype(np.float32).sum(0), 1.0, atol=3e-3)
    assert names == list(read_trained(run).classes.names) and temperature == T


def test_uncalibrated_npz_records_temperature_one(tmp_path, uncalibrated):
    rgb = image()
    Image.fromarray(rgb).save(tmp_path / "photo.png")
    r = run_cli(None, "predict", uncalibrated, tmp_path / "photo.png", "--out", tmp_path / "out", "--format", "npz",
                "--no-amp")
    assert r.code == 0, r.out + r.err
    with np.load(tmp_path / "out" / "photo.npz") as f:
        np.testing.assert_allclose(f["probabilities"].astype(np.float32),
                                   torch.softmax(torch_logits(uncalibrated, rgb), 0).numpy(), atol=5e-4)
        assert float(f["temperature"]) == 1.0


def test_calibrated_without_a_temperature_is_exit_2_before_writing(capsys, tmp_path, uncalibrated):
    Image.fromarray(image()).save(tmp_path / "photo.png")
    out = tmp_path / "out"
    r = run_cli(capsys, "predict", uncalibrated, tmp_path / "photo.png", "--out", out, "--format", "npz",
                "--calibrated")
    assert_one_line_error(r, "no fitted temperature", "run.json", f"seglab evaluate {uncalibrated}")
    assert not out.exists()


@pytest.mark.parametrize("made,fragments", [
    ({"calibration": {**CALIBRATION, "checkpoint": "checkpoints/last.ckpt"}},
     ["fitted for last.ckpt, not best.ckpt", "seglab evaluate"]),
    ({"calibration": {**CALIBRATION, "key": "best.ckpt:1:2"}},
     ["fitted for earlier weights of best.ckpt", "seglab evaluate"]),
    ({"calibration": None, "train_splits": "train+val"}, ["trained on val", "never on test"]),
    ({"calibration": None, "fit": False}, ["eval.temperature off"]),
    ({"calibration": None, "metrics": {"calibration": {"why_none": "/d has no val split to fit a temperature on"}}},
     ["could not fit one (/d has no val split to fit a temperature on)"]),
    ({"calibration": {"temperature": -1.0}}, ["run.json", "temperature -1.0 is not a positive number"]),
    ({"calibration": {"temperature": "hot"}}, ["run.json", "temperature 'hot' is not a positive number"]),
], ids=["other-checkpoint", "changed-weights", "trained-on-val", "fitting-off", "no-val", "negative", "not-a-number"])
def test_unusable_temperatures_are_one_line_errors(capsys, tmp_path, made, fragments):
    run = make(tmp_path / "run", **made)
    Image.fromarray(image()).save(tmp_path / "photo.png")
    r = run_cli(capsys, "predict", run, tmp_path / "photo.png", "--out", tmp_path / "out", "--format", "npy",
                "--calibrated")
    assert_one_line_error(r, *fragments)


def test_calibrated_png_is_refused(capsys, tmp_path, run):
    Image.fromarray(image()).save(tmp_path / "photo.png")
    r = run_cli(capsys, "predict", run, tmp_path / "photo.png", "--out", tmp_path / "out", "--calibrated")
    assert_one_line_error(r, "'--calibrated'", "not the masks png holds", "--format npz")


def test_python_api_refuses_what_it_cannot_do(run, uncalibrated):
    with pytest.raises(SeglabError, match=f"seglab evaluate {uncalibrated}"):
        load(uncalibrated, device="cpu").predict_proba(image(), calibrated=True)
    assert load(uncalibrated, device="cpu").temperature is None
    with pytest.raises(BadValue, match="calibrated=True: a temperature changes probabilities, not masks"):
        load(run, device="cpu").predict_batch([image()], calibrated=True)


def test_exports_carry_the_temperature(tmp_path, run, uncalibrated):
    import seglab

    rgb = image()
    expected = torch.softmax(torch_logits(run, rgb) / T, 0).numpy()
    folder = export_model(run, "pretrained", tmp_path / "pretrained", verify=False).path
    assert json.loads((folder / "seglab.json").read_text())["temperature"] == T
    onnx = export_model(run, "onnx", tmp_path / "model.onnx", dynamic=True, verify=False).path
    for exported in (folder, onnx):
        predictor = seglab.load(exported, device="cpu", amp=False)
        assert predictor.temperature == T
        np.testing.assert_allclose(predictor.predict_proba(rgb, calibrated=True), expected, atol=1e-4)
    bare = export_model(uncalibrated, "pretrained", tmp_path / "bare", verify=False).path
    assert json.loads((bare / "seglab.json").read_text())["temperature"] is None
    with pytest.raises(SeglabError, match="this export carries no temperature"):
        seglab.load(bare, device="cpu").predict_proba(rgb, calibrated=True)


def test_the_temperature_evaluate_fits_is_the_one_predict_uses(tmp_path):
    """A run really trained (and so evaluated, which fits T on val): predict takes run.json's temperature."""
    from fakes import make_camvid, train_run

    run = train_run(make_camvid(tmp_path / "camvid"), tmp_path / "runs")
    fitted = json.loads((run / "run.json").read_text())["calibration"]
    predictor = load(run, device="cpu", amp=False)
    assert predictor.temperature == fitted["temperature"] > 0
    rgb = image()
    z = predictor.forward.logits(torch.from_numpy(rgb.transpose(2, 0, 1).copy())[None])[0]
    np.testing.assert_allclose(predictor.predict_proba(rgb, calibrated=True),
                               torch.softmax(z / fitted["temperature"], 0).numpy(), atol=1e-5)


def test_a_broken_temperature_stops_only_calibrated_requests(tmp_path, run):
    from seglab.inference import Predictor

    broken = load(make(tmp_path / "run", calibration={"temperature": "hot"}), device="cpu", amp=False)
    assert broken.temperature is None and broken.predict_proba(image()).shape == (11, 64, 96)
    with pytest.raises(SeglabError, match="temperature 'hot' is not a positive number"):
        broken.predict_proba(image(), calibrated=True)
    backend = load(run, device="cpu").backend
    with pytest.raises(BadValue, match="temperature=0.0: must be a positive number"):
        Predictor(backend, read_trained(run).classes, temperature=0.0)
    assert Predictor(backend, read_trained(run).classes, temperature=2).temperature == 2.0
