"""What seglab's best recipe scores, and what it costs: ``seglab bench quality`` writes benchmarks/quality.json.

    seglab bench quality --data ../shared/camvid --preset camvid-cpu-60m --out benchmarks/quality.json

Trains the preset (or resumes it, or reads a finished run of it), then records the test mIoU with a
bootstrap interval over the test images, per-class IoU, the training's wall time, the score without
test-time augmentation, and the end-to-end inference time of one 360x480 frame (pre- and post-processing
included, decoding excluded) through the same Predictor `seglab predict` uses.
"""

from __future__ import annotations

import logging
import statistics
import time
from pathlib import Path

import numpy as np

from seglab.bench.report import command_line, finish, machine_info, print_table
from seglab.config import load_config, preset_path
from seglab.errors import SeglabError
from seglab.runs import RunDir

log = logging.getLogger("seglab")
TARGET_MIOU = 0.70  # issue 9: CamVid-11 test mIoU from at most 60 minutes of training on 2 CPU cores
TARGET_MINUTES = 60


def trained_run(preset: str, data: str | None, out: str) -> RunDir:
    """The preset's run folder under ``out``: trained now, resumed, or (finished already) left as it is."""
    from seglab.experiment import train

    cfg = load_config(preset_path(preset), {"data.root": data, "out_dir": out} if data else {"out_dir": out})
    run = RunDir(Path(out) / cfg.run_name())
    status = run.read_info().get("status")
    if status == "finished":
        log.info("%s: finished already; reading its results", run.path)
        return run
    train(cfg, resume=run.last.is_file())
    return run


def frame_ms(run: RunDir, images: list[Path], modes: list[str], frames: int, warmup: int = 2) -> dict[str, dict]:
    """For each test-time augmentation mode: median and p90 milliseconds per frame, batch 1, through
    `seglab predict`'s Predictor (the model loaded and the frames decoded once for all modes)."""
    from seglab.inference.io import read_image
    from seglab.inference.predictor import load

    predictor = load(run.path, batch_size=1)
    arrays = [read_image(p) for p in images[:frames]]
    out = {}
    for mode in dict.fromkeys(modes):
        predictor.tta = mode
        for a in arrays[:warmup]:
            predictor.predict(a)
        times = []
        for a in arrays:
            t0 = time.perf_counter()
            predictor.predict(a)
            times.append((time.perf_counter() - t0) * 1000)
        out[mode] = {"ms_median": round(statistics.median(times), 1),
                     "ms_p90": round(float(np.percentile(times, 90)), 1), "frames": len(times)}
    return out


def run_quality_bench(data: str | None, preset: str, runs_dir: str, frames: int, out: Path | None) -> dict:
    from seglab.data.open import open_data
    from seglab.evaluate import evaluate
    from seglab.study.stats import bootstrap_miou, paired_bootstrap_diff

    run = trained_run(preset, data, runs_dir)
    info, cfg, metrics = run.read_info(), run.read_config(), run.read_metrics("test")
    if metrics is None:
        raise SeglabError(f"{run.path}: no test metrics; rerun the same command to finish the run")
    per_image = run.read_per_image("test")
    ci = bootstrap_miou(per_image[0]) if per_image else None
    plain, tta_gain = metrics, None
    if cfg.data.tta != "none":  # the same weights without test-time augmentation, in its own file
        plain = evaluate(run.path, tta="none", quiet=True)
        plain_per_image = run.read_per_image("test", "~tta-none")
        if per_image and plain_per_image:  # paired over the same test images
            gain = paired_bootstrap_diff(per_image[0], plain_per_image[0])
            tta_gain = {"miou_points": round(100 * gain.estimate, 2),
                        "ci95_points": [round(100 * gain.low, 2), round(100 * gain.high, 2)],
                        "p_value": gain.p_value}
    budget = info.get("budget") or {}  # the budget's calibration, when the run had one
    calibration_s = budget.get("calibration_seconds") or 0.0
    train_s = info.get("train_seconds", 0) + calibration_s  # measuring the step cost is part of training
    test_images = [s.image for s in open_data(cfg.data).split("test")]
    timings = frame_ms(run, test_images, [cfg.data.tta, "none"], frames)
    timing, timing_plain = timings[cfg.data.tta], timings["none"]
    report = {
        "preset": preset,
        "command": command_line(),
        "test_miou": metrics["miou"],
        "test_miou_ci95": [ci.low, ci.high] if ci else None,
        "test_miou_target": TARGET_MIOU,
        "target_reached": metrics["miou"] >= TARGET_MIOU and train_s <= 60 * TARGET_MINUTES,
        "test_pixel_accuracy": metrics["pixel_accuracy"],
        "test_mean_dice": metrics["mean_dice"],
        "per_class_iou": dict(zip(metrics["class_names"], metrics["per_class_iou"])),
        "tta": cfg.data.tta,
        "test_miou_without_tta": plain["miou"],
        "tta_gain": tta_gain,
        "per_class_iou_without_tta": dict(zip(plain["class_names"], plain["per_class_iou"])),
        "eval_size": metrics.get("eval_size"),
        "train_minutes": round(train_s / 60, 1),
        "train_minutes_limit": TARGET_MINUTES,
        "train_minutes_note": "wall-clock time of training, validations and the step-cost measurement before "
                              "it included (run.json's train_seconds + budget.calibration_seconds)",
        "calibration_minutes": round(calibration_s / 60, 2),
        "train_budget": cfg.train.budget,
        "train_max_time": cfg.train.max_time,
        "train_steps_budget_bought": budget.get("budget_steps"),
        "train_steps": info.get("steps"),
        "train_epochs": info.get("epochs"),
        "train_images": info.get("train_images"),
        "train_split": cfg.data.train_splits,
        "model": cfg.model.spec,
        "weights": info.get("weights"),
        "seed": cfg.train.seed,
        "inference_ms_per_frame": timing["ms_median"],
        "inference_ms_per_frame_p90": timing["ms_p90"],
        "inference_ms_per_frame_without_tta": timing_plain["ms_median"],
        "inference_frames": timing["frames"],
        "inference_note": "batch 1, 360x480 test frames through seglab predict's Predictor, decoding excluded",
        "run": str(run.path),
        "seglab_version": (info.get("environment") or {}).get("seglab"),
        "machine": machine_info(),
    }
    finish(report, out)
    print_table(f"{preset}: CamVid test ({metrics['num_images']} images)", ["class", "IoU %"],
                [[name, 100 * (iou or 0)] for name, iou in report["per_class_iou"].items()],
                footer=f"mIoU {100 * report['test_miou']:.1f}% "
                       f"[{100 * ci.low:.1f}, {100 * ci.high:.1f}] with {cfg.data.tta} TTA, "
                       f"{100 * report['test_miou_without_tta']:.1f}% without; "
                       f"{report['train_minutes']} min of training; "
                       f"{report['inference_ms_per_frame']} ms/frame" if ci else "")
    return report
