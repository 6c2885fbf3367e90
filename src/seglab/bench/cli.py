"""``seglab bench train`` and ``seglab bench infer``, added to the main CLI by ``register(app)``.

    seglab bench train --data ../shared/camvid --model unet:resnet18 --size 256x256 --batch 4 --out bench.json
    seglab bench infer --data ../shared/camvid --model unet:resnet18 --out infer.json
    seglab bench infer --data ../shared/camvid --checkpoint runs/<run> --frames 20 --out infer.json
    seglab bench budget --data ../shared/camvid --model fpn:efficientnet-lite0 --budget 4m --out budget.json
    seglab bench quality --data ../shared/camvid --preset camvid-cpu-60m --out benchmarks/quality.json
"""

from __future__ import annotations

from pathlib import Path

import typer

from seglab.config import parse_duration, parse_size
from seglab.errors import SeglabError


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = parse_size(text)
    except ValueError:
        raise SeglabError(f"--size {text!r}: expected HxW, e.g. 256x256") from None
    if min(h, w) <= 0 or h % 32 or w % 32:
        raise SeglabError(f"--size {text}: height and width must be positive multiples of 32 (e.g. 256x256)")
    return h, w


def _at_least(option: str, value: int | None, low: int) -> None:
    if value is not None and value < low:
        raise SeglabError(f"{option} {value}: must be at least {low}")


def register(app: typer.Typer) -> None:
    bench = typer.Typer(no_args_is_help=True, help="Measure training and inference speed on this machine.")
    app.add_typer(bench, name="bench")

    @bench.command("train")
    def train(
        data: str = typer.Option(..., help="Dataset folder (its train split is used)."),
        model: str = typer.Option("unet:resnet18", help="Model spec, e.g. unet:resnet18."),
        size: str = typer.Option("256x256", help="Training crop HxW, multiples of 32."),
        batch: int = typer.Option(4, help="Batch size."),
        steps: int = typer.Option(12, help="Timed training steps per path."),
        warmup: int = typer.Option(2, help="Untimed steps per path before timing."),
        rounds: int = typer.Option(3, help="Turns the two paths take, so load changes hit both."),
        threads: int | None = typer.Option(None, help="torch threads for both paths (default: torch's)."),
        tune_threads: bool = typer.Option(False, help="Prototype: seglab's path times its thread counts."),
        out: Path | None = typer.Option(None, help="Write the JSON report here."),
    ):
        """Images/s of the notebooks' training loop and of seglab's, their ratio (speedup), FLOP use, memory."""
        from seglab.bench.train_bench import run_train_bench

        for option, value, low in (("--batch", batch, 1), ("--steps", steps, 1), ("--warmup", warmup, 0),
                                   ("--rounds", rounds, 1), ("--threads", threads, 1)):
            _at_least(option, value, low)
        if rounds > steps:
            raise SeglabError(f"--rounds {rounds}: at most --steps ({steps}), each round times at least one step")
        run_train_bench(data, model, _size(size), batch, steps=steps, warmup=warmup, rounds=rounds,
                        threads=threads, tune_threads=tune_threads, out=out)

    @bench.command("infer")
    def infer(
        data: str = typer.Option(..., help="Dataset folder (frames come from its test split)."),
        model: str = typer.Option("unet:resnet18", help="Model spec (random init), ignored with --checkpoint."),
        checkpoint: str | None = typer.Option(None, help="Run folder or .ckpt: bench a trained model."),
        frames: int = typer.Option(10, help="Test images to time."),
        repeats: int = typer.Option(3, help="Passes over the frames per path, taken in turns."),
        paths: str | None = typer.Option(None, help="Comma-separated paths to try (default: all)."),
        threads: int | None = typer.Option(None, help="torch/ONNX Runtime threads (default: torch's)."),
        out: Path | None = typer.Option(None, help="Write the JSON report here."),
    ):
        """ms/frame of the fp32 eager model and of faster paths, their agreement, and the speedup."""
        from seglab.bench.infer_bench import PATHS, run_infer_bench

        for option, value, low in (("--frames", frames, 1), ("--repeats", repeats, 1), ("--threads", threads, 1)):
            _at_least(option, value, low)
        chosen = [p.strip() for p in paths.split(",")] if paths else None
        unknown = [p for p in chosen or [] if p not in PATHS]
        if unknown:
            raise SeglabError(f"--paths: unknown {', '.join(unknown)}; choose from {', '.join(PATHS)}")
        run_infer_bench(data, model, checkpoint, frames=frames, repeats=repeats, threads=threads, paths=chosen,
                        out=out)

    @bench.command("quality")
    def quality(
        data: str | None = typer.Option(None, help="Dataset folder (default: $SEGLAB_DATA or "
                                                   "~/.cache/seglab/camvid, downloaded)."),
        preset: str = typer.Option("camvid-cpu-60m", help="The built-in recipe to train and score."),
        runs: str = typer.Option("runs", help="Folder for the preset's run (a finished run there is reused, "
                                              "an interrupted one resumed)."),
        frames: int = typer.Option(50, help="Test frames to time inference on, after 2 untimed ones."),
        out: Path | None = typer.Option(None, help="Write the JSON report here, e.g. benchmarks/quality.json."),
    ):
        """Train the preset, then its test mIoU with interval, per-class IoU, training minutes and ms/frame."""
        from seglab.bench.quality_bench import run_quality_bench

        _at_least("--frames", frames, 3)
        run_quality_bench(data, preset, runs, frames, out)

    @bench.command("budget")
    def budget(
        data: str = typer.Option(..., help="Dataset folder (its train split is used)."),
        model: str = typer.Option("fpn:efficientnet-lite0", help="Model spec, e.g. fpn:efficientnet-lite0."),
        size: str = typer.Option("256x320", help="Training crop HxW, multiples of 32."),
        batch: int = typer.Option(8, help="Batch size."),
        budget: str = typer.Option("4m", help="The training budget to convert, e.g. 4m."),
        rounds: int = typer.Option(2, help="Turns of alone / beside a competing process."),
        out: Path | None = typer.Option(None, help="Write the JSON report here."),
    ):
        """Steps a budget buys alone and beside a CPU-bound competitor, against a wall-clock budget's."""
        from seglab.bench.budget_bench import run_budget_bench

        for option, value, low in (("--batch", batch, 1), ("--rounds", rounds, 1)):
            _at_least(option, value, low)
        if parse_duration(budget, "--budget") <= 0:
            raise SeglabError(f"--budget {budget}: must be a positive duration")
        run_budget_bench(data, model, _size(size), batch, budget, rounds=rounds, out=out)
