"""Train one run: resolve data and classes, build the module, resolve the plan, fit with Lightning.

    seglab train --data ../shared/camvid --model unet:resnet34 --epochs 3 --size 192x256
    seglab train --resume runs/unet-resnet34_192x256_bs8_3ep
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_only

from seglab.config import RunConfig
from seglab.data.datamodule import SegDataModule
from seglab.data.open import open_data
from seglab.environment import environment
from seglab.errors import Interrupted, SeglabError
from seglab.runs import RunDir, load_checkpoint
from seglab.training.budget import Calibration, calibrate
from seglab.training.callbacks import ExactResume, MetricsCSV, StopAt, TimedCheckpoint, WorkMeter
from seglab.training.loggers import build_loggers, check_installed
from seglab.training.losses import median_frequency_weights
from seglab.training.module import SegModule
from seglab.training.pace import PaceReplanner
from seglab.training.plan import RunPlan, batches_per_epoch, check_names, resolve_plan
from seglab.training.schedule import ScheduleCallback
from seglab.training.trainer import make_trainer, quiet

log = logging.getLogger("seglab")


def resolve_class_weights(cfg: RunConfig, dm: SegDataModule, num_classes: int) -> list[float] | None:
    cw = cfg.train.class_weights
    if cw is None:
        return None
    if cw == "median-frequency":
        train = dm.dataset("train")
        return median_frequency_weights((train.decoded(i)[1] for i in range(len(train))), num_classes)
    if len(cw) != num_classes:
        raise SeglabError(f"config key 'train.class_weights': {len(cw)} weights given for {num_classes} classes")
    return list(cw)


def prepare_data(cfg: RunConfig) -> tuple[SegDataModule, list[float] | None]:
    """The run's data module with every split decoded and checked, and its class weights. Bad files fail
    here, before any training; so does a broken test split, which is only scored at the end."""
    source = open_data(cfg.data)
    cfg.data.root = str(Path(source.root).resolve())  # the saved config names the data actually used
    dm = SegDataModule(source, cfg.data, seed=cfg.train.seed)
    dm.setup("fit")
    dm.dataset("test")  # a missing or broken test split fails now, not after training
    return dm, resolve_class_weights(cfg, dm, source.classes.num_classes)


def build_module(cfg: RunConfig, dm: SegDataModule, class_weights: list[float] | None) -> SegModule:
    """The run's LightningModule, with every random stream reset to the run's seed right before: runs of a
    study with the same architecture and seed start from the same weights and draw the same augmentations,
    whatever else differs (loss, optimiser, schedule), so their difference is paired."""
    dm.dataset("train").transform.reseed(cfg.train.seed)  # a calibration may have drawn augmentations
    L.seed_everything(cfg.train.seed, workers=True, verbose=False)
    return SegModule(cfg, dm.source.classes, class_weights)


def needs_calibration(cfg: RunConfig) -> bool:
    return bool(cfg.train.budget) and cfg.train.budget_clock == "compute" and cfg.train.steps is None


def calibrate_config(cfg: RunConfig) -> Calibration:
    """Measure ``cfg``'s step cost from scratch (a study does this once per cost before its first run)."""
    dm, class_weights = prepare_data(cfg)
    return calibrate(cfg, build_module(cfg, dm, class_weights), dm)


def load_run_config(run: RunDir) -> RunConfig:
    """The config of a run to resume, as it set out (its budget already resolved into steps)."""
    try:
        return run.read_config()
    except SeglabError as e:
        raise SeglabError(f"cannot resume {run.path}: {e}") from None


def resume_checkpoint(run: RunDir) -> Path:
    """The checkpoint to resume from: last.ckpt, or best.ckpt (an earlier validation's full state) when
    last.ckpt is empty, truncated or not a checkpoint; checked before anything about the run changes."""
    problems = []
    for ckpt in (run.last, run.best):
        if not ckpt.is_file():
            continue
        try:
            load_checkpoint(ckpt)
        except SeglabError as e:
            problems.append(str(e))
            continue
        if problems:
            log.warning("%s; resuming from %s instead", problems[0], ckpt.name)
        return ckpt
    raise SeglabError(problems[0] + "; no usable checkpoint is left to resume from: start the run again "
                      "under another --name" if problems else
                      f"{run.path}: nothing to resume (no {run.last.name}); start it without --resume")


@dataclass
class Fitted:
    """A trained run, as the caller that scores it needs it: the folder, the decoded data (scoring reuses it),
    the trackers (they get the test scores) and whether this process is the one that writes the folder."""

    run: RunDir
    datamodule: SegDataModule
    loggers: list
    step: int
    hparams: dict
    lead: bool


