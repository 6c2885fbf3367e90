"""The study's primary metric and the report's metric sections, on a fabricated study folder.

Two configurations of one group, one run each: ``base`` (the baseline) has the better mIoU, ``edge`` the
better Boundary IoU, on validation and on test. So the study's ``primary_metric`` alone decides which one is
best and which way the comparison goes, and a test can check that the comparison really resamples that
metric's per-image arrays (checked against a direct NumPy computation). The runs carry every key issue 24
adds to metrics.json and per_image_test.npz; a copy stripped of them stands for runs evaluated before.
"""

from __future__ import annotations

import csv
import json
import re
import shutil

import numpy as np
import pytest
import torch
import yaml
from fakes import assert_one_line_error, make_camvid, make_run, run_cli

from seglab.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from seglab.data import CAMVID11
from seglab.errors import SeglabError
from seglab.metrics import ConfusionMatrix, boundary_iou, ece, reliability
from seglab.runs import RunDir
from seglab.study import per_image
from seglab.study.compare import IMAGE_TEST, load_results
from seglab.study.conclusions import conclusions
from seglab.study.report import build_report
from seglab.study.runner import StudyFolder
from seglab.study.spec import load_study
from seglab.training.callbacks import METRICS_COLUMNS

K = CAMVID11.num_classes
N = 12  # test images
BINS = 10
# configuration -> (baseline, matrix quality, boundary quality, temperature)
RUNS = {"base": (True, 0.80, 0.40, 1.3), "edge": (False, 0.70, 0.60, None)}
MISSED, SPURIOUS = "car", "sign"  # on base's worst image: a labelled class never found, a class hallucinated


def image_names() -> list[str]:
    return [f"0001TP_test{i:03d}.png" for i in range(N)]


def fake_arrays(quality: float, edge: float, rng: np.random.Generator) -> dict:
    """Per-image arrays as evaluate writes them: confusion matrices (the last class absent), boundary band
    counts, calibration histograms before and after a temperature, and per-image losses."""
    mats = np.zeros((N, K, K), np.int64)
    for i in range(N):
        q = 0.3 if i == 0 else np.clip(quality + rng.normal(0, 0.08), 0.4, 0.98)  # image 0: the worst
        diag = rng.integers(500, 1500, K - 1)
        m = np.diag(np.round(diag * q)).astype(np.int64)
        for c in range(K - 1):  # the wrong pixels of class c spread over two other classes
            wrong = int(diag[c] - m[c, c])
            m[c, (c + 1) % (K - 1)] += wrong // 2
            m[c, (c + 3) % (K - 1)] += wrong - wrong // 2
        mats[i, : K - 1, : K - 1] = m
    car, sign = CAMVID11.names.index(MISSED), CAMVID11.names.index(SPURIOUS)
    mats[0, car, 0] += mats[0, car, car]  # image 0: every car pixel predicted as sky, and sign never labelled
    mats[0, car, car] = 0
    mats[0, :, sign] = 0
    mats[0, sign, :] = 0
    mats[0, 0, sign] = 400
    union = rng.integers(100, 300, (N, K)).astype(np.int64)
    union[:, K - 1] = 0  # the absent class has no boundary
    inter = np.round(union * np.clip(edge + rng.normal(0, 0.05, (N, K)), 0, 1)).astype(np.int64)
    boundary = np.stack([inter, union], -1)
    centers = (np.arange(BINS) + 0.5) / BINS

    def hist(gap: float) -> np.ndarray:
        count = rng.integers(10, 1000, (N, BINS)).astype(np.float64)
        return np.stack([count, count * centers, count * np.clip(centers - gap, 0, 1)], -1)

    return {"matrices": mats, "boundary": boundary, "calibration": hist(0.08), "calibration_t": hist(0.02),
            "loss": rng.uniform(0.3, 0.9, N), "boundary_width": np.full(N, 2)}


