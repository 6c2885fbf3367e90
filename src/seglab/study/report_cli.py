"""``seglab report``: (re)build a study's report from its finished runs, without training anything.

    seglab report runs/studies/quick
    seglab report runs/studies/quick --data ../shared/camvid   # data moved since training
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add the ``report`` command to the main CLI."""

    @app.command()
    def report(
        study_dir: Annotated[Path, typer.Argument(help="Study folder, e.g. runs/studies/quick.")],
        data: Annotated[str | None, typer.Option("--data", help="Dataset folder for the example images "
                                                 "(default: the one the best run trained on).")] = None,
    ):
        """Write report.md and a self-contained report.html into the study folder."""
        from seglab.study.report import build_report

        md, page = build_report(study_dir, data)
        typer.echo(f"wrote {md}\nwrote {page}")
