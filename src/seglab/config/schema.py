"""What a run is: four dataclasses (data, model, train, eval) in one ``RunConfig``, each field with its help text,
and the plan it was resolved into (written by seglab, not set by hand).

The fields are the one description of every setting: YAML files and ``--set`` address them by dotted key
(``train.lr``), ``seglab train --help`` lists those marked with a ``cli`` option from the same text, and the
code reads them as typed attributes (``cfg.train.lr``), never by string key. Allowed values of choice keys
are checked by the modules whose dicts implement them (training.plan.check_names).
"""

from __future__ import annotations

import typing
from dataclasses import Field, asdict, dataclass, field, fields, is_dataclass
from pathlib import Path

from seglab.config.durations import Duration
from seglab.errors import BadValue
from seglab.naming import safe_name


def setting(default, help: str, cli: str | None = None, metavar: str | None = None) -> Field:
    """A config field (immutable default) with its help text; ``cli`` names the ``seglab train`` option."""
    return field(default=default, metadata={"help": help, "cli": cli, "metavar": metavar})


@dataclass
class DataConfig:
    root: str | None = setting(None, "Dataset folder (default: $SEGLAB_DATA or ~/.cache/seglab/camvid, "
                                     "downloaded).", cli="--data", metavar="PATH")
    layout: str = setting("auto", "Folder layout: auto detects it.", cli="--layout")
    remap: str | dict | None = setting(None, "Built-in class remap (e.g. camvid6), or {keep: [...], rest: "
                                             "background|void}.", cli="--remap")
    classes_file: str | None = setting(None, "Folder layout: classes.yaml with names, colours, ignore_index.")
    split: list[float] | str | None = setting(
        None, "Data without split folders: train,val,test fractions (e.g. 0.8,0.1,0.1), a split made once by "
              "data.split_seed and kept in splits.json beside the data (reused when present).")
    split_seed: int = setting(0, "Seed of data.split.")
    size: tuple[int, int] = setting((256, 320), "Training crop HxW, multiples of 32 (e.g. 192x256).",
                                    cli="--size", metavar="HxW")
    eval_size: tuple[int, int] | str | None = setting(
        None, "Model input size for evaluation and prediction: HxW, or native (full resolution, padded to /32; "
              "padding unscored); default: the training size. Labels are always scored at native resolution: "
              "logits are upsampled to them, labels never resized.", cli="--eval-size", metavar="HxW|native")
    batch_size: int = setting(8, "Batch size.", cli="--batch")
    workers: int = setting(0, "DataLoader worker processes; 0: none while images are cached in memory (usually "
                              "fastest), and when they stream one per usable core but one (at least 1, at "
                              "most 8).", cli="--workers")
    cache: bool | str = setting("auto", "Keep decoded images in memory, each file read once per run, not per "
                                        "epoch: true, false, or auto: only when they fit data.memory_budget "
                                        "(else they are decoded in DataLoader workers every epoch).")
    memory_budget: str | None = setting(None, "What data.cache: auto may fill with decoded images: a size like "
                                              "4GB, or a share of the memory available at the start like 50%; "
                                              "default: 50%.")
    scale_crop: bool = setting(True, "Random scale (data.scale_range) then crop, instead of a plain resize.")
    scale_range: list[float] = setting((0.5, 2.0), "Lowest and highest random scale of the training crops' "
                                                   "images, e.g. 1,2: thin classes gain from enlarged views.")
    hflip: bool = setting(True, "Random horizontal flips (half the training images).")
    vflip: bool = setting(False, "Random vertical flips (half the training images), image and mask together.")
    rotate: float = setting(0.0, "Random rotation of every training image and its mask by an angle drawn "
                                 "uniformly from -rotate..+rotate degrees; 0: off. Corners the rotation uncovers "
                                 "are black in the image and void in the mask (never learned from).")
    brightness: list[float] | float | None = setting(
        None, "Random brightness of every training image (never the mask): pixels times a factor drawn "
              "uniformly from [low, high], e.g. 0.8,1.2; a single number b means [1-b, 1+b]; empty: off.")
    contrast: list[float] | float | None = setting(
        None, "Random contrast of every training image (never the mask), applied after data.brightness: the "
              "image blended with its mean grey by a factor drawn from [low, high], e.g. 0.8,1.2; a single "
              "number c means [1-c, 1+c]; empty: off.")
    color_jitter: bool = setting(False, "Brightness/contrast/saturation/hue jitter (0.25, 0.25, 0.25, 0.02, "
                                        "on 80% of the images), after the keys above.")
    train_splits: str = setting("train", "Splits the model trains on, joined by +: train+val for a final test "
                                         "number (validation still runs on val, its curve then optimistic, and "
                                         "the run's last weights are scored, not the best on val).")
    tta: str = setting("none", "Test-time augmentation at evaluation and prediction: none; flip averages with "
                               "the mirrored image; flip+scales also at 0.75x and 1.25x (2x or 6x the cost); "
                               "flip+scales:0.75,1,1.5,2 at scales of one's own.")

    def trains_on(self) -> list[str]:
        """The splits the model learns from, e.g. ["train", "val"]."""
        return split_names(self.train_splits)

    def __post_init__(self):
        self.scale_range = list(self.scale_range)  # the default is a tuple: dataclass defaults must not be mutable

    def eval_input_size(self) -> tuple[int, int] | None:
        """(H, W) images are resized to for evaluation and prediction: None for "native", unset: the training
        size (data.size)."""
        return None if self.eval_size == "native" else tuple(self.eval_size or self.size)


