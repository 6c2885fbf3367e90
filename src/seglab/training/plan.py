"""The run plan: how a run computes, resolved once from its config and the machine, then saved with it.

Device, precision, data-parallel processes, CPU threads and the validation interval are decided here and
nowhere else (the step count a budget buys is ``train.steps``, resolved by budget.py; durations are seconds
since the config was read). ``seglab train`` saves the plan as config.yaml's ``plan`` section, so a resumed
run computes as it started, and ``seglab evaluate``, ``seglab predict`` and the benchmarks score a model in the
arithmetic it was trained in (``plan_for``), re-resolving only what this machine cannot do.

Names are checked here too, each against the dict of the module that implements it (losses, optimizers,
schedules, trackers, layouts, test-time augmentation, devices): config itself knows no names.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

from seglab.config import ConfigError, RunConfig, check_choice
from seglab.config.schema import PlanConfig
from seglab.device import (
    autocast_dtype,
    check_device_name,
    check_precision_name,
    resolve_device,
    resolve_precision,
)
from seglab.errors import BadValue, SeglabError

log = logging.getLogger("seglab")

# Lightning strategies for several devices or machines (auto: one device, or Lightning's pick)
STRATEGIES = ("ddp", "ddp_spawn")


def choices() -> dict[str, tuple[str, ...]]:
    """Allowed values of each name key, from the dict that implements it, so a new loss or schedule is one
    entry in one place (imported here, not at the top: they pull in torch and smp)."""
    from seglab.data.sources import LAYOUTS
    from seglab.device import PRECISION_NAMES
    from seglab.training.loggers import LOGGERS
    from seglab.training.losses import LOSSES
    from seglab.training.optimizers import OPTIMIZERS
    from seglab.training.schedule import BUDGET_CLOCKS, SCHEDULER_INTERVALS, SCHEDULES

    return {"data.layout": ("auto", *LAYOUTS), "train.loss": tuple(LOSSES),
            "train.optimizer": tuple(OPTIMIZERS), "train.scheduler": tuple(SCHEDULES),
            "train.scheduler_interval": SCHEDULER_INTERVALS,
            "train.budget_clock": tuple(BUDGET_CLOCKS), "train.precision": ("auto", *PRECISION_NAMES),
            "train.strategy": ("auto", *STRATEGIES), "train.loggers": tuple(LOGGERS)}


def check_names(cfg: RunConfig) -> RunConfig:
    """ConfigError for the first name no module implements; ``cfg`` back when all are known."""
    from seglab.models.tta import tta_scales

    for key, allowed in choices().items():
        section, name = key.split(".")
        check_choice(key, getattr(getattr(cfg, section), name), allowed)
    try:
        check_device_name(cfg.train.accelerator, "train.accelerator")
    except BadValue as e:
        raise ConfigError("train.accelerator", e.problem) from None
    try:
        tta_scales(cfg.data.tta)
    except ValueError as e:
        raise ConfigError("data.tta", f"bad value {cfg.data.tta!r}; {e}") from None
    return cfg


@dataclass(frozen=True)
class RunPlan:
    """Where and how a run computes; training, evaluation, the budget calibration and benchmarks use it."""

    accelerator: str  # cpu, cuda or mps: Lightning's accelerator
    precision: str  # 32, bf16-mixed or 16-mixed
    processes: int = 1  # devices x nodes: the data-parallel world size
    threads: int | str = 0  # CPU threads: a count, 0 (torch's default), or auto (measured while training)
    device_ids: tuple[int, ...] | None = None  # cuda:N picks card N
    val_every: int | None = None  # optimizer steps between validations; None: once per epoch
    compile: bool = False  # training steps run the network through torch.compile (never scoring)

    @property
    def autocast_dtype(self):
        return autocast_dtype(self.precision)

    @property
    def fixed_threads(self) -> int | None:
        """The CPU thread count to set, where the plan fixes one (0 keeps torch's default; auto is measured
        while training, by ThreadTuner)."""
        if self.accelerator == "cpu" and isinstance(self.threads, int) and self.threads > 0:
            return self.threads
        return None

    @property
    def device(self) -> str:
        """The torch device name of a one-process plan: cpu, cuda, cuda:N or mps."""
        return f"{self.accelerator}:{self.device_ids[0]}" if self.device_ids else self.accelerator

    @property
    def devices(self):
        """What Lightning's ``devices`` takes for this plan."""
        return list(self.device_ids) if self.device_ids is not None else None

    def to_config(self, calibration: dict | None = None) -> PlanConfig:
        fields = asdict(self)
        fields["device_ids"] = list(self.device_ids) if self.device_ids is not None else None
        return PlanConfig(**fields, calibration=calibration)


