"""``seglab bench``: measure training and inference speed, budgets and the quality preset on this machine.

    seglab bench train --data ../shared/camvid --model unet:resnet18 --size 256x256 --batch 4 --out bench.json
    seglab bench train --data ../shared/camvid --preset camvid-cpu-60m --out benchmarks/train.json
    seglab bench infer --data ../shared/camvid --checkpoint runs/<run> --checkpoint runs/<other> --out infer.json
    seglab bench infer --data ../shared/camvid --model unet:resnet18 --variants openvino/bf16 --frames 20
    seglab bench budget --data ../shared/camvid --model fpn:efficientnet-lite0 --budget 4m --out budget.json
    seglab bench quality --data ../shared/camvid --preset camvid-cpu-60m --out benchmarks/quality.json
    seglab bench tta runs/<run> --data ../shared/camvid --split val --out tta.json
    seglab bench evaluate --data ../shared/camvid --out benchmarks/evaluate.json
    seglab bench data --out benchmarks/data.json
    seglab bench scale --out benchmarks/scale.json
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from seglab.cli.options import (
    Batch,
    Calibration,
    Data,
    JsonOut,
    Model,
    RequiredData,
    RunData,
    Threads,
    TrainSize,
    duration,
    size_option,
)

app = typer.Typer(no_args_is_help=True, help="Measure training and inference speed on this machine.")


@app.command("train")
def train(
    data: RequiredData,
    preset: Annotated[str | None, typer.Option(help="Bench a built-in recipe's own model, size, batch, loss and "
                                                    "optimizer, and its variants (not with --model/--size/--batch)."
                                               )] = None,
    model: Model = None,
    size: TrainSize = None,
    batch: Batch = None,
    steps: Annotated[int, typer.Option(min=1, help="Timed training steps per path.")] = 12,
    warmup: Annotated[int, typer.Option(min=0, help="Untimed steps per path before timing.")] = 2,
    rounds: Annotated[int, typer.Option(min=1, help="Turns the paths take, so load changes hit all; the matmul "
                                                    "peak is measured before, between and after them.")] = 3,
    threads: Threads = None,
    variants: Annotated[str | None, typer.Option(help="With --preset: comma-separated variants to time against "
                                                      "it (default: all; 'none' for none).")] = None,
    profile: Annotated[int | None, typer.Option(min=0, help="Steps of seglab's path to profile per op after "
                                                           "the rounds [default: 3 with --preset, else 0].")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="With --preset: a config key to change in it, "
                                                                 "e.g. --set train.precision=32.")] = None,
    out: JsonOut = None,
):
    """Images/s of seglab's training (against the notebooks' loop, or a preset's variants), FLOP use, memory."""
    from seglab.bench.train_bench import run_train_bench
    from seglab.bench.variants import variants as known_variants
    from seglab.config.loading import parse_override
    from seglab.training.threads import usable_cpus

    if rounds > steps:
        raise typer.BadParameter(f"{rounds}: at most --steps ({steps}), each round times at least one step",
                                 param_hint="'--rounds'")
    given = [name for name, value in (("--model", model), ("--size", size), ("--batch", batch)) if value is not None]
    if preset and given:
        raise typer.BadParameter(f"the preset sets the model, size and batch; drop {', '.join(given)}",
                                 param_hint="'--preset'")
    if preset:
        from seglab.config import preset_path

        preset_path(preset)  # an unknown name fails now, not after the data is read
    if set_ and not preset:
        raise typer.BadParameter("only with --preset", param_hint="'--set'")
    settings = dict(parse_override(s) for s in set_ or [])
    chosen = None
    if variants is not None:
        if not preset:
            raise typer.BadParameter("only with --preset", param_hint="'--variants'")
        chosen = [] if variants.strip() == "none" else [v.strip() for v in variants.split(",")]
        allowed = known_variants(usable_cpus())
        unknown = [v for v in chosen if v not in allowed]
        if unknown:
            raise typer.BadParameter(f"unknown {', '.join(unknown)}; choose from {', '.join(allowed)}",
                                     param_hint="'--variants'")
    run_train_bench(data, model or "unet:resnet18", size or (256, 256), batch or 4, preset=preset, steps=steps,
                    warmup=warmup, rounds=rounds, threads=threads, variant_names=chosen,
                    profile_steps=(3 if preset else 0) if profile is None else profile, settings=settings, out=out)


