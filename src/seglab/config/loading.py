"""Loading a RunConfig: defaults, then a YAML file, then overrides (``--set`` and CLI options); every key
and value is checked, so a typo never silently trains the default."""

from __future__ import annotations

import difflib
import math
import re
import types
import typing
from dataclasses import fields, is_dataclass
from pathlib import Path

import yaml

from seglab.config.checks import ConfigError, validate
from seglab.config.durations import Duration
from seglab.config.schema import RunConfig
from seglab.errors import SeglabError, first_line, read_user_text
from seglab.sizes import parse_size


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> RunConfig:
    """Defaults, then the YAML file, then ``overrides`` (a nested or dotted dict): later wins."""
    raw: dict = read_yaml(path) if path is not None else {}
    return from_dict(merge(raw, expand_dotted(overrides or {})))


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
        *parents, last = key.split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return out


def merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def from_dict(d: dict) -> RunConfig:
    """A checked RunConfig from nested plain values (YAML, a checkpoint's copy)."""
    cfg = _build(RunConfig, d, prefix="")
    validate(cfg)
    return cfg


def parse_override(text: str) -> tuple[str, object]:
    """``train.lr=3e-4`` -> ("train.lr", 0.0003); values are parsed as YAML scalars/lists."""
    if "=" not in text:
        raise SeglabError(f"--set {text!r}: expected KEY=VALUE, e.g. --set train.lr=3e-4")
    key, value = text.split("=", 1)
    return key.strip(), parse_scalar(value)


def parse_scalar(value: str):
    """A command-line value as YAML reads it, except that 3e-4 is a number (YAML 1.1 reads it as text)."""
    if re.fullmatch(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*", value) and not value.strip().isdigit():
        return float(value)
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError:
        return value


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
        if name in d:
            tp = hints[name]
            kwargs[name] = _build(tp, d[name] or {}, f"{prefix}{name}.") if is_dataclass(tp) else \
                coerce(d[name], tp, f"{prefix}{name}")
    return cls(**kwargs)


def coerce(value, tp, key: str):
    """Check ``value`` against the annotation ``tp``; convert where the intent is unambiguous."""
    union = isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union
    options = typing.get_args(tp) if union else (tp,)
    if value is None:
        if type(None) in options:
            return None
        raise ConfigError(key, "must not be empty")
    if Duration in options:  # text parsed here, once; the code reads seconds
        try:
            return Duration(value)
        except (TypeError, ValueError) as e:
            raise ConfigError(key, str(e)) from None
    errors = []
    for opt in options:
        if opt is type(None):
            continue
        try:
            return _coerce_one(value, opt)
        except (TypeError, ValueError) as e:
            listy = isinstance(value, (list, tuple)) or (isinstance(value, str) and "," in value)
            if listy and typing.get_origin(opt) in (list, tuple):  # a list with a bad item ("1,nan"): say so
                raise ConfigError(key, f"bad value {value!r} ({e})") from None
            errors.append(str(e))
    raise ConfigError(key, f"bad value {value!r} ({errors[0] if errors else 'wrong type'})")


def _coerce_one(value, tp):
    origin = typing.get_origin(tp)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise TypeError("expected true or false")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, str)) or not re.fullmatch(r"\s*-?\d+\s*", str(value)):
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
    if origin is list:  # [1, 2.5] or "1,2.5"; ["csv", "mlflow"] or "csv,mlflow"
        item = (typing.get_args(tp) or (str,))[0]
        if isinstance(value, str) and ("," in value or item is str):
            value = [v.strip() for v in value.split(",")]
        if not isinstance(value, (list, tuple)):
            raise TypeError("expected a list")
        return [_coerce_one(v, item) for v in value]
    raise TypeError(f"unsupported type {tp}")
