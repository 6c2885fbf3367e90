"""``seglab data check``: what a dataset folder holds, and everything wrong with it.

Exit code 0: no problems (warnings may be printed); 1: problems listed; 2: the dataset cannot be read.
"""

from __future__ import annotations

from typing import Annotated

import typer

from seglab.cli.options import with_choices

app = typer.Typer(no_args_is_help=True, help="Inspect datasets.")


@app.command("check", cls=with_choices(layout="data.layout"))
def check(
    path: Annotated[str, typer.Argument(help="Dataset folder.")],
    layout: Annotated[str, typer.Option(help="Folder layout; auto detects it.")] = "auto",
    remap: Annotated[str | None, typer.Option(help="Built-in class remap, e.g. camvid6.")] = None,
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
