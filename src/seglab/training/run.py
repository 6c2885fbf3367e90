"""Train one run: resolve data and classes, build the module, fit with Lightning, score the test split.

    seglab train --data ../shared/camvid --model unet:resnet34 --epochs 3 --size 192x256
    seglab train --resume runs/unet-resnet34_192x256_bs8_3ep
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from pathlib import Path

import lightning as L
import yaml
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from seglab.config import RunConfig, from_dict, parse_duration
from seglab.data import ensure_camvid, open_source
from seglab.data.datamodule import SegDataModule
from seglab.errors import Interrupted, SeglabError
from seglab.runs import RunDir, environment, save_config
from seglab.training.callbacks import EpochCSV
from seglab.training.device import resolve_accelerator, resolve_precision
from seglab.training.losses import median_frequency_weights
from seglab.training.module import SegModule
from seglab.training.schedule import ScheduleCallback
from seglab.training.trainer import make_trainer, quiet

log = logging.getLogger("seglab")


def open_data(cfg: RunConfig):
    """The DataSource a config names (downloading CamVid to the default place if needed)."""
    root = ensure_camvid(cfg.data.root)
    source = open_source(root, cfg.data.layout, cfg.data.remap, cfg.data.classes_file)
    if source.problems:  # e.g. an image without its label: training on the rest would hide it
        more = f" (and {len(source.problems) - 1} more)" if len(source.problems) > 1 else ""
        raise SeglabError(f"{source.problems[0]}{more}; run `seglab data check {root}` for the full list")
    return source


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


def load_run_config(run: RunDir) -> RunConfig:
    if not run.config.is_file():
        raise SeglabError(f"{run.path}: not a run folder to resume (no config.yaml)")
    return from_dict(yaml.safe_load(run.config.read_text()))


def train(cfg: RunConfig, resume: bool = False) -> RunDir:
    """Fit ``cfg`` into ``out_dir/name``; with ``resume``, continue that run from its last checkpoint.

    Returns the run folder. Interrupting (Ctrl-C) keeps the last epoch's checkpoint: resume it later.
    """
    run = RunDir(Path(cfg.out_dir) / cfg.run_name())
    if resume and not run.last.is_file():
        raise SeglabError(f"{run.path}: nothing to resume (no {run.last.name}); start it without --resume")
    if not resume and run.last.is_file():
        raise SeglabError(f"{run.path}: run already exists; continue it with --resume, or pick --name")

    source = open_data(cfg)
    cfg.data.root = str(Path(source.root).resolve())  # the saved config names the data actually used
    L.seed_everything(cfg.train.seed, workers=True, verbose=False)
    dm = SegDataModule(source, cfg.to_dict()["data"], seed=cfg.train.seed)
    dm.setup("fit")  # decode and validate every image now: bad files fail before any training
    if "test" in source.splits:
        dm.dataset("test")  # the test split is scored at the end: check it now, not after hours of training
    class_weights = resolve_class_weights(cfg, dm, source.classes.num_classes)

    config = cfg.to_dict()
    module = SegModule(config, list(source.classes.names), [list(c) for c in source.classes.colors], class_weights)
    save_config(run, config)
    accelerator = resolve_accelerator(cfg.train.accelerator)
    precision = resolve_precision(cfg.train.precision, cfg.train.accelerator)
    n_params = sum(p.numel() for p in module.model.parameters())
    log.info("run %s: %s (%s params, weights: %s), %s, precision %s", run.path, cfg.model.spec,
             f"{n_params:,}", module.model.weights, accelerator, precision)
    run.write_info(status="running", name=run.path.name, model=cfg.model.spec, params=n_params,
                   weights=module.model.weights, precision=precision, accelerator=accelerator,
                   num_classes=source.classes.num_classes, class_names=list(source.classes.names),
                   environment=environment(), **({} if resume else {"train_seconds": 0.0}))

    budget_s = parse_duration(cfg.train.budget, "train.budget") if cfg.train.budget else None
    callbacks = [
        ModelCheckpoint(dirpath=run.checkpoints, filename="best", monitor="val/miou", mode="max", save_last=True,
                        auto_insert_metric_name=False, enable_version_counter=False),
        ScheduleCallback(cfg.train.scheduler, cfg.train.warmup, budget_s),
        EpochCSV(run.epochs_csv),
    ]
    if cfg.train.early_stop:
        callbacks.append(EarlyStopping(monitor="val/miou", mode="max", patience=cfg.train.early_stop))
    max_time = timedelta(seconds=parse_duration(cfg.train.max_time, "train.max_time")) if cfg.train.max_time else None
    trainer = make_trainer(
        cfg.train, max_epochs=-1 if budget_s else cfg.train.epochs, max_time=max_time, devices=cfg.train.devices,
        deterministic=cfg.train.deterministic, callbacks=callbacks, default_root_dir=run.path,
        logger=CSVLogger(run.path, name="logs"),  # one version folder per session log_every_n_steps=10, num_sanity_val_steps=0,
    )
    t0 = time.monotonic()
    with quiet():
        try:
            trainer.fit(module, datamodule=dm, ckpt_path=str(run.last) if resume else None)
        except SystemExit:  # Lightning exits after a Ctrl-C; keep the record straight first
            _finish(run, trainer, t0, "interrupted")
            raise Interrupted(f"interrupted; the last finished epoch is saved: resume with "
                              f"`seglab train --resume {run.path}`") from None
        except BaseException as e:
            _finish(run, trainer, t0, "failed", error=f"{type(e).__name__}: {e}")
            raise
    status = "interrupted" if trainer.interrupted else "trained"
    _finish(run, trainer, t0, status)
    if trainer.interrupted:
        raise Interrupted(f"interrupted; resume with `seglab train --resume {run.path}`")
    if trainer.global_rank == 0:
        from seglab.evaluate import evaluate

        evaluate(run.path, split="test", datamodule=dm)
        run.write_info(status="finished")
    return run


def _finish(run: RunDir, trainer: L.Trainer, t0: float, status: str, **extra) -> None:
    if trainer.global_rank != 0:
        return
    info = run.read_info()
    best = trainer.checkpoint_callback.best_model_score if trainer.checkpoint_callback else None
    run.write_info(status=status, epochs=trainer.current_epoch, steps=trainer.global_step,
                   train_seconds=round(info.get("train_seconds", 0.0) + time.monotonic() - t0, 1),
                   best_val_miou=float(best) if best is not None else info.get("best_val_miou"), **extra)
