"""``seglab data check``: what a dataset folder holds, and everything wrong with it; ``seglab data import``:
an annotation tool's export turned into a folder dataset.

``check`` exit code 0: no problems (warnings may be printed); 1: problems listed; 2: the dataset cannot be read.
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


@app.command("import")
def import_(
    fmt: Annotated[str, typer.Argument(metavar="FORMAT", help="Export format: coco, cvat-mask or labelstudio.")],
    src: Annotated[str, typer.Argument(help="The export folder (Label Studio: the folder or its JSON file).")],
    dst: Annotated[str, typer.Argument(help="New folder for the seglab dataset (absent or empty).")],
    split: Annotated[str | None, typer.Option(help="Split into train,val,test fractions, e.g. 0.8,0.1,0.1 "
                                                   "(replaces the export's own subsets); kept in splits.json.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of --split.")] = 0,
    crowd: Annotated[str, typer.Option(help="COCO crowd regions (iscrowd: 1): void (ignored) or label.")] = "void",
):
    """Rasterise an annotation tool's export once into images/, masks/ and classes.yaml.

    Prints one line per skipped item and a summary. Exit code 0: everything imported; 1: some items were
    skipped (the rest is imported); 2: nothing could be imported (DST is then not created).
    """
    from seglab.data.exports import import_export, read_export

    report = import_export(read_export(fmt, src, crowd), dst, split, seed)
    for line in report.warnings:
        typer.echo(f"warning: {line}", err=True)
    for line in report.skipped:
        typer.echo(f"skipped: {line}", err=True)
    typer.echo(report.summary())
    if report.skipped:
        raise typer.Exit(1)