def fake_metrics(arrays: dict, temperature: float | None) -> dict:
    """metrics.json with the keys of issue 24, computed from the arrays."""
    cm = ConfusionMatrix(K, list(CAMVID11.names))
    cm.mat = torch.as_tensor(arrays["matrices"].sum(0))
    per_class = boundary_iou(arrays["boundary"].sum(0))
    hist, hist_t = arrays["calibration"].sum(0), arrays["calibration_t"].sum(0)
    m = {**cm.compute(), "split": "test", "num_images": N}
    values = {"miou": m["miou"], "mean_dice": m["mean_dice"], "pixel_accuracy": m["pixel_accuracy"],
              "boundary_iou": float(np.nanmean(per_class)), "ece": float(ece(hist)),
              "ece_calibrated": float(ece(hist_t)) if temperature else None, "loss": float(arrays["loss"].mean())}
    m.update(boundary_iou=values["boundary_iou"],
             per_class_boundary_iou=[None if np.isnan(v) else float(v) for v in per_class],
             boundary={"fraction": 0.02, "of": "image diagonal", "distance": "chessboard", "width_px": [2, 2]},
             ece=values["ece"], ece_calibrated=values["ece_calibrated"], temperature=temperature,
             calibration={"bins": BINS, "fitted_on": "val" if temperature else None,
                          "why_none": None if temperature else "the model trained on val: no split left to fit on",
                          "nll_before": 0.61 if temperature else None, "nll_after": 0.55 if temperature else None,
                          "reliability": reliability(hist),
                          "reliability_calibrated": reliability(hist_t) if temperature else None},
             loss=values["loss"], loss_name="ce",
             intervals={k: None if v is None else [v - 0.02, v + 0.02] for k, v in values.items()},
             interval={"confidence": 0.95, "resamples": 9999, "method": f"percentile bootstrap over {N} images"})
    return m


def write_epochs(path, val_miou: float, val_boundary: float | None) -> None:
    """metrics.csv: the best val_miou at the fourth of five rows, whose val_boundary_iou is the scored one's."""
    columns = [*METRICS_COLUMNS, *([] if "val_boundary_iou" in METRICS_COLUMNS else ["val_boundary_iou"])]
    if val_boundary is None:
        columns.remove("val_boundary_iou")
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        for e, share in enumerate([0.5, 0.7, 0.9, 1.0, 0.95], start=1):
            w.writerow({"step": 5 * e, "epoch": e, "images": 40 * e, "train_loss": 1 / e, "val_loss": 1.1 / e,
                        "val_miou": val_miou * share, "val_pixel_accuracy": 0.8 * share,
                        "val_mean_dice": (val_miou + 0.1) * share, "val_mean_class_accuracy": 0.5,
                        "val_boundary_iou": None if val_boundary is None else
                        (val_boundary if share == 1.0 else val_boundary * 1.5),  # later rows do not count
                        "lr": 1e-3, "seconds": 10.0})


def make_study(root, data_root, primary: str | None = None, old: bool = False):
    rng = np.random.default_rng(0)
    entries = []
    for name, (baseline, quality, edge, temperature) in RUNS.items():
        arrays = fake_arrays(quality, edge, rng)
        metrics = fake_metrics(arrays, temperature)
        if old:  # evaluated before issue 24: none of its keys, only the matrices per image
            for key in ("boundary_iou", "per_class_boundary_iou", "boundary", "ece", "ece_calibrated",
                        "temperature", "calibration", "loss", "loss_name", "intervals", "interval"):
                metrics.pop(key)
        cfg = RunConfig(name=name, model=ModelConfig(spec="scratch:simplesegnet", weights="none"),
                        data=DataConfig(root=str(data_root), size=(64, 96)), train=TrainConfig(epochs=5)).to_dict()
        info = {"status": "finished", "name": name, "model": "scratch:simplesegnet", "weights": "none",
                "num_classes": K, "class_names": list(CAMVID11.names), "epochs": 5.0, "steps": 50,
                "steps_planned": 50, "batch_size": 8, "images_seen": 400, "train_seconds": 60.0,
                "best_val_miou": metrics["miou"] + 0.01}
        run = make_run(root / "runs" / name, cfg, info=info, metrics=metrics)
        extra = {} if old else {k: arrays[k] for k in ("boundary", "calibration", "calibration_t", "loss")}
        RunDir(run).write_per_image(arrays["matrices"], image_names(), **extra)
        write_epochs(run / "metrics.csv", info["best_val_miou"], None if old else metrics["boundary_iou"] + 0.01)
        entries.append({"name": name, "group": "g", "baseline": baseline, "config_name": name, "seed": 0,
                        "status": "finished", "error": None, "dir": f"runs/{name}"})
    index = {"name": root.name, "description": "mIoU or boundaries", "runs": entries}
    if primary is not None:
        index["primary_metric"] = primary
    (root / "study.json").write_text(json.dumps(index))
    return root


def set_primary(study, primary: str | None) -> None:
    index = json.loads((study / "study.json").read_text())
    index.pop("primary_metric", None)
    if primary is not None:
        index["primary_metric"] = primary
    (study / "study.json").write_text(json.dumps(index))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_camvid(tmp_path_factory.mktemp("data") / "camvid", n_per_split=N)