def device_count(devices: str, accelerator: str) -> int:
    """Devices per machine as Lightning reads ``train.devices``: auto and -1 are every GPU, one CPU process."""
    import torch

    text = str(devices).strip()
    if text in ("auto", "-1"):
        return max(1, torch.cuda.device_count()) if accelerator == "cuda" else 1
    return len([d for d in text.split(",") if d]) if "," in text else int(text)


def batches_per_epoch(train_images: int, batch_size: int, processes: int = 1) -> int:
    """Optimizer steps per epoch: each of ``processes`` data-parallel processes takes its share of the items."""
    n = train_images // processes
    return max(1, n // batch_size if n > batch_size else 1)


def resolve_plan(cfg: RunConfig, train_images: int | None = None) -> RunPlan:
    """The plan of ``cfg`` on this machine. ``train_images`` (the training split's size) sets the validation
    interval; without it the plan has none (scoring and the calibration validate nothing)."""
    check_precision_name(cfg.train.precision, "train.precision")
    t = cfg.train
    try:
        device = resolve_device(t.accelerator, "train.accelerator")
    except BadValue as e:  # about this machine, not the value: "train.accelerator=cuda: this machine has ..."
        raise SeglabError(f"train.accelerator={t.accelerator}: {e.problem}") from None
    ids = (device.index,) if device.index is not None else None
    processes = (1 if ids else device_count(t.devices, device.type)) * t.nodes
    threads = t.threads if device.type == "cpu" else 0
    val_every = None if train_images is None else \
        validation_interval(cfg, batches_per_epoch(train_images, cfg.data.batch_size, processes))
    precision = resolve_precision(t.precision, device.type)
    return RunPlan(device.type, precision, processes, threads, ids, val_every,
                   compiles(t.compile, device.type, precision))


def compiles(setting: bool | str, accelerator: str, precision: str) -> bool:
    """``train.compile`` on this device: auto compiles fp32 training on a CPU only, the one case measured to
    gain (13-36% on 2-core AMD and Intel CPUs; under bf16 on both it lost 10-20%; GPUs are unmeasured)."""
    if setting == "auto":
        return accelerator == "cpu" and precision == "32"
    return bool(setting)


def validation_interval(cfg: RunConfig, per_epoch: int) -> int | None:
    """Steps between validations so a run validates about ``train.val_points`` times (a 4-epoch run still
    draws a curve of 10 points); None: once per epoch, which epoch-based runs do at least, and runs of
    unknown length (a wall-clock budget) do alone."""
    if cfg.train.budget and cfg.train.budget_clock == "wall":
        return None
    total = cfg.train.steps or cfg.train.epochs * per_epoch
    every = max(1, total // cfg.train.val_points)
    if every >= per_epoch and not cfg.train.steps:
        return None
    return every


def plan_for(cfg: RunConfig, device: str | None = None) -> RunPlan:
    """The plan a trained model is scored or served with, in one process: the one saved with it where this
    machine has its device; otherwise (or for another ``device``) resolved here, in the precision the run
    trained in where the device type is the same, else in the run's precision setting."""
    saved = cfg.plan
    if saved.accelerator and device is None:
        plan = RunPlan(saved.accelerator, saved.precision, 1, saved.threads or 0,
                       tuple(saved.device_ids) if saved.device_ids else None)
        try:
            resolve_device(plan.device)
            return plan
        except BadValue:
            log.info("the run trained on %s, which this machine lacks; scoring it here instead", saved.accelerator)
    dev = resolve_device(device or "auto")
    precision = saved.precision if saved.precision and saved.accelerator == dev.type else cfg.train.precision
    return RunPlan(dev.type, resolve_precision(precision, dev.type), 1, cfg.train.threads if dev.type == "cpu" else 0,
                   (dev.index,) if dev.index is not None else None)
