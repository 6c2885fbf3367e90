"""``seglab bench``: measure training and inference speed, budgets and the quality preset on this machine.

    seglab bench train --data ../shared/camvid --model unet:resnet18 --size 256x256 --batch 4 --out bench.json
    seglab bench infer --data ../shared/camvid --checkpoint runs/<run> --checkpoint runs/<other> --out infer.json
    seglab bench infer --data ../shared/camvid --model unet:resnet18 --variants openvino/bf16 --frames 20
    seglab bench budget --data ../shared/camvid --model fpn:efficientnet-lite0 --budget 4m --out budget.json
    seglab bench quality --data ../shared/camvid --preset camvid-cpu-60m --out benchmarks/quality.json
"""

from __future__ import annotations

from typing import Annotated

import typer

from seglab.cli.options import Batch, Data, JsonOut, Model, RequiredData, Threads, duration, size_option

app = typer.Typer(no_args_is_help=True, help="Measure training and inference speed on this machine.")

TrainSize = Annotated[str, size_option("Training crop HxW, multiples of 32.")]


@app.command("train")
def train(
    data: RequiredData,
    model: Model = "unet:resnet18",
    size: TrainSize = "256x256",
    batch: Batch = 4,
    steps: Annotated[int, typer.Option(min=1, help="Timed training steps per path.")] = 12,
    warmup: Annotated[int, typer.Option(min=0, help="Untimed steps per path before timing.")] = 2,
    rounds: Annotated[int, typer.Option(min=1, help="Turns the two paths take, so load changes hit both.")] = 3,
    threads: Threads = None,
    tune_threads: Annotated[bool, typer.Option(help="Prototype: seglab's path times its thread counts.")] = False,
    out: JsonOut = None,
):
    """Images/s of the notebooks' training loop and of seglab's, their ratio (speedup), FLOP use, memory."""
    from seglab.bench.train_bench import run_train_bench

    if rounds > steps:
        raise typer.BadParameter(f"{rounds}: at most --steps ({steps}), each round times at least one step",
                                 param_hint="'--rounds'")
    run_train_bench(data, model, size, batch, steps=steps, warmup=warmup, rounds=rounds, threads=threads,
                    tune_threads=tune_threads, out=out)


@app.command("infer")
def infer(
    data: RequiredData,
    checkpoint: Annotated[list[str] | None, typer.Option(help="Run folder or .ckpt of a trained model; repeat "
                                                              "for several models.")] = None,
    model: Annotated[str, typer.Option(help="Model spec with random weights, when no --checkpoint is "
                                            "given.")] = "unet:resnet18",
    variants: Annotated[str | None, typer.Option(help="Comma-separated backend/precision rows, e.g. "
                                                      "openvino/int8,onnxruntime/fp32 (default: all).")] = None,
    frames: Annotated[int | None, typer.Option(min=1, help="Test images to time and score (default: the "
                                                           "whole test split).")] = None,
    warmup: Annotated[int, typer.Option(min=0, help="First test images not timed (they are scored).")] = 3,
    calibration: Annotated[int, typer.Option(min=1, help="Training images INT8 rows calibrate on.")] = 100,
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
    out: JsonOut = None,
):
    """Train the preset, then its test mIoU with interval, per-class IoU, training minutes and ms/frame."""
    from seglab.bench.quality_bench import run_quality_bench

    run_quality_bench(data, preset, runs, frames, out)


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