@pytest.fixture(scope="module")
def study(tmp_path_factory, data):
    return make_study(tmp_path_factory.mktemp("study") / "edges", data, primary="boundary_iou")


@pytest.fixture(scope="module")
def built(study):
    md, page = build_report(study)
    return md.read_text(), page.read_text()


def direct_boundary_iou(counts: np.ndarray) -> float:
    """The paper's figure by hand: per class, summed intersections over summed unions; the mean over classes
    that have a boundary."""
    inter, union = counts[..., 0].sum(0).astype(float), counts[..., 1].sum(0).astype(float)
    return float(np.mean([i / u for i, u in zip(inter, union) if u > 0]))


# -- primary_metric ------------------------------------------------------------------------------------------


def test_primary_metric_decides_the_best_configuration_and_the_comparison(tmp_path, data):
    study = make_study(tmp_path / "s", data)
    res = load_results(study)  # no primary_metric: mIoU
    assert res.primary.name == "miou" and res.best_row().config_name == "base" and res.best_run().name == "base"
    d = {r.config_name: r for r in res.rows}["edge"].delta
    assert d.test == IMAGE_TEST and d.diff < 0 and d.images.estimate == pytest.approx(d.diff)
    text = "\n".join(conclusions(res))
    assert "Best configuration by validation mIoU: **base**" in text and "test mIoU -" in text

    set_primary(study, "boundary_iou")
    res = load_results(study)
    assert res.primary.name == "boundary_iou" and res.best_row().config_name == "edge"
    assert res.best_run().name == "edge" and not res.selection().fell_back
    edge = {r.config_name: r for r in res.rows}["edge"]
    counts = {n: RunDir(study / "runs" / n).read_per_image_arrays()["boundary"] for n in ("edge", "base")}
    expected = direct_boundary_iou(counts["edge"]) - direct_boundary_iou(counts["base"])
    d = edge.delta
    assert d.diff > 0.1 and d.diff == pytest.approx(expected, abs=1e-9)  # on Boundary IoU, not mIoU
    assert d.images.estimate == pytest.approx(expected, abs=1e-9)  # the bootstrap resampled boundary counts
    assert d.images.low < expected < d.images.high and d.p_holm == d.p_value  # one comparison: Holm changes nothing
    assert edge.stats["val_boundary_iou"].mean == pytest.approx(edge.finished[0].test["boundary_iou"] + 0.01)
    text = "\n".join(conclusions(res))
    assert re.search(r"\*\*edge\*\* scored higher than \*\*base\*\*: test Boundary IoU \+\d+\.\d points", text)
    assert "Best configuration by validation Boundary IoU: **edge**" in text and "test mIoU -" not in text
    assert "; test mIoU " in text  # the other metric beside it

    set_primary(study, "dice")
    res = load_results(study)
    d = {r.config_name: r for r in res.rows}["edge"].delta
    dice = {r.config_name: r.finished[0].test["mean_dice"] for r in res.rows}
    assert d.diff == pytest.approx(dice["edge"] - dice["base"]) and d.images.estimate == pytest.approx(d.diff)
    assert "test mean Dice" in "\n".join(conclusions(res))


def test_without_validation_boundary_iou_the_pick_falls_back_to_validation_miou(tmp_path, data):
    study = make_study(tmp_path / "s", data, primary="boundary_iou")
    write_epochs(study / "runs" / "edge" / "metrics.csv", 0.5, None)  # logged before val/boundary_iou existed
    res = load_results(study)
    sel = res.selection()
    assert sel.fell_back and sel.key == "val_miou" and sel.missing == ["edge"]
    assert res.best_row().config_name == "base"  # by validation mIoU, never by test
    assert {r.config_name: r for r in res.rows}["edge"].delta.diff > 0  # the comparison still on Boundary IoU
    text = "\n".join(conclusions(res))
    assert "Best configuration by validation mIoU: **base**" in text
    assert "logged no validation Boundary IoU" in text and "falls back to validation mIoU" in text


