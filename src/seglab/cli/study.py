"""``seglab study`` and ``seglab report``: many runs under one protocol, and their report.

    seglab study --data ../shared/camvid            # the quick study
    seglab study camvid-cpu --data ../shared/camvid --repeats 3
    seglab report runs/studies/quick --data ../shared/camvid
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from seglab.cli.options import Data, RunData

app = typer.Typer()


@app.command()
def study(
    study_name: Annotated[str, typer.Argument(metavar="[STUDY]", help="Built-in study (quick, camvid-cpu, seed000, "
                                                                      "seed001, precision) or a study YAML.")] = "quick",
    data: Data = None,
    out: Annotated[str, typer.Option(help="Folder that holds study folders.")] = "runs/studies",
    only: Annotated[str | None, typer.Option(help="Comma-separated run names to train now.")] = None,
    repeats: Annotated[int | None, typer.Option(min=1, help="Seeds per configuration (overrides the study file's "
                                                            "repeats); 2 or more measure training noise.")] = None,
    report: Annotated[bool, typer.Option(help="Build report.md and report.html when done.")] = True,
    executor: Annotated[str, typer.Option(help="Where runs train: here (one after another), local (submitit "
                                               "jobs: one per GPU at a time, or --jobs CPU runs side by side) "
                                               "or slurm (a submitit job array).")] = "here",
    jobs: Annotated[int | None, typer.Option(min=1, help="Runs at a time for local and slurm (default: one per "
                                                         "GPU; slurm: all).")] = None,
    partition: Annotated[str | None, typer.Option(help="SLURM partition.")] = None,
    timeout_min: Annotated[int, typer.Option(min=1, help="Minutes a run's job may take (local, slurm).")] = 24 * 60,
):
    """Train every run of a study not yet finished (resumable), then write the comparison report."""
    from seglab.study.runner import run_named_study

    folder, paths = run_named_study(study_name, data=data, out=out, only=only.split(",") if only else None,
                                    repeats=repeats, report=report, executor=executor, jobs=jobs,
                                    partition=partition, timeout_min=timeout_min)
    if paths:
        typer.echo(f"report: {paths[1]}\n        {paths[0]}")
    failed = folder.failed()
    if failed:  # the report is written and names them; the exit code tells scripts and CI
        typer.echo(f"error: {len(failed)} run{'s' if len(failed) > 1 else ''} failed: "
                   + "; ".join(f"{name} ({error})" for name, error in failed)
                   + "; rerun the same command to retry them", err=True)
        raise typer.Exit(1)


@app.command("report")
def report_command(
    study_dir: Annotated[Path, typer.Argument(help="Study folder, e.g. runs/studies/quick.")],
    data: RunData = None,
):
    """(Re)build report.md and a self-contained report.html from a study's finished runs; trains nothing."""
    from seglab.study.report import build_report

    md, page = build_report(study_dir, data)
    typer.echo(f"wrote {md}\nwrote {page}")
