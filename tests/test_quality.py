"""The quality preset's parts: presets, training on several splits, test-time augmentation, bench quality."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from fakes import assert_one_line_error, run_cli

from seglab.config import PRESETS_DIR, load_config, preset_path
from seglab.models.tta import TTA_SCALES, tta_logits, tta_scales

TRAIN = ["train", "--model", "scratch:simplesegnet", "--size", "64x96", "--batch", "2", "--seed", "1"]


@pytest.mark.parametrize("path", sorted(PRESETS_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_builtin_preset_is_a_valid_config(path):
    cfg = load_config(preset_path(path.stem))
    # named for itself; sized by a compute budget (seglab's recipes) or a published schedule's steps (benchmarks')
    assert cfg.name == path.stem and (cfg.train.budget or cfg.train.steps)
    assert "test" not in cfg.data.trains_on()


def test_preset_errors_are_one_line(capsys, tiny_camvid, tmp_path):
    assert_one_line_error(run_cli(capsys, "train", "--preset", "nope", "--data", tiny_camvid),
                          "'--preset': nope", "camvid-cpu-60m")
    config = tmp_path / "c.yaml"
    config.write_text("train: {epochs: 1}\n")
    assert_one_line_error(run_cli(capsys, "train", "--preset", "camvid-cpu-60m", "--config", config),
                          "--preset and --config")
    assert_one_line_error(run_cli(capsys, *TRAIN, "--data", tiny_camvid, "--set", "data.train_splits=train+test",
                                  "--out", tmp_path), "data.train_splits", "test")
    assert_one_line_error(run_cli(capsys, *TRAIN, "--data", tiny_camvid, "--set", "data.train_splits=train+",
                                  "--out", tmp_path), "data.train_splits")
    assert_one_line_error(run_cli(capsys, *TRAIN, "--data", tiny_camvid, "--set", "data.train_splits=train+nope",
                                  "--out", tmp_path), "split 'nope' is missing")
    assert_one_line_error(run_cli(capsys, *TRAIN, "--data", tiny_camvid, "--set", "data.tta=mirror",
                                  "--out", tmp_path), "data.tta", "flip+scales")
    assert not any(tmp_path.glob("*/checkpoints"))  # nothing trained


def test_training_on_train_and_val_scores_the_last_weights(capsys, tiny_camvid, tmp_path):
    r = run_cli(capsys, *TRAIN, "--data", tiny_camvid, "--epochs", "2", "--out", tmp_path, "--name", "r",
                "--set", "data.train_splits=train+val", "--set", "data.tta=flip")
    assert r.code == 0, r.err[-3000:]
    run = tmp_path / "r"
    info = json.loads((run / "run.json").read_text())
    assert info["train_images"] == 6  # 3 train + 3 val images
    metrics = json.loads((run / "metrics.json").read_text())
    assert Path(metrics["checkpoint"]).name == "last.ckpt" and metrics["tta"] == "flip"

    # Scoring other evaluation settings is a variant with its own files; the run's own result stays.
    own = (run / "metrics.json").read_bytes()
    r = run_cli(capsys, "evaluate", run, "--tta", "none")
    assert r.code == 0, r.err[-3000:]
    assert (run / "metrics.json").read_bytes() == own
    plain = json.loads((run / "metrics_test~tta-none.json").read_text())
    assert plain["tta"] == "none" and (run / "per_image_test~tta-none.npz").is_file()
    assert_one_line_error(run_cli(capsys, "evaluate", run, "--tta", "sideways"), "'--tta': sideways", "flip+scales")
    from seglab.errors import BadValue
    from seglab.evaluate import evaluate

    with pytest.raises(BadValue, match=r"tta='sideways'.*flip\+scales"):  # the library checks it too, up front
        evaluate(run, tta="sideways")
    assert not list(run.glob("*sideways*")) and (run / "metrics.json").read_bytes() == own

    # Scales of one's own: scored into a file named for them (no colon: Windows could not store it).
    r = run_cli(capsys, "evaluate", run, "--tta", "flip+scales:1,2")
    assert r.code == 0, r.err[-3000:]
    custom = json.loads((run / "metrics_test~tta-flip+scales=1,2.json").read_text())
    assert custom["tta"] == "flip+scales:1,2" and custom["miou"] != plain["miou"]
    assert_one_line_error(run_cli(capsys, "evaluate", run, "--tta", "flip+scales:1,x"), "'--tta'", "numbers")
    assert (run / "metrics.json").read_bytes() == own


@pytest.mark.parametrize("mode, problem", [("flip+scales:", "numbers"), ("flip+scales:1,,2", "numbers"),
                                           ("flip+scales:0,1", "(0, 4]"), ("flip+scales:-1", "(0, 4]"),
                                           ("flip+scales:nan", "(0, 4]"), ("flip+scales:1,5", "(0, 4]"),
                                           ("flip+scales:1,1.0", "twice"), ("scales:1,2", "choose one of")])
def test_bad_custom_tta_scales_say_what_is_wrong(mode, problem):
    with pytest.raises(ValueError, match=re.escape(problem)):
        tta_scales(mode)


def test_custom_tta_scales_are_the_views_averaged():
    assert tta_scales("flip+scales:0.75,1,1.5,2") == (0.75, 1.0, 1.5, 2.0)
    assert tta_scales("flip+scales") == (0.75, 1.0, 1.25)
    model = PixelModel()
    image = torch.randint(0, 256, (1, 3, 64, 96), dtype=torch.uint8)
    torch.testing.assert_close(tta_logits(model, image, "flip+scales:1"), tta_logits(model, image, "flip"))
    seen = []
    tta_logits(lambda x: seen.append(tuple(x.shape[-2:])) or model(x), image, "flip+scales:1,1.5,2")
    assert seen == [(64, 96)] * 2 + [(96, 128)] * 2 + [(128, 192)] * 2  # each scale, mirrored, to /32 sizes


def test_a_dataset_without_a_test_split_fails_before_training(capsys, tiny_camvid, tmp_path):
    import shutil

    for folder in ("test", "testannot"):
        shutil.rmtree(tiny_camvid / folder)
    r = run_cli(capsys, *TRAIN, "--data", tiny_camvid, "--epochs", "1", "--out", tmp_path / "runs", "--name", "r")
    assert_one_line_error(r, "split 'test'")
    assert not (tmp_path / "runs" / "r" / "checkpoints").exists()


class PixelModel(torch.nn.Module):
    """A per-pixel model (1x1 conv): mirroring or rescaling its input mirrors or rescales its output."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 5, 1)

    def forward(self, x):
        return self.conv(x.float() / 255)