def test_study_file_primary_metric_is_validated_and_recorded(tmp_path, capsys):
    spec = {"name": "tiny", "primary_metric": "dice", "defaults": {"model": {"spec": "scratch:simplesegnet"}},
            "runs": [{"name": "a", "baseline": True}]}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(spec))
    study = load_study(str(path))
    assert study.primary_metric == "dice"
    folder = StudyFolder(tmp_path / "out")
    folder.path.mkdir()
    folder.record(study, {})
    assert json.loads(folder.index.read_text())["primary_metric"] == "dice"  # the report reads it there
    del spec["primary_metric"]
    path.write_text(yaml.safe_dump(spec))
    assert load_study(str(path)).primary_metric == "miou"

    spec["primary_metric"] = "f1"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(SeglabError) as err:
        load_study(str(path))
    assert "\n" not in str(err.value)
    r = run_cli(capsys, "study", path, "--data", tmp_path, "--out", tmp_path / "studies", "--no-report")
    assert_one_line_error(r, str(path), "'primary_metric'", "'f1'", "miou, dice, boundary_iou, pixel_accuracy")
    assert not (tmp_path / "studies" / "tiny").exists()  # refused before anything ran


def test_bad_primary_metric_in_study_json_is_one_line_error(tmp_path, data, capsys):
    study = make_study(tmp_path / "s", data, primary="MIoU", old=True)
    assert_one_line_error(run_cli(capsys, "report", study), str(study / "study.json"), "'primary_metric'", "'MIoU'")


# -- the report's sections -----------------------------------------------------------------------------------


def section(md: str, title: str) -> str:
    return re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", md, re.MULTILINE | re.DOTALL).group(1)


def test_comparison_and_summary_name_the_primary_metric(built):
    md, _ = built
    head = next(line for line in section(md, "Comparison").splitlines() if line.startswith("| configuration"))
    cells = [c.strip() for c in head.strip("|").split("|")]
    assert cells[5:8] == ["val Boundary IoU", "test Boundary IoU", "test 95% CI"]  # first, then the others
    assert cells[8:cells.index("test loss")] == ["test mIoU", "mean Dice", "pixel acc."]  # not Boundary IoU twice
    assert "Δ test Boundary IoU" in cells
    assert re.search(r"^\| edge \| .* \| 0\.\d{3} \| \+\d+\.\d \|", md, re.MULTILINE)  # test loss, then Δ
    assert "Best configuration (validation Boundary IoU): **edge**, test Boundary IoU" in section(md, "Summary")
    assert "| test Boundary IoU [95% CI] | test loss |" in md  # every run, with its loss
    assert re.search(r"\| 0\.\d{3} \(ce\) \|", md)


def test_definitions_say_once_what_each_number_is(built):
    md, page = built
    text = section(md, "What the numbers mean")
    assert ("class-mean IoU over a confusion matrix summed over the split; classes absent from both labels and "
            "predictions are left out of the mean") in text
    assert "not micro-averaged" in text
    assert "primary metric is **Boundary IoU** (`primary_metric: boundary_iou`" in text
    for words in ("**mean Dice**", "**pixel accuracy**", "Cheng et al., CVPR 2021", ("d = 2% of the image diagonal "
                  "(2 px on these test images)"), f"{BINS} equal-width bins", "Naeini et al. 2015",
                  "fitted on the validation split (never test)", "**test loss**: the run's own training loss (ce)",
                  "9,999 resamples of 12 images", "not training noise"):
        assert words in text, words
    assert md.count("class-mean IoU over a confusion matrix summed over the split") == 1  # once
    assert "class-mean IoU over a confusion matrix summed over the split" in page


def test_boundary_iou_per_class_table_with_intervals(built, study):
    text = section(built[0], "Boundary IoU per class")
    assert "d = 2% of the image diagonal" in text
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")[1:]]
            for line in text.splitlines() if line.startswith("| ")}
    assert next(iter(rows)) == "class (test Boundary IoU %)" and rows["class (test Boundary IoU %)"] == ["base", "edge"]
    edge = json.loads((study / "runs" / "edge" / "metrics.json").read_text())
    assert rows["sky"][1] == f"{100 * edge['per_class_boundary_iou'][0]:.1f}" and rows["bicyclist"] == ["—", "—"]
    mean = rows["**Boundary IoU (class mean) [95% CI]**"]
    m = re.fullmatch(r"(\d+\.\d) \[(\d+\.\d), (\d+\.\d)\]", mean[1])
    assert m and float(m[2]) < float(m[1]) < float(m[3])
    assert float(m[1]) == pytest.approx(100 * edge["boundary_iou"], abs=0.06)


