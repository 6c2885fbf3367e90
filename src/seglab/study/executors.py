"""Where a study's runs train: in this process one after another (``here``, the default), or as jobs of
submitit — the engine that hands a Python function to SLURM as a job array (``slurm``) or runs it as local
processes (``local``: one run per GPU of this machine at a time, or ``jobs`` CPU runs side by side).

submitit rather than Ray: a run is one function call with plain arguments that writes its own folder, which is
exactly a submitit job, and SLURM is what clusters for this work run; Ray would add a cluster service to keep
up for no scheduling seglab needs. The study folder stays the only record: a job writes its run folder, this
process writes study.json, so a study started on a cluster is reported on a laptop, and rerunning the command
after a node died resumes the runs it left unfinished from their checkpoints.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from seglab.errors import SeglabError

EXECUTORS = ("here", "local", "slurm")


@dataclass
class JobRequest:
    """One run to train as a job: its resolved config and budget calibration as plain values."""

    name: str
    config: dict
    resume: bool
    calibration: dict | None
    study: str
    stop_at: int | None = None  # end this invocation after that step (a tune's rung); None: train to the end
    score: bool = True  # score test when trained (a study's runs); a tune's trials are only validated


@dataclass
class ClusterOptions:
    executor: str = "here"
    jobs: int | None = None  # runs at a time; None: one per GPU (local), or every run at once (slurm)
    partition: str | None = None  # SLURM partition
    timeout_min: int = 24 * 60  # per run; SLURM kills a job that outlives it (resume picks it up)
    gpus_per_run: int = 1  # when the machine or cluster has GPUs
    extra: dict = field(default_factory=dict)  # more submitit parameters, e.g. {"slurm_account": "..."}


def train_job(request: JobRequest) -> str:
    """What a job runs, in its own process: train one run into the study (or tune) folder; a study's run is
    scored on test too, a tune's trial only validated (``score``), up to ``stop_at`` where given."""
    from seglab.config import from_dict
    from seglab.experiment import train
    from seglab.training.budget import Calibration
    from seglab.training.run import train as fit

    calibration = Calibration(**request.calibration) if request.calibration else None
    cfg = from_dict(request.config)
    if request.score:
        train(cfg, resume=request.resume, calibration=calibration, study=request.study)
        return "finished"
    fit(cfg, resume=request.resume, calibration=calibration, study=request.study, stop_at=request.stop_at)
    return "trained"


def run_jobs(requests: list[JobRequest], options: ClusterOptions, folder: Path,
             on_done: Callable[[str, str | None], None]) -> None:
    """Train every request as a submitit job; ``on_done(name, error or None)`` as each one ends."""
    try:
        import submitit
    except ImportError:
        raise SeglabError(f"--executor {options.executor}: submitit is not installed; install it with "
                          'pip install "seglab[cluster]"') from None
    logs = folder / "jobs"
    if options.executor == "slurm":
        executor = submitit.AutoExecutor(folder=logs, cluster="slurm")
        executor.update_parameters(timeout_min=options.timeout_min, gpus_per_node=options.gpus_per_run,
                                   slurm_partition=options.partition,
                                   slurm_array_parallelism=options.jobs or len(requests), **options.extra)
        with executor.batch():  # one job array
            jobs = [(r.name, executor.submit(train_job, r)) for r in requests]
        _wait(jobs, on_done)
        return
    _run_local(submitit.LocalExecutor(folder=logs), requests, options, on_done)


def _run_local(executor, requests: list[JobRequest], options: ClusterOptions, on_done) -> None:
    """At most ``slots`` runs at once, each on its own GPU where there are GPUs."""
    import torch

    gpus = list(range(torch.cuda.device_count()))
    slots = gpus[:options.jobs] if gpus and options.jobs else gpus or list(range(options.jobs or 1))
    free, running, queue = list(slots), [], list(requests)
    try:
        while queue or running:
            while queue and free:
                slot, request = free.pop(0), queue.pop(0)
                executor.update_parameters(timeout_min=options.timeout_min, **(
                    {"gpus_per_node": 1, "visible_gpus": [slot]} if gpus else {}), **options.extra)
                running.append((request.name, executor.submit(train_job, request), slot))
            time.sleep(0.5)
            for entry in [e for e in running if e[1].done()]:
                running.remove(entry)
                free.append(entry[2])
                on_done(entry[0], _error(entry[1]))
    except BaseException:
        for _, job, _ in running:  # Ctrl-C: stop the jobs; their runs resume from checkpoints next time
            job.cancel(check=False)
        raise


def _wait(jobs: list, on_done) -> None:
    pending = list(jobs)
    while pending:
        time.sleep(5.0)
        for entry in [e for e in pending if e[1].done()]:
            pending.remove(entry)
            on_done(entry[0], _error(entry[1]))


def _error(job) -> str | None:
    """None for a job that trained its run, else the last line of why not."""
    error = job.exception()
    if error is None:
        return None
    text = str(error).strip().splitlines()
    return text[-1] if text else type(error).__name__
