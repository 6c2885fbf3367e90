"""``seglab tune``: hyperparameter search on Optuna at equal work per rung, chosen on val, the finalists
re-trained over fresh seeds, the winner scored on test once.

    seglab tune quick-cnn --data ../shared/camvid            # built-in: the quick study's CNN, 16 trials
    seglab tune my-space.yaml --data ../shared/camvid --trials 32 --executor local --jobs 2
"""

from __future__ import annotations

from typing import Annotated

import typer

from seglab.cli.options import Data

app = typer.Typer()


@app.command()
def tune(
    space: Annotated[str, typer.Argument(metavar="SPACE", help="A tune file (YAML: base config, search space, "
                                                               "budget) or a built-in tune (quick-cnn).")],
    data: Data = None,
    trials: Annotated[int | None, typer.Option(min=1, help="Trials to run (overrides the tune file's).")] = None,
    out: Annotated[str, typer.Option(help="Folder that holds tune folders.")] = "runs/tunes",
    storage: Annotated[str | None, typer.Option(help="Optuna storage URL (default: SQLite in the tune folder); "
                                                     "e.g. postgresql://... for a cluster.")] = None,
    executor: Annotated[str, typer.Option(help="Where trials train: here (one after another), local (submitit "
                                               "jobs side by side, --jobs at a time) or slurm.")] = "here",
    jobs: Annotated[int | None, typer.Option(min=1, help="Trials at a time for local and slurm.")] = None,
    partition: Annotated[str | None, typer.Option(help="SLURM partition.")] = None,
    timeout_min: Annotated[int, typer.Option(min=1, help="Minutes a trial's job may take (local, slurm).")] = 24 * 60,
):
    """Search a config space (resumable: rerun the same command after a kill), then re-run the finalists
    with fresh seeds, score the winner on test once, and write the report and winner.yaml."""
    from seglab.tune.runner import run_tune

    folder, paths = run_tune(space, data=data, trials=trials, out=out, storage=storage, executor=executor,
                             jobs=jobs, partition=partition, timeout_min=timeout_min)
    typer.echo(f"winner: {folder.winner}")
    if paths:
        typer.echo(f"report: {paths[1]}\n        {paths[0]}")