@pytest.mark.parametrize("mode", list(TTA_SCALES))
def test_tta_keeps_the_size_and_agrees_with_a_model_it_cannot_change(mode):
    model = PixelModel()
    image = torch.randint(0, 256, (2, 3, 64, 96), dtype=torch.uint8)
    plain = model(image).log_softmax(1)
    out = tta_logits(model, image, mode)
    assert out.shape == plain.shape
    if mode == "none":
        assert torch.equal(out, model(image))
    elif mode == "flip":  # a per-pixel model is flip-equivariant: the averaged probabilities are its own
        torch.testing.assert_close(out, plain, atol=1e-5, rtol=1e-5)
    else:  # rescaled views blur the input: close in probability, and probabilities still sum to one
        assert torch.allclose(out.exp().sum(1), torch.ones(2, 64, 96), atol=1e-4)
    with pytest.raises(ValueError, match="flip"):
        tta_logits(model, image, "sideways")


def test_tta_votes_with_the_mirrored_view():
    """A model that sees only the left half of the image: with flip TTA the right half gets its votes too."""
    def left_eyed(x):
        logits = torch.zeros(x.shape[0], 2, *x.shape[-2:])
        logits[:, 1, :, : x.shape[-1] // 2] = 10.0
        return logits

    image = torch.zeros(1, 3, 32, 64)
    probs = tta_logits(left_eyed, image, "flip").exp()
    expected = (1 / (1 + np.exp(-10.0)) + 0.5) / 2  # each half: one view sure of class 1, one view unsure
    assert torch.allclose(probs[0, 1], torch.full((32, 64), float(expected)), atol=1e-4)


@pytest.mark.slow
def test_bench_quality_writes_the_issue_fields(capsys, tiny_camvid, tmp_path, monkeypatch):
    presets = tmp_path / "presets"
    presets.mkdir()
    (presets / "tiny.yaml").write_text(yaml.safe_dump({
        "name": "tiny", "data": {"size": "64x96", "batch_size": 2, "train_splits": "train+val", "tta": "flip"},
        "model": {"spec": "scratch:simplesegnet"}, "train": {"budget": "2s", "seed": 4}}))
    monkeypatch.setattr("seglab.config.schema.PRESETS_DIR", presets)
    out = tmp_path / "quality.json"
    args = ["bench", "quality", "--data", tiny_camvid, "--preset", "tiny", "--runs", tmp_path / "runs",
            "--frames", "3", "--seed", "4", "--seed", "5", "--out", out]
    r = run_cli(capsys, *args)
    assert r.code == 0, r.err[-3000:]
    q = json.loads(out.read_text())
    assert q["preset"] == "tiny" and q["train_split"] == "train+val" and q["seeds"] == [4, 5] and q["tta"] == "flip"
    assert q["command"].startswith("seglab bench quality") and q["machine"]["cpu"]
    one, seeds = q["one_view_test_miou"], q["per_seed"]
    assert [s["seed"] for s in seeds] == [4, 5]
    assert one["per_seed"] == [s["one_view"]["miou"] for s in seeds]
    assert one["min"] <= one["mean"] <= one["max"] and one["mean"] == pytest.approx(sum(one["per_seed"]) / 2)
    assert q["one_view_target_reached"] is (one["mean"] >= 0.70 and all(s["train_minutes"] <= 60 for s in seeds))
    assert Path(seeds[0]["run"]).name == "tiny" and Path(seeds[1]["run"]).name == "tiny-seed5"  # the preset's seed
    for s in seeds:
        views = s["views"]
        assert list(views) == ["none", "scale:1.25", "scale:1.5", "flip"]
        assert [v["views"] for v in views.values()] == [1, 1, 1, 2]
        for v in views.values():
            low, high = v["miou_ci95"]
            assert 0 <= low <= v["miou"] <= high <= 1 and len(v["per_class_iou"]) == 11 and v["ms_per_frame"] > 0
        assert s["one_view"]["miou"] == views["none"]["miou"] and s["tta"]["miou"] == views["flip"]["miou"]
        gain = s["tta"]["gain_over_one_view"]  # flip against the same weights without, paired by image
        assert gain["ci95_points"][0] <= gain["miou_points"] <= gain["ci95_points"][1]
        assert abs(gain["miou_points"] - 100 * (views["flip"]["miou"] - views["none"]["miou"])) < 0.01
        assert s["curve"] and set(s["minutes_to_val_miou"]) == {"0.60", "0.65", "0.70"}
        minutes = [c["minute"] for c in s["curve"]]
        assert minutes == sorted(minutes) and minutes[-1] <= s["train_minutes"] + 0.05
        assert s["step_cost_cpu_s_1thread"] > 0 and s["train_steps"] >= 1

    # A second call trains nothing again: both seeds are in the record already.
    mtime = (tmp_path / "runs" / "tiny" / "checkpoints" / "last.ckpt").stat().st_mtime
    r = run_cli(capsys, *args)
    assert r.code == 0, r.err[-3000:]
    assert (tmp_path / "runs" / "tiny" / "checkpoints" / "last.ckpt").stat().st_mtime == mtime
    assert json.loads(out.read_text())["one_view_test_miou"] == one

    # A record grows by seeds: a seed it holds is kept as measured (here one whose run folder is gone, marked so a
    # re-scoring would show), a seed it lacks is trained or read from its finished run, and the figures over seeds
    # are recomputed over all of them.
    import shutil

    record = json.loads(out.read_text())
    kept = {**record["per_seed"][0], "run": "measured in another session"}
    out.write_text(json.dumps({**record, "seeds": [4], "per_seed": [kept]}))
    shutil.rmtree(tmp_path / "runs" / "tiny")
    r = run_cli(capsys, *args[:-6], "--seed", "5", "--out", out)
    assert r.code == 0, r.err[-3000:]
    grown = json.loads(out.read_text())
    assert grown["seeds"] == [4, 5] and grown["seeds_kept_from_the_record"] == [4] and grown["per_seed"][0] == kept
    assert grown["per_seed"][1]["one_view"]["miou"] == seeds[1]["one_view"]["miou"]  # read, latency timed anew
    assert grown["one_view_test_miou"]["per_seed"] == one["per_seed"]
    assert [h["seed"] for h in grown["hosts"]] == [4, 5] and grown["hosts"][1]["step_cost_cpu_s_1thread"] > 0
    assert not (tmp_path / "runs" / "tiny").exists()  # seed 4 was not trained again
    assert len(grown["commands"]) == 2 and grown["commands"][-1].endswith(f"--seed 5 --out {out}")

    # What is not this preset's record, or was scored with other views than the preset deploys, is refused and
    # left as it is.
    for text, problem in [("{not json", "not a readable"), (json.dumps({**grown, "preset": "other"}), "not preset"),
                          (json.dumps({**grown, "per_seed": [{"seed": 4}]}), "not a readable"),
                          (json.dumps({**grown, "per_seed": [{**kept, "tta": {**kept["tta"], "mode": "none"}}]}),
                           "the preset now deploys 'flip'")]:
        out.write_text(text)
        assert_one_line_error(run_cli(capsys, *args), f"--out {out}", problem)
        assert out.read_text() == text


def test_time_to_accuracy_reads_the_first_validation_at_each_level(tmp_path):
    from seglab.bench.quality_bench import time_to_accuracy
    from seglab.runs import RunDir

    run = RunDir(tmp_path / "r")
    run.path.mkdir()
    rows = [(100, 0.55, 300.0), (200, 0.62, 310.0), (300, 0.61, 290.0), (400, 0.66, 300.0), (500, 0.69, 300.0)]
    run.epochs_csv.write_text("step,val_miou,seconds\n" + "".join(f"{s},{m},{t}\n" for s, m, t in rows))
    t = time_to_accuracy(run, calibration_s=60.0)
    assert t["minutes_to_val_miou"] == {"0.60": 11.17, "0.65": 21.0, "0.70": None}  # 60 + 300 + 310 s; ...
    assert [c["step"] for c in t["curve"]] == [100, 200, 300, 400, 500]


def test_one_view_at_another_scale_is_one_unmirrored_pass():
    from seglab.bench.tta_bench import candidate_modes, relative_cost
    from seglab.models.tta import tta_logits, tta_scales, view_count
    from seglab.sizes import nearest_valid

    seen = []

    def model(x):
        seen.append(tuple(x.shape[-2:]))
        return torch.randn(x.shape[0], 3, *x.shape[-2:])

    out = tta_logits(model, torch.zeros(1, 3, 64, 96), "scale:1.5")
    assert seen == [(nearest_valid(64 * 1.5), nearest_valid(96 * 1.5))]  # one pass at 1.5x, none mirrored
    assert out.shape == (1, 3, 64, 96) and torch.allclose(out.exp().sum(1), torch.ones(1, 64, 96), atol=1e-5)
    assert view_count("scale:1.5") == 1 and view_count("flip+scales:1,1.25") == 4 and view_count("none") == 1
    assert relative_cost("scale:1.5") == 2.25 and relative_cost("flip") == 2.0
    assert {"scale:1.25", "scale:1.5", "scale:1.75", "scale:2"} <= set(candidate_modes())
    with pytest.raises(ValueError, match="one scale"):
        tta_scales("scale:1,1.5")


def test_rescaled_tta_is_refused_for_a_static_export():
    from seglab.data.classes import ClassSet, default_colors
    from seglab.errors import SeglabError
    from seglab.inference.predictor import Predictor, TorchBackend

    backend = TorchBackend(PixelModel(), "cpu", amp=False)
    backend.fixed_size = (64, 96)  # what a static ONNX export reports
    classes = ClassSet(tuple("abcde"), tuple(default_colors(5)))
    with pytest.raises(SeglabError, match="tta='flip\\+scales'.*64x96"):
        Predictor(backend, classes, tta="flip+scales")
    assert Predictor(backend, classes, tta="flip").tta == "flip"  # mirrored views keep the size


def test_bench_tta_scores_each_candidate_as_evaluate_would(capsys, tiny_camvid, tiny_camvid32, tmp_path):
    """The shared-view scoring of bench tta gives what `seglab evaluate --tta` gives for the same mode."""
    r = run_cli(capsys, *TRAIN, "--data", tiny_camvid, "--epochs", "2", "--out", tmp_path, "--name", "r")
    assert r.code == 0, r.err[-3000:]
    run, out = tmp_path / "r", tmp_path / "tta.json"
    r = run_cli(capsys, "bench", "tta", run, "--split", "val", "--out", out)
    assert r.code == 0, r.err[-3000:]
    report = json.loads(out.read_text())
    rows = {row["tta"]: row for row in report["candidates"]}
    assert {"none", "flip", "flip+scales", "flip+scales:0.5,0.75,1,1.25,1.5,1.75,2"} <= set(rows)
    assert report["split"] == "val" and not report["split_in_training"] and report["images"] == 3
    assert report["best"] == max(rows.values(), key=lambda row: row["miou"])["tta"]
    assert rows["none"]["gain_vs_none_points"] == 0 and rows["flip+scales"]["relative_cost"] == 2 * (
        0.75 ** 2 + 1 + 1.25 ** 2)
    for mode in ("none", "flip", "flip+scales:1,1.25,1.5"):
        r = run_cli(capsys, "evaluate", run, "--split", "val", "--tta", mode)
        assert r.code == 0, r.err[-3000:]
        name = "metrics_val.json" if mode == "none" else f"metrics_val~tta-{mode.replace(':', '=')}.json"
        scored = json.loads((run / name).read_text())
        assert rows[mode]["miou"] == pytest.approx(scored["miou"], abs=1e-6), mode
    # No choice on test data, and nothing written for it.
    assert_one_line_error(run_cli(capsys, "bench", "tta", run, "--split", "test", "--out", tmp_path / "t.json"),
                          "'--split': test", "val")
    assert not (tmp_path / "t.json").exists()
    assert_one_line_error(run_cli(capsys, "bench", "tta", run, "--data", tiny_camvid32, "--out", tmp_path / "t.json"),
                          "differ from the 11 classes")
    assert not (tmp_path / "t.json").exists()