def train(cfg: RunConfig, resume: bool = False, calibration: Calibration | None = None,
          study: str | None = None, stop_at: int | None = None) -> Fitted:
    """Fit ``cfg`` into ``out_dir/name``; with ``resume``, continue that run from its last checkpoint.

    A compute budget is resolved into ``train.steps`` before training (``calibration`` passes one measured
    by a study for all runs of the same cost), and the resolved config and plan are what config.yaml keeps,
    so a resumed run does exactly the steps it set out to do, on the device and in the precision it started
    with. Interrupting (Ctrl-C) keeps the last validation's checkpoint: resume it later. ``study`` names the
    study the run belongs to: experiment trackers group its runs by it. Scoring is the caller's
    (``seglab.experiment.train`` trains and scores). The lead process holds the folder's lock throughout
    (``claim_run``): another ``train`` of the same run, fresh or resumed, is refused in one line meanwhile.
    ``stop_at`` ends this invocation after that optimizer step (validated and checkpointed there; status
    "paused") with the schedule still planned for the whole run: ``seglab tune``'s rungs.
    """
    check_names(cfg)
    check_installed(cfg.train.loggers)
    with claim_run(cfg):  # before anything is read or written: a second writer is refused, the first untouched
        return _fit(cfg, resume, calibration, study, stop_at)


def run_folder(cfg: RunConfig) -> RunDir:
    return RunDir(Path(cfg.out_dir) / cfg.run_name())


def claim_run(cfg: RunConfig) -> AbstractContextManager:
    """The run folder's one-writer lock (seglab.runs.lock), taken by the lead process only: the other processes
    of a distributed run write nothing into the folder and share their lead's claim. Claims nest, so a caller
    that also scores the run holds it across both."""
    return run_folder(cfg).claim() if rank_zero_only.rank == 0 else nullcontext()


def _fit(cfg: RunConfig, resume: bool, calibration: Calibration | None, study: str | None,
         stop_at: int | None = None) -> Fitted:
    run = run_folder(cfg)
    lead = rank_zero_only.rank == 0  # the process that writes the run folder (all of them, unless distributed)
    shared_calibration = calibration is not None  # a study's or a tune's: its runs keep equal steps
    ckpt = resume_checkpoint(run) if resume else None
    if lead and not resume and run.last.is_file():
        raise SeglabError(f"{run.path}: run already exists; continue it with --resume, or pick --name")

    dm, class_weights = prepare_data(cfg)

    wall_budget = cfg.train.budget if cfg.train.budget and cfg.train.budget_clock == "wall" else None
    budget_info = run.read_info().get("budget") if resume else None
    if resume and needs_calibration(cfg) and run.config.is_file():
        cfg.train.steps = load_run_config(run).train.steps  # the steps it set out to do, not a new measurement
    if needs_calibration(cfg) and not lead:  # a distributed run measures once: its lead's steps, for all
        cfg.train.steps = lead_steps(run, cfg)
    if needs_calibration(cfg):
        if calibration is None:
            calibration = calibrate(cfg, build_module(cfg, dm, class_weights), dm)
        cfg.train.steps = calibration.steps
    if calibration is not None:
        budget_info = calibration.to_dict()
    plan = resolve_plan(cfg, len(dm.dataset("train")))
    cfg.plan = plan.to_config(budget_info)  # before the module: its hparams (and the trackers) keep the plan
    module = build_module(cfg, dm, class_weights)
    if lead:
        _record_start(run, cfg, dm, module, plan, budget_info, wall_budget)

    work = WorkMeter(record=lambda totals: run.write_info(**totals), spent=run.read_info() if resume else None)
    schedule = ScheduleCallback(cfg.train.scheduler, cfg.train.warmup, wall_budget, cfg.train.steps,
                                cfg.train.scheduler_interval)
    callbacks = [
        ModelCheckpoint(dirpath=run.checkpoints, filename="best", monitor="val/miou", mode="max", save_last=True,
                        auto_insert_metric_name=False, enable_version_counter=False),
        *checkpoint_every(cfg, run),
        schedule,
        *pace_replanner(cfg, plan, schedule, budget_info, shared_calibration, stop_at),
        MetricsCSV(run.epochs_csv),
        work,
        ExactResume(),
    ]
    if stop_at is not None:
        callbacks.append(StopAt(stop_at))
    if cfg.train.early_stop:
        callbacks.append(EarlyStopping(monitor="val/miou", mode="max", patience=cfg.train.early_stop))
    length = {"max_steps": cfg.train.steps, "max_epochs": -1} if cfg.train.steps else \
        {"max_epochs": -1 if wall_budget else cfg.train.epochs}
    validation = {"val_check_interval": plan.val_every, "check_val_every_n_epoch": None} if plan.val_every else {}
    trainer = make_trainer(
        plan, **length, **validation, max_time=timedelta(seconds=cfg.train.max_time) if cfg.train.max_time else None,
        devices=plan.devices or cfg.train.devices, num_nodes=cfg.train.nodes, strategy=cfg.train.strategy,
        deterministic=cfg.train.deterministic, callbacks=callbacks, default_root_dir=run.path,
        logger=build_loggers(cfg.train.loggers, run, study, resume),
    )
    with quiet():
        try:
            trainer.fit(module, datamodule=dm, ckpt_path=str(ckpt) if ckpt else None)
        except SystemExit:  # Lightning exits after a Ctrl-C; keep the record straight first
            _finish(run, trainer, work, "interrupted")
            raise Interrupted(f"interrupted; the last validation's checkpoint is saved: resume with "
                              f"`seglab train --resume {run.path}`") from None
        except BaseException as e:
            _finish(run, trainer, work, "failed", error=f"{type(e).__name__}: {e}")
            raise
    status = "interrupted" if trainer.interrupted else \
        "paused" if stop_at is not None and schedule.steps and trainer.global_step < schedule.steps else "trained"
    _finish(run, trainer, work, status)
    if trainer.interrupted:
        raise Interrupted(f"interrupted; resume with `seglab train --resume {run.path}`")
    return Fitted(run, dm, trainer.loggers, trainer.global_step, dict(module.hparams), trainer.global_rank == 0)


