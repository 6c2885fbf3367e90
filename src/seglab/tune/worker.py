"""What a trial does: train a seglab run to its rung and read the val metric there.

Every trial is a run folder under the tune folder. Its full length is the base config's compute budget turned
into steps by the calibration of its step cost (measured once per cost, kept in calibration.json), so every
trial of a cost does the same work however busy the machine is; a rung is a share of those steps. A trial
stops at its rung's step (``training.run.train(stop_at=...)``: Lightning validates and checkpoints there, the
learning-rate schedule still planned for the full run), and a promoted trial resumes from that checkpoint, so
reaching the last rung costs exactly one full run. The metric is the validation row at the rung's step;
nothing is scored on test here.

Jobs train in this process one after another (``here``) or as submitit jobs side by side (``local``,
``slurm``: study/executors.py), and a job whose validation at its step is already recorded (a search killed
after it) is not trained again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from seglab.config import RunConfig
from seglab.errors import Interrupted, SeglabError, first_line
from seglab.runs import RunDir
from seglab.study import primary
from seglab.study.executors import ClusterOptions, JobRequest, run_jobs
from seglab.study.runner import announce, calibrate_configs
from seglab.training.budget import Calibration, cost_key
from seglab.training.run import run_folder
from seglab.tune.folder import TuneDir
from seglab.tune.search import Job
from seglab.tune.space import TuneSpec

log = logging.getLogger("seglab")


@dataclass
class TrainWorker:
    """A ``search.Worker`` that trains seglab runs into ``folder``."""

    spec: TuneSpec
    folder: TuneDir
    cluster: ClusterOptions

    def config(self, job: Job) -> RunConfig:
        """The job's run config: the base, the trial's values, one validation at the end of the full run (the
        rungs add theirs) and, for a re-run, its seed."""
        return self.spec.config({**job.overrides, "train.val_points": 1}, job.key,
                                self.folder.reruns if job.seed is not None else self.folder.trials, job.seed)

    def calibrations(self, configs: list[tuple[str, RunConfig]]) -> dict[str, Calibration]:
        return calibrate_configs(self.folder.calibration, [(f"trial {k}", k, c) for k, c in configs])

    def full_steps(self, cfg: RunConfig, calibrations: dict[str, Calibration]) -> int:
        """The steps of the trial's full run: its budget's (the same for every trial of its cost)."""
        cal = calibrations.get(cost_key(cfg))
        if cal is not None:
            return cal.steps
        if cfg.train.steps:
            return cfg.train.steps
        raise SeglabError("the base config needs a compute budget (train.budget) or train.steps: the rungs are "
                          "shares of a fixed amount of work")

    def __call__(self, jobs: list[Job]) -> dict[str, float | str]:
        configs = {job.key: self.config(job) for job in jobs}
        calibrations = self.calibrations(list(configs.items()))
        metric = primary.metric(self.spec.metric).val_key
        results: dict[str, float | str] = {}
        steps: dict[str, int] = {}
        for job in jobs:
            try:
                steps[job.key] = job.steps(self.full_steps(configs[job.key], calibrations))
            except SeglabError as e:
                results[job.key] = str(e)
        todo = [(job, configs[job.key], steps[job.key]) for job in jobs
                if job.key in steps and recorded(run_folder(configs[job.key]), steps[job.key], metric) is None]
        errors = self._train(todo, calibrations)
        for key, step in steps.items():
            run = run_folder(configs[key])
            value = recorded(run, step, metric)
            results[key] = value if value is not None else errors.get(key) or run.read_info().get("error") or \
                f"no validation {metric} recorded at step {step} in {run.epochs_csv}"
        return results

    def _train(self, todo: list[tuple[Job, RunConfig, int]], calibrations: dict[str, Calibration]) -> dict[str, str]:
        """Train the jobs here or as submitit jobs; the one-line error of each that failed, by job key."""
        from seglab.training.run import train as fit

        errors: dict[str, str] = {}
        if not todo:
            return errors
        if self.cluster.executor == "here":
            for job, cfg, steps in todo:
                run = run_folder(cfg)
                announce(f"{job.key}: rung {job.rung + 1}/{job.rungs.count}, to step {steps}")
                try:
                    fit(cfg, resume=run.last.is_file(), calibration=calibrations.get(cost_key(cfg)),
                        study=self.spec.name, stop_at=None if job.full else steps)
                except (KeyboardInterrupt, Interrupted):
                    raise Interrupted("tune interrupted; every trial's progress is kept: rerun the same command "
                                      "to go on") from None
                except Exception as e:  # noqa: BLE001 - a failed trial is recorded as failed, the search goes on
                    errors[job.key] = f"{type(e).__name__}: {first_line(e)}"
            return errors
        requests = []
        for job, cfg, steps in todo:
            cal = calibrations.get(cost_key(cfg))
            requests.append(JobRequest(job.key, cfg.to_dict(), run_folder(cfg).last.is_file(),
                                       cal.to_dict() if cal else None, self.spec.name,
                                       stop_at=None if job.full else steps, score=False))
        announce(f"{len(requests)} jobs on {self.cluster.executor}: {', '.join(r.name for r in requests)}")

        def done(name: str, error: str | None) -> None:
            if error:
                errors[name] = error

        run_jobs(requests, self.cluster, self.folder.path, done)
        return errors


def recorded(run: RunDir, step: int, metric: str) -> float | None:
    """The val metric of ``run``'s validation at ``step``, or None when it has none there (yet)."""
    if not run.epochs_csv.is_file():
        return None
    for row in reversed(run.read_epochs()):
        if row.get("step") == step and row.get(metric) is not None:
            return float(row[metric])
    return None
