"""Value checks beyond types: ranges, sizes, durations, names of splits and runs. Every problem is a ``ConfigError`` that
carries its key, so a config file's error says "config key 'train.lr'" and the CLI's says "--lr"."""

from __future__ import annotations

import re

from seglab.config.schema import RunConfig, factor_range
from seglab.errors import SeglabError
from seglab.naming import name_problem
from seglab.sizes import MAX_SCALE, check_model_size, parse_memory


class ConfigError(SeglabError):
    """A bad value of one config key; ``problem`` says what is wrong with the value alone."""

    def __init__(self, key: str, problem: str):
        super().__init__(f"config key '{key}': {problem}")
        self.key, self.problem = key, problem


def check_choice(key: str, value, allowed) -> None:
    """ConfigError unless ``value`` (each item of a list value) is one of ``allowed``, which are listed. Called by
    the module that owns each dict of names (losses, layouts, ...): config itself knows no names."""
    for item in value if isinstance(value, list) else [value]:
        if item not in allowed:
            raise ConfigError(key, f"bad value {item!r}; choose one of {', '.join(allowed)}")


def validate(cfg: RunConfig) -> None:
    """Raise ConfigError for the first value no run could use: types, ranges, sizes, durations. Names (of
    losses, layouts, devices, ...) are checked by the modules that own them (training.plan.check_names)."""
    scales = cfg.data.scale_range
    if len(scales) != 2 or not 0 < scales[0] <= scales[1] <= MAX_SCALE:
        raise ConfigError("data.scale_range", f"bad value {scales!r}; give the lowest and highest scale, "
                                              f"0 < lowest <= highest <= {MAX_SCALE:g}, e.g. 0.5,2")
    if not 0 <= cfg.data.rotate <= 180:
        raise ConfigError("data.rotate", f"bad value {cfg.data.rotate:g}; degrees from 0 (off) to 180, e.g. 10")
    for key in ("brightness", "contrast"):
        value = getattr(cfg.data, key)
        span = factor_range(value)
        if span is not None and (len(span) != 2 or not 0 <= span[0] <= span[1]):
            raise ConfigError(f"data.{key}", f"bad value {value!r}; give a factor range low,high with "
                                             "0 <= low <= high (e.g. 0.8,1.2), or one number b <= 1 for 1-b,1+b")
    if isinstance(cfg.data.eval_size, str) and cfg.data.eval_size != "native":
        raise ConfigError("data.eval_size", f"bad value {cfg.data.eval_size!r}; use native, HxW, or leave it "
                                            "empty for the training size")
    if isinstance(cfg.data.cache, str) and cfg.data.cache != "auto":
        raise ConfigError("data.cache", f"bad value {cfg.data.cache!r}; use true, false or auto")
    if cfg.data.memory_budget is not None:
        try:
            parse_memory(cfg.data.memory_budget)
        except ValueError as e:
            raise ConfigError("data.memory_budget", str(e)) from None
    for key in ("size", "eval_size"):
        size = getattr(cfg.data, key)
        if isinstance(size, tuple):
            try:
                check_model_size(size)
            except ValueError as e:
                raise ConfigError(f"data.{key}", str(e)) from None
    t = cfg.train
    positive = {"data.batch_size": cfg.data.batch_size, "train.lr": t.lr, "train.val_points": t.val_points,
                "train.nodes": t.nodes}
    if t.budget is None and t.steps is None:
        positive["train.epochs"] = t.epochs
    if t.steps is not None:
        positive["train.steps"] = t.steps
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(key, f"must be > 0, got {value}")
    nonneg = {"data.workers": cfg.data.workers, "train.weight_decay": t.weight_decay, "train.early_stop": t.early_stop,
              "train.ce_weight": t.ce_weight, "train.dice_weight": t.dice_weight,
              "train.lovasz_weight": t.lovasz_weight,
              "train.checkpoint_minutes": t.checkpoint_minutes}
    for key, value in nonneg.items():
        if value < 0:
            raise ConfigError(key, f"must be >= 0, got {value}")
    if not re.fullmatch(r"auto|-1|\d+(,\d+)*", str(t.devices).strip()):
        raise ConfigError("train.devices", f"bad value {t.devices!r}; use auto, a count (e.g. 2), -1 for all, "
                                           "or device indices like 0,1")
    if (isinstance(t.threads, str) and t.threads != "auto") or (isinstance(t.threads, int) and t.threads < 0):
        raise ConfigError("train.threads", f"bad value {t.threads!r}; use 0 (all cores), a count, or auto")
    if isinstance(t.compile, str) and t.compile != "auto":
        raise ConfigError("train.compile", f"bad value {t.compile!r}; use true, false or auto")
    if t.scheduler_interval == "epoch" and t.budget is not None and t.budget_clock == "wall":
        raise ConfigError("train.scheduler_interval", "epoch needs a run of known length (epochs, steps or a "
                                                      "compute budget), not train.budget_clock: wall")
    if not 0 <= t.warmup < 1:
        raise ConfigError("train.warmup", f"a fraction of the run in [0, 1), got {t.warmup}")
    if isinstance(t.class_weights, str) and t.class_weights != "median-frequency":
        raise ConfigError("train.class_weights", f"{t.class_weights!r}; use median-frequency or numbers like "
                                                 "1,2.5,0.7")
    for key in ("budget", "max_time"):
        value = getattr(t, key)  # a Duration: parsed where it was read
        if value is not None and value <= 0:
            raise ConfigError(f"train.{key}", "must be a positive duration")
    if not re.fullmatch(r"[\w-]+(\+[\w-]+)*", cfg.data.train_splits):
        raise ConfigError("data.train_splits", f"{cfg.data.train_splits!r}; name splits joined by +, "
                                               "e.g. train or train+val")
    if "test" in cfg.data.trains_on():
        raise ConfigError("data.train_splits", "includes test, the split every run is scored on; a model that "
                                               "saw it scores nothing worth reporting")
    if not 0 < cfg.eval.boundary_fraction <= 0.5:
        raise ConfigError("eval.boundary_fraction", f"bad value {cfg.eval.boundary_fraction!r}; a fraction of the "
                                                    "image diagonal in (0, 0.5], e.g. 0.02")
    if not 1 <= cfg.eval.calibration_bins <= 1000:
        raise ConfigError("eval.calibration_bins", f"bad value {cfg.eval.calibration_bins!r}; a count of bins "
                                                   "from 1 to 1000, e.g. 15")
    if not 1 <= cfg.eval.calibration_stride <= 64:
        raise ConfigError("eval.calibration_stride", f"bad value {cfg.eval.calibration_stride!r}; every Nth row "
                                                     "and column, N from 1 (all pixels) to 64, e.g. 2")
    if cfg.name is not None and name_problem(cfg.name):
        raise ConfigError("name", f"{cfg.name!r} {name_problem(cfg.name)}")