def _record_start(run: RunDir, cfg: RunConfig, dm: SegDataModule, module: SegModule, plan: RunPlan, budget_info,
                  wall_budget) -> None:
    """config.yaml, classes.json and run.json as training starts (by the lead process only)."""
    run.write_config(cfg)
    run.write_classes(dm.source.classes)
    n_params = sum(p.numel() for p in module.model.parameters())
    log.info("run %s: %s (%s params, weights: %s), %s, precision %s%s", run.path, cfg.model.spec,
             f"{n_params:,}", module.model.weights, plan.accelerator, plan.precision,
             f", {plan.processes} processes" if plan.processes > 1 else "")
    classes = dm.source.classes
    run.write_info(status="running", name=run.path.name, model=cfg.model.spec, params=n_params,
                   weights=module.model.weights, precision=plan.precision, accelerator=plan.accelerator,
                   processes=plan.processes, num_classes=classes.num_classes, class_names=list(classes.names),
                   environment=environment(), train_images=len(dm.dataset("train")),
                   batch_size=cfg.data.batch_size, data_fingerprint=dm.source.fingerprint(),
                   split_manifest=dm.source.split_manifest,
                   steps_planned=None if wall_budget else (cfg.train.steps or cfg.train.epochs * batches_per_epoch(
                       len(dm.dataset("train")), cfg.data.batch_size, plan.processes)),
                   budget=budget_info, data_cache=dm.policy.record())


def lead_steps(run: RunDir, cfg: RunConfig, timeout_s: float = 3600.0) -> int:
    """The steps the lead process measured for this run's budget, from the config.yaml it writes before
    training (a distributed run whose processes each measured would disagree, and hang). Waits for it: under
    torchrun every process starts at once."""
    import time
    from dataclasses import replace

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            written = run.read_config()
        except SeglabError:  # not written yet, or half-way
            written = None
        # this run's config, resolved: not the config.yaml of an earlier run under the same name
        if written is not None and written.train.steps and \
                replace(written, train=replace(written.train, steps=cfg.train.steps), plan=cfg.plan) == cfg:
            return written.train.steps
        time.sleep(1.0)
    raise SeglabError(f"{run.config}: the lead process wrote no resolved budget within {timeout_s:.0f} s")


def pace_replanner(cfg: RunConfig, plan: RunPlan, schedule: ScheduleCallback, budget_info: dict | None,
                   shared_calibration: bool, stop_at: int | None) -> list[PaceReplanner]:
    """A run whose compute budget was capped by ``train.max_time`` re-plans its steps as the pace drifts
    (training/pace.py) — unless its calibration is shared (a study's or a tune's runs do equal work), it is
    distributed (every process would have to agree), or it stops at a tuning rung."""
    if not (cfg.train.max_time and budget_info and budget_info.get("max_time") and cfg.train.steps) or \
            shared_calibration or plan.processes > 1 or stop_at is not None or cfg.train.budget_clock != "compute":
        return []
    return [PaceReplanner(schedule, cfg.train.max_time, budget_info.get("calibration_seconds") or 0.0,
                          budget_info.get("budget_steps") or cfg.train.steps, plan.val_every)]


def checkpoint_every(cfg: RunConfig, run: RunDir) -> list[ModelCheckpoint]:
    """Besides the checkpoints at validations: last.ckpt every ``train.checkpoint_minutes`` of training, so a
    killed run loses at most that much (resume is exact from any step)."""
    if not cfg.train.checkpoint_minutes:
        return []
    return [TimedCheckpoint(dirpath=run.checkpoints, save_top_k=0, save_last=True, enable_version_counter=False,
                            train_time_interval=timedelta(minutes=cfg.train.checkpoint_minutes))]


def _finish(run: RunDir, trainer: L.Trainer, work: WorkMeter, status: str, **extra) -> None:
    """Record the run's state and the work it did (all sessions of a resumed run together)."""
    if trainer.global_rank != 0:
        return
    info = run.read_info()
    best = trainer.checkpoint_callback.best_model_score if trainer.checkpoint_callback else None
    run.write_info(status=status, **work.totals(trainer),
                   best_val_miou=float(best) if best is not None else info.get("best_val_miou"), **extra)
