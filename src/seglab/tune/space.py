"""Tune files: what a search starts from, what it varies, and how it spends its budget.

    name: quick-cnn
    base: {study: quick, run: cnn}       # or {preset: camvid-cpu-60m}, or {config: my.yaml}; set: {key: value}
    metric: miou                          # the val metric the search maximises (study/primary.py)
    trials: 16                            # --trials overrides
    batch: 4                              # trials sampled together (the same trials whatever --jobs is)
    rungs: 3                              # successive-halving rungs; the last is the base's full budget
    reduction: 3                          # 1 in `reduction` trials of a rung goes on to the next
    finalists: 3                          # the top trials re-trained ...
    seeds: 2                              # ... with this many fresh seeds each, at the full budget
    params:
      train.lr: {log_uniform: [1.0e-4, 1.0e-2]}
      train.weight_decay: {log_uniform: [1.0e-6, 1.0e-2], when: {train.optimizer: adamw}}
      train.optimizer: {choice: [adam, adamw]}
      data.scale_range: {choice: [[0.75, 1.25], [0.5, 2.0]], when: {data.scale_crop: true}}

A parameter is any RunConfig key, spelled as ``--set`` spells it. Its distribution is one of ``uniform`` and
``log_uniform`` (floats, ``[low, high]``), ``int`` (``[low, high]``, ``log: true`` optional) or ``choice`` (a
list of values of the key's type; lists, such as a scale range, are values too). ``when`` makes a parameter
conditional on earlier ones: it is only drawn (and only set) when each named parameter has the given value
(or one of a list of values). Every range and every choice is checked against the config's own validation
before anything trains, so a typo is one line, exit 2, not trial 9's failure.
"""

from __future__ import annotations

import difflib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from seglab.config import config_fields, expand_dotted, from_dict, merge, preset_path, read_yaml
from seglab.errors import SeglabError, read_user_text
from seglab.study import primary
from seglab.study.spec import check_keys, read_spec_file

TUNE_KEYS = ("name", "description", "base", "metric", "trials", "batch", "rungs", "reduction", "finalists",
             "seeds", "seed", "params")
BASE_KEYS = ("study", "run", "preset", "config", "set")
KINDS = ("uniform", "log_uniform", "int", "choice")
PARAM_KEYS = (*KINDS, "log", "step", "when")
FIELDS = {key: tp for key, _, tp in config_fields()}
FIXED = {"name", "out_dir", "train.seed", "train.steps", "data.root"}  # set by seglab tune itself, per trial


@dataclass(frozen=True)
class Param:
    """One dimension of the search: a config key and its distribution."""

    key: str
    kind: str  # uniform | log_uniform | int | choice
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: int | None = None
    values: tuple = ()  # choice: the values as the config takes them
    when: dict = field(default_factory=dict)  # {param key: tuple of values} that must all hold

    @property
    def labels(self) -> tuple:
        """The choices as Optuna stores them (it takes scalars only): a list value as its JSON text."""
        return tuple(_label(v) for v in self.values)

    def value_of(self, drawn):
        """The config value of what Optuna drew (a choice's label back to its value)."""
        if self.kind == "choice":
            return self.values[self.labels.index(drawn)]
        return drawn

    def applies(self, chosen: dict) -> bool:
        return all(_label(chosen.get(k, _MISSING)) in {_label(v) for v in vs} for k, vs in self.when.items())


_MISSING = object()


def _label(value):
    if value is _MISSING:
        return "\0missing"
    return json.dumps(value) if isinstance(value, (list, tuple, dict)) else value


@dataclass
class TuneSpec:
    name: str
    description: str
    source: str  # the tune file's text, saved in the tune folder
    base: dict  # the base config as nested plain values (without data.root when --data gives it)
    params: list[Param]
    metric: str = primary.DEFAULT
    trials: int = 16
    batch: int = 4
    rungs: int = 3
    reduction: int = 3
    finalists: int = 3
    seeds: int = 2
    seed: int = 0

    def config(self, overrides: dict, name: str, out_dir: str | Path, seed: int | None = None):
        """The RunConfig of one trial or re-run: the base with ``overrides`` (dotted keys) on top."""
        extra = {"name": name, "out_dir": str(out_dir)}
        if seed is not None:
            extra["train"] = {"seed": seed}
        return from_dict(merge(merge(self.base, expand_dotted(dict(overrides))), extra))


BUILT_IN = Path(__file__).resolve().parent.parent / "tunes"


def built_in_tunes() -> list[str]:
    return sorted(p.stem for p in BUILT_IN.glob("*.yaml"))


