"""The ``seglab`` command line: one module per command group, each a typer app, options declared with
``Annotated``; this module joins them and turns every user error into one ``error: ...`` line.

    train.py    train, evaluate, models        study.py    study, report
    tune.py     tune
    predict.py  predict, export                data.py     data check
    bench.py    bench train|infer|budget|quality
"""

from __future__ import annotations

import logging
import os
import sys

import typer

from seglab.cli import bench, data, predict, study, train, tune
from seglab.errors import BadValue, SeglabError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Reproducible semantic-segmentation studies: train, evaluate, compare and report.")
for group in (train, study, tune, predict):
    app.add_typer(group.app)  # their commands sit at the top level
app.add_typer(data.app, name="data")
app.add_typer(bench.app, name="bench")


# Library parameters whose option has another name; the rest are spelled alike (tile -> --tile).
OPTION_FOR_PARAMETER = {"batch_size": "--batch"}


def _one_line(err: BaseException) -> str:
    """A SeglabError re-raised from a DataLoader worker carries a traceback; keep its last line."""
    lines = [ln for ln in str(err).splitlines() if ln.strip()]
    last = lines[-1] if lines else type(err).__name__
    return last.split("SeglabError: ", 1)[-1]


def _command_path(args: list[str]) -> list[str]:
    """The command words of a command line ("bench", "train"), without its arguments and options."""
    path, group = [], typer.main.get_group(app)
    for arg in args:
        command = group.commands.get(arg) if hasattr(group, "commands") else None
        if command is None:
            break
        path.append(arg)
        group = command
    return path


def _fail(message: str, code: int) -> None:
    typer.echo(f"error: {message}", err=True)
    sys.exit(code)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda",
                  "lightning.fabric.utilities.seed"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.environ.setdefault("PYTHONWARNINGS", "ignore::UserWarning:lightning")
    try:
        code = app(standalone_mode=False)
    except BadValue as e:  # a library function's parameter: name the option that set it
        option = OPTION_FOR_PARAMETER.get(e.param, "--" + e.param.replace("_", "-"))
        _fail(f"Invalid value for '{option}': {e.value}: {e.problem}", e.exit_code)
    except SeglabError as e:
        _fail(_one_line(e), e.exit_code)
    except typer.TyperException as e:  # bad option values, unknown options, missing arguments
        message = e.format_message().replace("Value error, ", "")  # typer's wording for a parser's ValueError
        if not message:  # no arguments at all: the help is printed already
            sys.exit(2)
        _fail(f"{message} (see {' '.join(['seglab', *_command_path(sys.argv[1:])])} --help)", 2)
    except (KeyboardInterrupt, typer.Abort):
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


__all__ = ["app", "main"]