@dataclass
class ModelConfig:
    spec: str = setting("unet:resnet34", "arch:encoder for smp (unet:resnet34, segformer:mit_b0, "
                                         "fpn:efficientnet-lite0) or scratch:simplesegnet|unet|vit; "
                                         "arch:encoder:W sets the decoder width (fpn:efficientnet-lite2:64).",
                        cli="--model")
    weights: str = setting("auto", "Encoder weights: auto (imagenet if obtainable, else none, said aloud), "
                                   "imagenet, none, or a file.", cli="--weights")


@dataclass
class TrainConfig:
    epochs: int = setting(20, "Epochs to train (unless steps or budget is set).", cli="--epochs")
    steps: int | None = setting(None, "Exact optimizer steps instead of epochs (a budget is resolved into "
                                      "this at the start).", cli="--steps")
    budget: Duration | None = setting(
        None, "Training budget like 10m, equal work whatever else the machine is doing: one step's "
              "single-threaded CPU time (GPU time on CUDA) is measured before training and the budget becomes a "
              "step count, saved in config.yaml so resume keeps it.", cli="--budget", metavar="DURATION")
    budget_clock: str = setting("compute", "compute (above), or wall: stop when the wall-clock budget is spent.")
    max_time: Duration | None = setting(
        None, "Hard stop like 1h or 00:30:00. With a budget, the budget's steps are also capped at what fits "
              "(wall time per step measured at the start, 5% kept for validations), so the schedule ends as "
              "planned; without one, the schedule is not reshaped.", cli="--max-time", metavar="DURATION")
    val_points: int = setting(10, "Validate at least this often per run, and at least once per epoch.")
    checkpoint_minutes: float = setting(10.0, "Also save last.ckpt every this many minutes of training; 0: "
                                              "only at validations.")
    loss: str = setting("ce", "Loss; every loss ignores void.", cli="--loss")
    ce_weight: float = setting(1.0, "Weight of cross-entropy in dice_ce.")
    dice_weight: float = setting(1.0, "Weight of Dice in dice_ce.")
    lovasz_weight: float = setting(0.0, "Weight of a Lovasz-softmax term (an IoU surrogate) added to the loss; "
                                        "0: none.")
    class_weights: list[float] | str | None = setting(
        None, "Per-class loss weights: median-frequency (from the train labels) or numbers like 1,2.5,0.7.",
        cli="--class-weights")
    optimizer: str = setting("adam", "Optimizer.", cli="--optimizer")
    lr: float = setting(1e-3, "Learning rate (not rescaled by batch size or devices).", cli="--lr")
    weight_decay: float = setting(0.0, "Weight decay.")
    momentum: float = setting(0.9, "SGD momentum.")
    scheduler: str = setting("none", "Learning-rate schedule; cosine and poly span the whole run exactly once.",
                             cli="--scheduler")
    scheduler_interval: str = setting(
        "step", "How often the schedule moves the learning rate: step (every optimizer step, a smooth curve) or "
                "epoch (once per epoch, held through it: epoch e of E trains at the schedule's value at e/E, as "
                "torch's CosineAnnealingLR(T_max=epochs) stepped after each epoch). Not with a wall-clock budget.")
    warmup: float = setting(0.0, "Fraction of the run with linear warm-up.")
    early_stop: int = setting(0, "Stop after this many epochs without a better val mIoU; 0: off.",
                              cli="--early-stop")
    seed: int = setting(0, "Random seed: weights, batches and augmentations.", cli="--seed")
    precision: str = setting("auto", "auto: bf16-mixed on CPUs with bf16 units and on CUDA, else 32; kept for "
                                     "evaluation and prediction.", cli="--precision")
    accelerator: str = setting("auto", "Device type; auto: CUDA when present.", cli="--accelerator")
    devices: str = setting("auto", "Devices per machine: auto, a count, -1 for all, or indices like 0,1. "
                                   "data.batch_size is per device.", cli="--devices")
    nodes: int = setting(1, "Machines the run spans (torchrun or SLURM start one process per device on each).",
                         cli="--nodes")
    strategy: str = setting("auto", "How several devices share the run: ddp (distributed data parallel) or "
                                    "ddp_spawn; auto: Lightning's choice.", cli="--strategy")
    loggers: list[str] = setting(("csv",), "Experiment trackers, comma-separated: csv (logs/ in the run folder) is "
                                           "always kept; tensorboard, mlflow and wandb are optional installs, the "
                                           "seglab extras of the same names.", cli="--loggers")
    channels_last: bool = setting(True, "Channels-last memory: faster convolutions on CPU and tensor cores.")
    compile: bool | str = setting(
        False, "torch.compile the network for training steps (validation and scoring run it as it is): true, "
               "false, or auto: on for fp32 training on a CPU, off under bf16 and on GPUs. On 2-core CPUs in "
               "fp32 it made the quality preset's step 13-36% faster; in bf16, 10-20% slower (docs: "
               "benchmarks). The first step pays for compiling: up to two minutes on a 2-core CPU, within "
               "the run's time.")
    threads: int | str = setting(0, "CPU threads: 0 = one per usable core; N = exactly N; auto = measure 1 vs "
                                    "all cores during training and keep the faster.")
    deterministic: bool = setting(False, "Repeatable CUDA runs at some speed cost (CPU runs repeat anyway).")

    def __post_init__(self):
        self.loggers = list(self.loggers)  # the default is a tuple: dataclass defaults must not be mutable