def resolve_tune_file(name: str | Path) -> Path:
    """A tune file's path: a YAML path as given, or the name of a built-in tune (src/seglab/tunes/)."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    if (BUILT_IN / f"{name}.yaml").is_file():
        return BUILT_IN / f"{name}.yaml"
    close = difflib.get_close_matches(str(name), built_in_tunes(), n=1)
    raise SeglabError(f"{name}: no such tune file or built-in tune"
                      + (f" (did you mean '{close[0]}'?)" if close else f"; built-in: {', '.join(built_in_tunes())}"))


def load_tune(path: str | Path, data_root: str | None = None, trials: int | None = None) -> TuneSpec:
    """Parse and check a tune file: its keys, its base config, and every range and choice of every parameter."""
    path = Path(path)
    if not path.is_file():
        raise SeglabError(f"{path}: tune file not found")
    raw, text, name = read_spec_file(path, TUNE_KEYS, "tune")
    where = str(path)
    base = _base(raw.get("base") or {}, f"{where}: 'base'")
    if data_root:
        base = merge(base, {"data": {"root": data_root}})
    try:
        from seglab.training.plan import check_names

        cfg = check_names(from_dict(base))
    except SeglabError as e:
        raise SeglabError(f"{where}: 'base': {e}") from None
    t = cfg.train
    if not ((t.budget and t.budget_clock == "compute") or t.steps):
        raise SeglabError(f"{where}: 'base' needs a compute budget or a step count (e.g. set: {{train.budget: 4m}}): "
                          "a rung is a share of a fixed amount of work, which epochs or a wall-clock budget are not")
    try:
        metric = primary.metric(raw.get("metric")).name
    except ValueError as e:
        raise SeglabError(f"{where}: 'metric' {e}") from None
    counts = {}
    for key, default, least in (("trials", 16, 1), ("batch", 4, 1), ("rungs", 3, 1), ("reduction", 3, 2),
                                ("finalists", 3, 1), ("seeds", 2, 1), ("seed", 0, 0)):
        value = raw.get(key, default)
        if key == "trials" and trials is not None:
            value, at = trials, "--trials"
        else:
            at = f"{where}: '{key}'"
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise SeglabError(f"{at} must be a whole number >= {least}, got {value!r}")
        counts[key] = value
    if counts["finalists"] > counts["trials"]:
        raise SeglabError(f"{where}: 'finalists' ({counts['finalists']}) is more than the trials "
                          f"({counts['trials']}); a finalist is one of the trials")
    params = _params(raw.get("params"), base, f"{where}: 'params'")
    return TuneSpec(name, str(raw.get("description", "")).strip(), text, base, params, metric, **counts)


def _base(raw: dict, where: str) -> dict:
    """The base config as nested values: a study's run, a preset or a config file, then ``set``."""
    check_keys(raw, BASE_KEYS, where)
    picked = [k for k in ("study", "preset", "config") if raw.get(k) is not None]
    if len(picked) > 1:
        raise SeglabError(f"{where}: give one of study, preset or config, not {' and '.join(picked)}")
    base: dict = {}
    if raw.get("study") is not None:
        base = _study_run(str(raw["study"]), raw.get("run"), where)
    elif raw.get("run") is not None:
        raise SeglabError(f"{where}: 'run' names a run of a study: give 'study' too")
    elif raw.get("preset") is not None:
        try:
            base = read_yaml(preset_path(str(raw["preset"])))
        except SeglabError as e:
            raise SeglabError(f"{where}: 'preset': {e}") from None
    elif raw.get("config") is not None:
        base = read_yaml(raw["config"])
    base.pop("name", None)
    extra = raw.get("set") or {}
    if not isinstance(extra, dict):
        raise SeglabError(f"{where}: 'set' must be a mapping of config keys, e.g. {{train.budget: 4m}}")
    return merge(base, expand_dotted(extra))


def _study_run(study: str, run: str | None, where: str) -> dict:
    """One run of a study, as the study merges it (its preset, defaults and the run's own keys)."""
    from seglab.study.spec import RUN_KEYS, resolve_study_file

    path = resolve_study_file(study)
    raw = yaml.safe_load(read_user_text(path)) or {}
    base = read_yaml(preset_path(str(raw["preset"]))) if raw.get("preset") else {}
    base = merge(base, raw.get("defaults") or {})
    runs = {str(r.get("name")): r for r in raw.get("runs") or [] if isinstance(r, dict)}
    if run is None:
        raise SeglabError(f"{where}: 'run': which run of study {study}? one of {', '.join(runs)}")
    if str(run) not in runs:
        raise SeglabError(f"{where}: 'run': study {study} has no run {run!r}; its runs: {', '.join(runs)}")
    entry = runs[str(run)]
    return merge(base, {k: entry[k] for k in RUN_KEYS if k in ("data", "model", "train") and k in entry})