@app.command("infer")
def infer(
    data: RequiredData,
    checkpoint: Annotated[list[str] | None, typer.Option(help="Run folder or .ckpt of a trained model; repeat "
                                                              "for several models (without it: --model, with "
                                                              "random weights).")] = None,
    model: Model = "unet:resnet18",
    variants: Annotated[str | None, typer.Option(help="Comma-separated backend/precision rows, e.g. "
                                                      "openvino/int8,onnxruntime/fp32 (default: all).")] = None,
    frames: Annotated[int | None, typer.Option(min=1, help="Test images to time and score (default: the "
                                                           "whole test split).")] = None,
    warmup: Annotated[int, typer.Option(min=0, help="First test images not timed (they are scored).")] = 3,
    calibration: Calibration = 100,
    threads: Threads = None,
    out: JsonOut = None,
):
    """Latency x accuracy table: each model on PyTorch, ONNX Runtime and OpenVINO, fp32/bf16/INT8."""
    from seglab.bench.infer_bench import VARIANTS, run_infer_bench

    chosen = [v.strip() for v in variants.split(",")] if variants else None
    unknown = [v for v in chosen or [] if v not in VARIANTS]
    if unknown:
        raise typer.BadParameter(f"unknown {', '.join(unknown)}; choose from {', '.join(VARIANTS)}",
                                 param_hint="'--variants'")
    if frames is not None and frames <= warmup:
        raise typer.BadParameter(f"{frames}: more than --warmup ({warmup}), or nothing is timed",
                                 param_hint="'--frames'")
    run_infer_bench(data, model, checkpoint, variants=chosen, frames=frames, warmup=warmup,
                    calibration=calibration, threads=threads, out=out)


@app.command("quality")
def quality(
    data: Data = None,
    preset: Annotated[str, typer.Option(help="The built-in recipe to train and score.")] = "camvid-cpu-60m",
    runs: Annotated[str, typer.Option(help="Folder for the preset's run (a finished run there is reused, an "
                                           "interrupted one resumed).")] = "runs",
    frames: Annotated[int, typer.Option(min=3, help="Test frames to time inference on, after 2 untimed ones.")] = 50,
    seed: Annotated[list[int] | None, typer.Option(
        help="Train and score this seed (repeat for several: one run at a time, each with the machine to itself; "
             "the targets need two). Default: the preset's seed.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help=(
        "Write the record here. If it holds this preset's record already, its seeds are kept as measured and "
        "only the seeds it lacks are trained and added."))] = None,
):
    """Train the preset per seed; test mIoU of one pass and with TTA, views table, time to accuracy, minutes."""
    from seglab.bench.quality_bench import run_quality_bench

    run_quality_bench(data, preset, runs, frames, out, seeds=seed)


@app.command("tta")
def tta(
    target: Annotated[str, typer.Argument(help="Run folder or checkpoint file.")],
    data: RunData = None,
    split: Annotated[str, typer.Option(help="Split to choose on: val, or any but test.")] = "val",
    batch: Batch = None,
    out: JsonOut = None,
):
    """Score test-time augmentations (none, flip, ranges of scales) on val, to choose one without test data."""
    from seglab.bench.tta_bench import run_tta_bench

    run_tta_bench(target, split, data, batch, out)


@app.command("evaluate")
def evaluate(
    data: Annotated[str | None, typer.Option("--data", help="Dataset folder: the one the run to time trains on, "
                                                            "and is scored on (default with --run: the one it "
                                                            "trained on).")] = None,
    run: Annotated[str | None, typer.Option(help="Run folder or checkpoint to time (never written to; default: "
                                                 "train the quick study's CNN a few steps first).")] = None,
    split: Annotated[str, typer.Option(help="Split to evaluate.")] = "test",
    repeats: Annotated[int, typer.Option(min=1, help="Timed evaluations with and without the new metrics, "
                                                     "each.")] = 3,
    warmup: Annotated[int, typer.Option(min=0, help="Untimed evaluations first.")] = 1,
    steps: Annotated[int, typer.Option(min=1, help="Without --run: training steps of the run to time.")] = 5,
    refit: Annotated[bool, typer.Option("--refit", help="Also time evaluations that fit the temperature on val "
                                                        "first (a run's first evaluation), as with+fit.")] = False,
    batch: Batch = None,
    out: JsonOut = None,
):
    """Seconds of `seglab evaluate` with issue 24's metrics (boundary IoU, calibration, test loss, intervals)
    against without them (confusion matrices only), alternated in one process; the ratio's target is <= 1.25."""
    from seglab.bench.evaluate_bench import run_evaluate_bench

    if run is None and data is None:
        raise typer.BadParameter("the dataset to train the run to time on (or give --run)", param_hint="'--data'")
    run_evaluate_bench(data, run, split, repeats, warmup, batch, steps, refit, out)


