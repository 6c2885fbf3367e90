"""Study files: shared defaults, then named runs that override only what differs.

    name: quick
    description: CNN vs transformer, each with one improvement
    repeats: 1                 # seeds per configuration
    primary_metric: miou       # what comparisons and the best configuration rest on: miou | dice |
                               # boundary_iou | pixel_accuracy (study/primary.py)
    preset: camvid-cpu-60m     # optional: start every run from a built-in preset's config
    defaults:                  # RunConfig keys shared by every run (over the preset's)
      train: {budget: 3m}
    runs:
      - name: cnn
        group: cnn
        baseline: true
        model: {spec: unet:efficientnet-lite0}
      - name: cnn+recipe
        group: cnn
        train: {optimizer: adamw, scheduler: cosine}
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from seglab.config import RunConfig, from_dict, merge, preset_path, read_yaml
from seglab.errors import SeglabError, first_line, read_user_text
from seglab.naming import name_problem
from seglab.study import primary
from seglab.training.plan import check_names

STUDY_KEYS = ("name", "description", "preset", "repeats", "primary_metric", "defaults", "runs")
RUN_KEYS = ("name", "group", "baseline", "description", "data", "model", "train")


@dataclass
class StudyRun:
    name: str  # unique run name (with -s<seed> when repeated)
    config_name: str  # the configuration's name, shared by its repeats
    group: str
    baseline: bool
    seed: int
    description: str
    config: RunConfig


@dataclass
class Study:
    name: str
    description: str
    source: str  # the study file's text, saved with the study
    runs: list[StudyRun]
    primary_metric: str = primary.DEFAULT  # what its comparisons and best configuration rest on


REPORTED = ".reported.yaml"  # beside a study: its notebook's own figures (study/notebook_report.py), not a study


def builtin_studies() -> dict[str, Path]:
    folder = resources.files("seglab") / "studies"
    return {Path(str(p)).stem: Path(str(p)) for p in folder.iterdir()
            if str(p).endswith(".yaml") and not str(p).endswith(REPORTED)}


def resolve_study_file(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.is_file():
            raise SeglabError(f"{p}: study file not found")
        return p
    builtin = builtin_studies()
    if name_or_path not in builtin:
        raise SeglabError(f"unknown study {name_or_path!r}; built-in studies: {', '.join(sorted(builtin))}, "
                          f"or give a path to a study YAML")
    return builtin[name_or_path]


def load_study(name_or_path: str, data_root: str | None = None, repeats: int | None = None) -> Study:
    """Parse and validate a study: every run's merged config is checked before anything trains."""
    path = resolve_study_file(name_or_path)
    raw, text, name = read_spec_file(path, STUDY_KEYS, "study")
    where = str(path)
    if repeats is not None:
        where_repeats = "--repeats"
    else:
        repeats, where_repeats = raw.get("repeats", 1), f"{where}: 'repeats'"
    if not isinstance(repeats, int) or isinstance(repeats, bool) or repeats < 1:
        raise SeglabError(f"{where_repeats} must be a whole number >= 1, got {repeats!r}")
    try:
        chosen = primary.metric(raw.get("primary_metric")).name
    except ValueError as e:
        raise SeglabError(f"{where}: 'primary_metric' {e}") from None
    defaults = raw.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise SeglabError(f"{where}: 'defaults' must be a mapping of config keys")
    if raw.get("preset") is not None:  # the study measures a built-in recipe: its keys come first
        try:
            base = read_yaml(preset_path(str(raw["preset"])))
        except SeglabError as e:
            raise SeglabError(f"{where}: 'preset': {e}") from None
        base.pop("name", None)
        defaults = merge(base, defaults)
    entries = raw.get("runs")
    if not isinstance(entries, list) or not entries:
        raise SeglabError(f"{where}: 'runs' must be a non-empty list of runs")
    if data_root:
        defaults = merge(defaults, {"data": {"root": data_root}})

    runs: list[StudyRun] = []
    seen: set[str] = set()
    baselines: dict[str, str] = {}
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not entry.get("name"):
            raise SeglabError(f"{where}: run #{i + 1} needs a 'name'")
        cname = str(entry["name"])
        here = f"{where}: run '{cname}'"
        if name_problem(cname):  # it names a folder: stay inside
            raise SeglabError(f"{here}: a run name {name_problem(cname)}")
        if cname in seen:
            raise SeglabError(f"{where}: two runs are named '{cname}'; run names must be unique")
        seen.add(cname)
        check_keys(entry, RUN_KEYS, here)
        group = str(entry.get("group", "default"))
        baseline = entry.get("baseline", False)
        if not isinstance(baseline, bool):
            raise SeglabError(f"{here}: 'baseline' must be true or false")
        if baseline:
            if group in baselines:
                raise SeglabError(f"{here}: group '{group}' already has baseline '{baselines[group]}'")
            baselines[group] = cname
        overrides = {k: entry[k] for k in ("data", "model", "train") if k in entry}
        merged = merge(defaults, overrides)
        try:
            config = check_names(from_dict(merged))  # every run's names too, before any run trains
        except SeglabError as e:
            raise SeglabError(f"{here}: {e}") from None
        for r in range(repeats):
            seed = config.train.seed + r
            run_name = cname if repeats == 1 else f"{cname}-s{seed}"
            run_cfg = from_dict(merge(merged, {"name": run_name, "train": {"seed": seed}}))
            runs.append(StudyRun(run_name, cname, group, baseline, seed, str(entry.get("description", "")),
                                 run_cfg))
    return Study(name, str(raw.get("description", "")).strip(), text, runs, chosen)


def read_spec_file(path: Path, keys: tuple, kind: str) -> tuple[dict, str, str]:
    """A study or tune file: its mapping (top-level keys checked), its text and its name (the file's stem
    unless it names itself), each problem one line naming the file."""
    text = read_user_text(path)
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise SeglabError(f"{path}: not valid YAML ({first_line(e)})") from None
    check_keys(raw, keys, str(path))
    name = str(raw.get("name") or path.stem)
    if name_problem(name):
        raise SeglabError(f"{path}: {kind} name {name!r} {name_problem(name)}")
    return raw, text, name


def check_keys(d, allowed, where):
    """Unknown keys, with the closest valid one where there is one."""
    if not isinstance(d, dict):
        raise SeglabError(f"{where}: expected a mapping")
    for key in d:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f"; valid keys: {', '.join(allowed)}"
            raise SeglabError(f"{where}: unknown key '{key}'{hint}")
