"""The ``seglab`` command line.

    seglab train --data ../shared/camvid --model unet:resnet34 --epochs 3 --size 192x256
    seglab evaluate runs/<run> --split test
    seglab data check ../shared/camvid
    seglab models
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import typer

from seglab.errors import SeglabError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Reproducible semantic-segmentation studies: train, evaluate, compare and report.")
data_app = typer.Typer(no_args_is_help=True, help="Inspect datasets.")
app.add_typer(data_app, name="data")

# CLI option -> config key; options left unset keep the YAML/default value.
TRAIN_OPTIONS = {
    "data": "data.root", "layout": "data.layout", "remap": "data.remap", "size": "data.size",
    "eval_size": "data.eval_size", "batch": "data.batch_size", "workers": "data.workers",
    "model": "model.spec", "weights": "model.weights", "epochs": "train.epochs", "steps": "train.steps",
    "budget": "train.budget",
    "max_time": "train.max_time", "loss": "train.loss", "class_weights": "train.class_weights",
    "optimizer": "train.optimizer", "lr": "train.lr", "scheduler": "train.scheduler", "seed": "train.seed",
    "precision": "train.precision", "accelerator": "train.accelerator", "devices": "train.devices",
    "early_stop": "train.early_stop", "name": "name", "out": "out_dir",
}


@app.command()
def train(
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML config; options below override it."),
    preset: str | None = typer.Option(None, help="A built-in config instead of --config, e.g. camvid-cpu-60m "
                                                 "(seglab's best CamVid recipe for an hour of a 2-core CPU)."),
    data: str | None = typer.Option(None, help="Dataset folder (default: $SEGLAB_DATA or ~/.cache/seglab/camvid)."),
    layout: str | None = typer.Option(None, help="auto, camvid, camvid32 or folder."),
    remap: str | None = typer.Option(None, help="Built-in class remap, e.g. camvid6."),
    model: str | None = typer.Option(None, help="arch:encoder (unet:resnet34, segformer:mit_b0, "
                                                   "unet:efficientnet-lite0) or scratch:simplesegnet|unet|vit."),
    weights: str | None = typer.Option(None, help="Encoder weights: auto, imagenet, none, or a file."),
    epochs: int | None = typer.Option(None),
    steps: int | None = typer.Option(None, help="Train for exactly this many optimizer steps instead of epochs."),
    budget: str | None = typer.Option(None, help="Train for a compute budget (e.g. 10m) instead of epochs: "
                                                 "converted into steps before training, whatever the machine's load."),
    max_time: str | None = typer.Option(None, help="Hard stop after this long (e.g. 1h)."),
    size: str | None = typer.Option(None, help="Training crop HxW, multiples of 32 (e.g. 192x256)."),
    eval_size: str | None = typer.Option(None, help="Model input size for evaluation: HxW or native "
                                                    "(default: the training size; labels stay native)."),
    batch: int | None = typer.Option(None, help="Batch size."),
    workers: int | None = typer.Option(None, help="DataLoader worker processes."),
    loss: str | None = typer.Option(None, help="ce, dice, dice_ce or focal."),
    class_weights: str | None = typer.Option(None, help="median-frequency, or comma-separated weights."),
    optimizer: str | None = typer.Option(None, help="adam, adamw or sgd."),
    lr: float | None = typer.Option(None, help="Learning rate."),
    scheduler: str | None = typer.Option(None, help="none, cosine or poly."),
    early_stop: int | None = typer.Option(None, help="Patience in epochs without better val mIoU."),
    seed: int | None = typer.Option(None),
    precision: str | None = typer.Option(None, help="auto, 32, bf16-mixed or 16-mixed."),
    accelerator: str | None = typer.Option(None, help="auto, cpu or cuda."),
    devices: str | None = typer.Option(None, help="Devices for Lightning (auto, 1, 2, ...)."),
    name: str | None = typer.Option(None, help="Run name (default: derived from the setup)."),
    out: str | None = typer.Option(None, help="Folder that holds run folders (default: runs)."),
    set_: list[str] = typer.Option([], "--set", help="Any config key, e.g. --set train.weight_decay=1e-4."),
    resume: Path | None = typer.Option(None, help="Continue an interrupted run folder."),
):
    """Train one model; writes runs/<name>/ with config, checkpoints, metrics.csv and test metrics.json."""
    from seglab.config import load_config, parse_override, preset_path
    from seglab.runs import RunDir
    from seglab.training.run import load_run_config
    from seglab.training.run import train as run_train

    if resume is not None:
        cfg = load_run_config(RunDir(resume))
        cfg.name, cfg.out_dir = resume.name, str(resume.parent)
        run_train(cfg, resume=True)
        return
    values = dict(locals())
    overrides = {key: values[opt] for opt, key in TRAIN_OPTIONS.items() if values[opt] is not None}
    if class_weights and class_weights != "median-frequency":
        try:
            overrides["train.class_weights"] = [float(x) for x in class_weights.split(",")]
        except ValueError:
            raise SeglabError(f"--class-weights {class_weights!r}: use median-frequency or numbers like 1,2.5,0.7")
    overrides.update(parse_override(s) for s in set_)
    if preset is not None:
        if config is not None:
            raise SeglabError("--preset and --config: give one of them (options and --set still override either)")
        config = preset_path(preset)
    run_train(load_config(config, overrides))


@app.command()
def evaluate(
    target: Path = typer.Argument(..., help="Run folder or checkpoint file."),
    split: str = typer.Option("test", help="train, val or test."),
    data: str | None = typer.Option(None, help="Dataset folder, if not where the run was trained."),
    batch: int | None = typer.Option(None, help="Batch size for evaluation."),
    eval_size: str | None = typer.Option(None, help="Model input size: HxW or native (default: the run's "
                                                       "setting, normally its training size)."),
    tta: str | None = typer.Option(None, help="Test-time augmentation: none, flip or flip+scales "
                                              "(default: the run's setting)."),
):
    """Score a trained model on a split; writes metrics.json (metrics_<split>.json for other splits)."""
    from seglab.config import load_config
    from seglab.evaluate import evaluate as run_evaluate

    checked = load_config(None, {"data.eval_size": eval_size, "data.tta": tta or "none"})
    run_evaluate(target, split=split, data_root=data, batch_size=batch,
                 eval_size=checked.data.eval_size if eval_size else None, tta=tta)


@data_app.command("check")
def data_check(
    path: str = typer.Argument(..., help="Dataset folder."),
    layout: str = typer.Option("auto", help="auto, camvid, camvid32 or folder."),
    remap: str | None = typer.Option(None, help="Built-in class remap, e.g. camvid6."),
):
    """Counts per split, image sizes, label histogram, and every unmatched or unreadable file.

    Exit code 0: no problems (warnings may be printed); 1: problems listed; 2: the dataset cannot be read.
    """
    from seglab.data import check_source, open_source
    from seglab.data.check import format_check

    report = check_source(open_source(path, layout, remap))
    typer.echo(format_check(report))
    if report["problems"]:
        raise typer.Exit(1)


@app.command()
def models():
    """The model specs seglab knows, with parameter counts and offline-pretrained options."""
    from rich.console import Console
    from rich.table import Table

    from seglab.models import list_models

    table = Table(title="models (any smp arch:encoder works; these are the tested ones)")
    table.add_column("spec", no_wrap=True)
    table.add_column("params", justify="right", no_wrap=True)
    table.add_column("pretrained weights")
    table.add_column("note")
    for row in list_models():
        table.add_row(row["spec"], f"{row['params'] / 1e6:.2f} M", str(row.get("weights", "")), row.get("note", ""))
    Console().print(table)


@app.command()
def study(
    study_name: str = typer.Argument("quick", metavar="[STUDY]", help="Built-in study (quick, camvid-cpu, "
                                                                       "seed000, seed001, precision) or a path "
                                                                       "to a study YAML."),
    data: str | None = typer.Option(None, help="Dataset folder for every run (default: each run's config, "
                                                  "else $SEGLAB_DATA or ~/.cache/seglab/camvid)."),
    out: str = typer.Option("runs/studies", help="Folder that holds study folders."),
    only: str | None = typer.Option(None, help="Comma-separated run names to train now."),
    repeats: int | None = typer.Option(None, help="Seeds per configuration (overrides the study file's repeats); "
                                                  "with 2 or more the report measures training noise."),
    report: bool = typer.Option(True, help="Build report.md and report.html when done."),
):
    """Train every run of a study not yet finished (resumable), then write the comparison report."""
    from seglab.study.runner import run_study
    from seglab.study.spec import load_study

    spec = load_study(study_name, data_root=data, repeats=repeats)
    folder = run_study(spec, out=out, only=only.split(",") if only else None)
    if report:
        from seglab.study.report import build_report

        md, html = build_report(folder.path, data_root=data)
        typer.echo(f"report: {html}\n        {md}")
    failed = folder.failed()
    if failed:  # the report is written and names them; the exit code tells scripts and CI
        typer.echo(f"error: {len(failed)} run{'s' if len(failed) > 1 else ''} failed: "
                   + "; ".join(f"{name} ({error})" for name, error in failed)
                   + "; rerun the same command to retry them", err=True)
        raise typer.Exit(1)


def _register_feature_commands() -> None:
    """Commands that live beside their feature's code (each module imports its heavy parts lazily)."""
    from seglab.bench.cli import register as register_bench
    from seglab.inference.cli import register as register_inference
    from seglab.study.report_cli import register as register_report

    for register in (register_report, register_inference, register_bench):
        register(app)


_register_feature_commands()


def _one_line(err: BaseException) -> str:
    """A SeglabError re-raised from a DataLoader worker carries a traceback; keep its last line."""
    lines = [ln for ln in str(err).splitlines() if ln.strip()]
    last = lines[-1] if lines else type(err).__name__
    return last.split("SeglabError: ", 1)[-1]


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda",
                  "lightning.fabric.utilities.seed"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.environ.setdefault("PYTHONWARNINGS", "ignore::UserWarning:lightning")
    try:
        app()
    except SeglabError as e:
        typer.echo(f"error: {_one_line(e)}", err=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