@app.command("budget")
def budget(
    data: RequiredData,
    model: Model = "fpn:efficientnet-lite0",
    size: TrainSize = "256x320",
    batch: Batch = 8,
    budget: Annotated[str, typer.Option(parser=duration, metavar="DURATION",
                                        help="The training budget to convert, e.g. 4m.")] = "4m",
    rounds: Annotated[int, typer.Option(min=1, help="Turns of alone / beside a competing process.")] = 2,
    out: JsonOut = None,
):
    """Steps a budget buys alone and beside a CPU-bound competitor, against a wall-clock budget's."""
    from seglab.bench.budget_bench import run_budget_bench

    run_budget_bench(data, model, size, batch, budget, rounds=rounds, out=out)


@app.command("data")
def data(
    size: Annotated[str, size_option("Synthetic image size HxW (Cityscapes: 1024x2048).")] = "1024x2048",
    crop: Annotated[str, size_option("Training crop HxW the images are transformed to.", name="--crop")] = "512x1024",
    images: Annotated[int, typer.Option(min=1, help="Synthetic image/mask pairs to write and load.")] = 24,
    batch: Batch = 2,
    max_workers: Annotated[int, typer.Option(min=0, help="Stream with 0, 1, ... up to this many DataLoader "
                                                         "workers.")] = 2,
    step_s: Annotated[float | None, typer.Option(min=0.001, help="Seconds of one training step "
                                                 "(default: measure --model at the crop).")] = None,
    model: Annotated[str, typer.Option(help="Model whose training step is measured.")] = "fpn:efficientnet-lite0",
    out: JsonOut = None,
):
    """Images/s of cached and streamed loading (0, 1, 2.. workers) against a training step: the workers
    streaming needs when the decoded images do not fit in memory."""
    from seglab.bench.data_bench import run_data_bench

    run_data_bench(size, crop, images, batch, max_workers, step_s, model, out)


@app.command("scale")
def scale(
    images: Annotated[int, typer.Option(min=1, help="Synthetic training images (Cityscapes: 2975).")] = 2975,
    val_images: Annotated[int, typer.Option(min=1, help="Synthetic validation images (Cityscapes: 500).")] = 500,
    size: Annotated[str, size_option("Synthetic image size HxW (Cityscapes: 1024x2048).")] = "1024x2048",
    distinct: Annotated[int, typer.Option(min=1, help="Distinct pairs written; the rest are hard links.")] = 8,
    model: Annotated[str, typer.Option(help="Model trained (small: the epoch is bound by decoding).")] =
        "scratch:simplesegnet",
    crop: Annotated[str, size_option("Training crop HxW.", name="--crop")] = "128x256",
    batch: Batch = 8,
    eval_size: Annotated[str, size_option("Model input size at validation and test (labels are scored at "
                                          "native size).", name="--eval-size")] = "256x512",
    epochs: Annotated[int, typer.Option(min=1, help="Epochs to train.")] = 1,
    set_: Annotated[list[str] | None, typer.Option("--set", help="A config key for the run, e.g. --set "
                                                   "data.memory_budget=4GB (default: every data key's default)."
                                                   )] = None,
    out: JsonOut = None,
):
    """Train on a synthetic Cityscapes-sized dataset (29 GB decoded) with the default memory policy, sampling
    the machine's memory and swap: whether a dataset larger than memory trains without swapping."""
    from seglab.bench.scale_bench import run_scale_bench

    extra = [a for kv in set_ or [] for a in ("--set", kv)]
    run_scale_bench(images, val_images, size, distinct, model, crop, batch, eval_size, epochs, extra, out=out)