def _params(raw, base: dict, where: str) -> list[Param]:
    if not isinstance(raw, dict) or not raw:
        raise SeglabError(f"{where}: give at least one parameter, e.g. train.lr: {{log_uniform: [1.0e-4, 1.0e-2]}}")
    out: list[Param] = []
    for key, spec in raw.items():
        key = str(key)
        here = f"{where}: '{key}'"
        if key not in FIELDS or key in FIXED:
            if key in FIXED:
                raise SeglabError(f"{here}: seglab tune sets {key} itself for every trial; it cannot be searched")
            close = difflib.get_close_matches(key, list(FIELDS), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise SeglabError(f"{here}: unknown config key{hint}")
        check_keys(spec, PARAM_KEYS, here)
        kinds = [k for k in KINDS if k in spec]
        if len(kinds) != 1:
            raise SeglabError(f"{here}: give exactly one of {', '.join(KINDS)}")
        kind = kinds[0]
        when = _when(spec.get("when"), out, here)
        if kind == "choice":
            values = spec["choice"]
            if not isinstance(values, list) or not values:
                raise SeglabError(f"{here}: 'choice' must be a non-empty list of values")
            for v in values:
                _check_value(base, key, v, f"{here}: choice {v!r}")
            if len({json.dumps(_label(v)) for v in values}) < len(values):
                raise SeglabError(f"{here}: 'choice' lists a value twice")
            param = Param(key, kind, values=tuple(values), when=when)
        else:
            bounds = spec[kind]
            if not (isinstance(bounds, list) and len(bounds) == 2 and all(_number(b) for b in bounds)):
                raise SeglabError(f"{here}: '{kind}' must be [low, high], two numbers")
            low, high = bounds
            if kind == "int" and not all(isinstance(b, int) for b in bounds):
                raise SeglabError(f"{here}: 'int' bounds must be whole numbers, got {bounds}")
            if not low < high:
                raise SeglabError(f"{here}: the range [{low}, {high}] is "
                                  f"{'empty' if low == high else 'inverted'}; write [low, high] with low < high")
            log = kind == "log_uniform" or bool(spec.get("log", False))
            if log and low <= 0:
                raise SeglabError(f"{here}: a log-scale range must be above 0, got [{low}, {high}]")
            step = spec.get("step")
            if step is not None and (kind != "int" or not isinstance(step, int) or step < 1 or log):
                raise SeglabError(f"{here}: 'step' is a whole number >= 1 for a linear 'int' range")
            if FIELDS[key] not in (int, float, int | None, float | None):
                raise SeglabError(f"{here}: {key} is not a number; search it with 'choice'")
            if kind == "int" and FIELDS[key] in (float, float | None):
                pass  # an int range over a float key is fine: 3 is 3.0
            elif kind != "int" and FIELDS[key] in (int, int | None):
                raise SeglabError(f"{here}: {key} takes whole numbers; use 'int' instead of '{kind}'")
            for b in (low, high):
                _check_value(base, key, b, f"{here}: bound {b!r}")
            param = Param(key, "int" if kind == "int" else "float", low, high, log, step, when=when)
        out.append(param)
    return out


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _when(raw, earlier: list[Param], where: str) -> dict:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not raw:
        raise SeglabError(f"{where}: 'when' must map earlier parameters to values, e.g. when: {{train.optimizer: adamw}}")
    known = {p.key: p for p in earlier}
    out = {}
    for key, values in raw.items():
        if key not in known:
            raise SeglabError(f"{where}: 'when' names {key!r}, which is not a parameter listed before it")
        param = known[key]
        # one value, or a list of alternatives (a list that is itself one of the choices is one value)
        alternatives = (values,) if not isinstance(values, list) or _label(values) in param.labels else tuple(values)
        if param.kind == "choice":
            for v in alternatives:
                if _label(v) not in param.labels:
                    raise SeglabError(f"{where}: 'when' {key}: {v!r} is not one of its choices "
                                      f"({', '.join(map(str, param.labels))}); the condition could never hold")
        out[key] = alternatives
    return out


def _check_value(base: dict, key: str, value, where: str) -> None:
    """The config's own check of one value for ``key`` (its type and range), as a one-line error here."""
    from seglab.training.plan import check_names  # names (losses, optimizers, ...) are their owners' to check

    try:
        check_names(from_dict(merge(base, expand_dotted({key: value}))))
    except SeglabError as e:
        raise SeglabError(f"{where}: {e}") from None
