"""``seglab train``, ``seglab evaluate`` and ``seglab models``.

    seglab train --data ../shared/camvid --model unet:resnet34 --epochs 3 --size 192x256
    seglab train --preset camvid-cpu-60m --data ../shared/camvid
    seglab evaluate runs/<run> --split test

``train``'s config options are not written out here: each is a field of the config dataclasses
(config/schema.py) that names its option, and its help text and type come from that field, so the option
table cannot drift from the config.
"""

from __future__ import annotations

import inspect
import typing
from pathlib import Path
from typing import Annotated

import typer

from seglab.cli.options import Batch, RunData, Tta, size_option, with_choices
from seglab.config import ConfigError, config_fields
from seglab.config.loading import coerce, parse_override

app = typer.Typer()

# config key -> (option name, field, type) for every config field that names a `seglab train` option
CONFIG_OPTIONS = {key: (f.metadata["cli"], f, tp) for key, f, tp in config_fields() if f.metadata.get("cli")}


def _param_name(option: str) -> str:
    return option.lstrip("-").replace("-", "_")


def _parser(key: str, tp):
    """Check one option's value by its field's type; the problem comes back as a ValueError about the value,
    which typer reports with the option's name."""
    def parse(text: str):
        try:
            return coerce(text, tp, key)
        except ConfigError as e:
            raise ValueError(e.problem) from None
    return parse


def _config_parameters() -> list[inspect.Parameter]:
    params = []
    for key, (option, f, tp) in CONFIG_OPTIONS.items():
        plain = next((t for t in typing.get_args(tp) if t is not type(None)), tp) if typing.get_args(tp) else tp
        metavar = f.metadata.get("metavar") or {int: "INTEGER", float: "NUMBER"}.get(plain, "TEXT")
        annotation = Annotated[str | None, typer.Option(option, help=f.metadata["help"], metavar=metavar,
                                                        parser=_parser(key, tp), show_default=False,
                                                        rich_help_panel="Config (any key: --set)")]
        params.append(inspect.Parameter(_param_name(option), inspect.Parameter.KEYWORD_ONLY, default=None,
                                        annotation=annotation))
    return params


def train(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML config; options override it.")] = None,
    preset: Annotated[str | None, typer.Option(help="A built-in config instead of --config, e.g. camvid-cpu-60m "
                                                    "(seglab's best CamVid recipe for an hour of a 2-core CPU).")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Any config key, e.g. --set train.weight_decay=1e-4.")] = None,
    resume: Annotated[Path | None, typer.Option(help="Continue an interrupted run folder.")] = None,
    **options,
):
    """Train one model; writes runs/<name>/ with config, checkpoints, metrics.csv and test metrics.json."""
    from seglab.experiment import build_config
    from seglab.experiment import resume as resume_run
    from seglab.experiment import train as run_train

    if resume is not None:
        resume_run(resume)
        return
    given = {key: options[_param_name(option)] for key, (option, _, _) in CONFIG_OPTIONS.items()
             if options.get(_param_name(option)) is not None}
    overrides = dict(parse_override(s) for s in set_ or [])
    try:
        cfg = build_config(config, preset, given, overrides)
    except ConfigError as e:
        if e.key in given and e.key not in overrides:  # a value from an option: name it, not the config key
            raise typer.BadParameter(e.problem, param_hint=f"'{CONFIG_OPTIONS[e.key][0]}'") from None
        raise
    run_train(cfg)


_own = inspect.signature(train, eval_str=True)  # typer reads the Annotated options from it
train.__signature__ = _own.replace(parameters=[
    *(p for p in _own.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD), *_config_parameters()])
app.command(cls=with_choices(**{_param_name(option): key for key, (option, _, _) in CONFIG_OPTIONS.items()}))(train)


@app.command()
def evaluate(
    target: Annotated[Path, typer.Argument(help="Run folder or checkpoint file.")],
    split: Annotated[str, typer.Option(help="train, val or test.")] = "test",
    data: RunData = None,
    batch: Batch = None,
    eval_size: Annotated[str | None, size_option("Model input size (default: the run's setting, normally its "
                                                 "training size).", native=True, name="--eval-size")] = None,
    tta: Tta = None,
):
    """Score a trained model on a split; writes metrics.json (metrics_<split>.json for other splits)."""
    from seglab.evaluate import evaluate as run_evaluate

    run_evaluate(target, split=split, data_root=data, batch_size=batch, eval_size=eval_size, tta=tta)


@app.command()
def models():
    """The model specs seglab knows, with parameter counts and offline-pretrained options."""
    from rich.console import Console
    from rich.table import Table

    from seglab.models import list_models

    table = Table(title="models (any smp arch:encoder works; these are the tested ones)")
    for column in ("spec", "params", "pretrained weights", "note"):
        table.add_column(column, no_wrap=column in ("spec", "params"), justify="right" if column == "params" else "left")
    for row in list_models():
        table.add_row(row["spec"], f"{row['params'] / 1e6:.2f} M", str(row.get("weights", "")), row.get("note", ""))
    Console().print(table)