def test_calibration_table_and_reliability_diagram(built, study):
    text = section(built[0], "Calibration")
    base = json.loads((study / "runs" / "base" / "metrics.json").read_text())
    lo, hi = base["intervals"]["ece"]
    assert f"| base | {100 * base['ece']:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}] | 1.30 (on val) |" in text
    assert "0.610 → 0.550" in text
    assert "| edge |" in text and "*the model trained on val: no split left to fit on*" in text  # no temperature
    assert "(report_files/reliability.png)" in text and "edge has no temperature" in text  # best: edge
    assert (study / "report_files" / "reliability.png").stat().st_size > 10_000


def test_per_image_view_distribution_and_worst_images(built, study):
    text = section(built[0], "Per-image view")
    assert "(report_files/per_image.png)" in text and "(report_files/worst.png)" in text
    assert "The 4 test images where **edge** (the best run) scores lowest" in text
    mats, names = RunDir(study / "runs" / "edge").read_per_image()
    scores = per_image.image_mious(mats)
    worst = np.argsort(scores)[:4]
    table = [line for line in text.splitlines() if re.match(r"^\| [1-4] \|", line)]
    assert [line.split("|")[2].strip() for line in table] == [names[i] for i in worst]
    assert [line.split("|")[3].strip() for line in table] == [f"{100 * scores[i]:.1f}" for i in worst]
    first = next(line for line in table if names[0] in line)  # image 0: car missed, sign hallucinated
    assert f"{MISSED} (missed)" in first and f"{SPURIOUS} (spurious" in first
    for fig in ("per_image", "worst"):
        assert (study / "report_files" / f"{fig}.png").stat().st_size > 10_000


def test_failed_classes_of_one_image():
    names = ["a", "b", "c", "d"]
    mat = np.array([[90, 10, 0, 0],   # a: IoU 90 / 110, fine
                    [0, 5, 95, 0],    # b: IoU 5 / (100 + 15 - 5): low
                    [0, 0, 0, 0],     # c: not labelled, predicted 95 times: spurious
                    [30, 0, 0, 0]])   # d: labelled, never found: missed
    fails = per_image.failures(mat, names)
    assert [(f.name, f.kind) for f in fails] == [("d", "missed"), ("c", "spurious"), ("b", "low")]
    assert fails[2].iou == pytest.approx(5 / 110)
    assert per_image.failure_text(fails[2]) == "b (IoU 5%)"


def test_html_has_every_new_section(built):
    _, page = built
    for title in ("What the numbers mean", "Boundary IoU per class", "Calibration", "Per-image view"):
        assert f">{title}</h2>" in page or f">{title}<" in page, title
    assert page.count('src="data:image/png;base64,') == 7  # + reliability, per-image, worst images


def test_runs_evaluated_before_the_new_metrics_still_build(tmp_path, data):
    study = make_study(tmp_path / "old", data, primary="boundary_iou", old=True)
    md, page = build_report(study)
    text = md.read_text()
    assert "No Boundary IoU: these runs were evaluated before seglab recorded it" in section(text, "Boundary IoU "
                                                                                                   "per class")
    assert "No calibration: these runs were evaluated before seglab measured it" in section(text, "Calibration")
    assert "These runs recorded no Boundary IoU" in section(text, "What the numbers mean")
    assert "(report_files/per_image.png)" in section(text, "Per-image view")  # matrices are enough for it
    assert "**edge** is not compared with **base**: neither records a test Boundary IoU" in text
    assert "falls back to validation mIoU" in text and "Traceback" not in text
    assert not (study / "report_files" / "reliability.png").exists()
    assert "No calibration" in page.read_text()
    shutil.rmtree(study / "report_files")


def test_every_test_figure_appears_with_its_interval(built, study):
    """Per-run details: each finished run's headline figures, each with the interval its evaluation wrote."""
    text = section(built[0], "Per-run details")
    assert "| run | mIoU | mean Dice | pixel acc. | Boundary IoU | ECE |" in text
    base = json.loads((study / "runs" / "base" / "metrics.json").read_text())
    table = text.split("Every finished run's test figures")[1]
    row = next(line for line in table.splitlines() if line.startswith("| base | "))
    for key in ("miou", "mean_dice", "pixel_accuracy", "boundary_iou", "ece"):
        lo, hi = base["intervals"][key]
        assert f"{100 * base[key]:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]" in row, key


def test_a_temperature_that_raised_test_ece_is_said_so(tmp_path, data):
    study = make_study(tmp_path / "s", data)
    path = study / "runs" / "base" / "metrics.json"
    m = json.loads(path.read_text())
    m["ece_calibrated"] = m["ece"] + 0.01
    path.write_text(json.dumps(m))
    text = section(build_report(study)[0].read_text(), "Calibration")
    assert "raised the test ECE of base" in text