@dataclass
class EvalConfig:
    """How a finished model is scored beyond the confusion matrix (seglab.metrics): set per run, recorded with
    every figure it shapes."""

    boundary_fraction: float = setting(0.02, "Boundary IoU's band width d as a fraction of the image diagonal "
                                             "(at least 1 pixel; 0.02 as in Cheng et al.'s reference code).")
    calibration_bins: int = setting(15, "Equal-width confidence bins of the expected calibration error.")
    calibration_stride: int = setting(2, "ECE and the test loss count every Nth row and column of the labelled "
                                         "pixels (2: a quarter of them; 1: all). IoU, Dice and Boundary IoU "
                                         "always count every pixel.")
    temperature: bool = setting(True, "Fit a temperature on val (never test) and report the calibrated ECE.")


@dataclass
class PlanConfig:
    """How the run computed, written by ``seglab train`` (training.plan): read back by resume, evaluate, predict
    and the benchmarks. Not a setting: a new run resolves it afresh from the train section and the machine."""

    accelerator: str | None = setting(None, "Device type the run trained on: cpu, cuda or mps.")
    precision: str | None = setting(None, "Precision it trained in: 32, bf16-mixed or 16-mixed.")
    processes: int | None = setting(None, "Data-parallel processes (devices x nodes).")
    threads: int | str | None = setting(None, "CPU threads: a count, 0 (one per usable core) or auto.")
    compile: bool | None = setting(None, "Whether training steps ran the network through torch.compile.")
    device_ids: list[int] | None = setting(None, "The card of a cuda:N run.")
    val_every: int | None = setting(None, "Optimizer steps between validations; empty: once per epoch.")
    calibration: dict | None = setting(None, "What a compute budget was converted into steps with.")


@dataclass
class RunConfig:
    name: str | None = setting(None, "Run folder name (default: derived from the setup, e.g. "
                                     "unet-resnet34_192x256_bs8_3ep).", cli="--name")
    out_dir: str = setting("runs", "Folder that holds run folders.", cli="--out", metavar="PATH")
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    plan: PlanConfig = field(default_factory=PlanConfig)

    def to_dict(self) -> dict:
        """Plain YAML-able values (tuples as lists), as config.yaml and checkpoints keep them."""
        def plain(v):
            return [plain(x) for x in v] if isinstance(v, (tuple, list)) else \
                {k: plain(x) for k, x in v.items()} if isinstance(v, dict) else \
                str(v) if isinstance(v, Duration) else v  # durations as written: "4m"
        return plain(asdict(self))

    def run_name(self) -> str:
        if self.name:
            return self.name
        h, w = self.data.size
        length = self.train.budget or (f"{self.train.steps}steps" if self.train.steps else f"{self.train.epochs}ep")
        return safe_name(f"{self.model.spec}_{h}x{w}_bs{self.data.batch_size}_{length}")


def config_fields(cls=RunConfig, prefix: str = ""):
    """(dotted key, Field, type) of every setting, sections flattened: ("train.lr", Field, float)."""
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        if is_dataclass(hints[f.name]):
            yield from config_fields(hints[f.name], f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", f, hints[f.name]


def split_names(train_splits: str) -> list[str]:
    """The one reading of ``data.train_splits``: "train+val" -> ["train", "val"]."""
    return str(train_splits).split("+")


def factor_range(value: list[float] | float | None) -> tuple[float, float] | None:
    """The one reading of ``data.brightness`` / ``data.contrast``: [0.8, 1.2] -> (0.8, 1.2); 0.2 -> (0.8, 1.2);
    None -> None (off). The range is checked by config.checks."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return tuple(float(v) for v in value) if len(value) == 2 else tuple(value)
    return 1 - float(value), 1 + float(value)


PRESETS_DIR = Path(__file__).resolve().parent.parent / "presets"


def preset_path(name: str) -> Path:
    """The built-in run config called ``name`` (``seglab train --preset camvid-cpu-60m``)."""
    path = PRESETS_DIR / f"{name}.yaml"
    if not path.is_file():
        names = sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))
        raise BadValue("preset", name, f"no such preset; built-in presets: {', '.join(names)}")
    return path
