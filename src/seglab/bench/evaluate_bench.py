"""What issue 24's metrics cost `seglab evaluate`: ``seglab bench evaluate`` times one run's evaluation with
them and without them.

    seglab bench evaluate --data ../shared/camvid --out benchmarks/evaluate.json
    seglab bench evaluate --run runs/<run> --repeats 5

The same ``seglab.evaluate.evaluate`` call is timed both ways: with everything a split's scores now carry
(boundary IoU, calibration and its temperature, test loss, bootstrap intervals) and with ``extras=False``,
which scores only the confusion matrices, as evaluation did before. The two alternate in one process, ABBA
(without, with, with, without, ...), so drift in the machine's load hits both alike, after an untimed
warm-up call that fills the page cache and imports what either needs. Each time is the whole call, as a
user waits for it: reading the checkpoint, decoding the split, the forward passes, scoring and writing the
files; ``scoring_s`` is evaluate's own figure for the loop over the split.

Every call evaluates a fresh copy of the run (its config, classes, run.json and the checkpoint, hard-linked),
so no call sees what an earlier one wrote, and the run given is never written to. A temperature the run
already has for its checkpoint (`seglab train` fits one as it ends) is reused, as `seglab evaluate` reuses it;
``--refit`` adds a third condition whose copies have none, so each such call fits one on val first: what the
first evaluation of a run costs. Without ``--run``, a tiny run of the quick study's CNN is trained first (a few steps from random
weights: the cost of evaluating does not depend on how well the model does).
"""

from __future__ import annotations

import inspect
import logging
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from seglab.bench.report import command_line, finish, machine_info, print_table
from seglab.errors import SeglabError

log = logging.getLogger("seglab")
TARGET_RATIO = 1.25  # issue 24: the new metrics may make `seglab evaluate` at most 25% slower
STUDY, STUDY_RUN = "quick", "cnn"  # the run trained when none is given: the quick study's CNN
TRAIN_STEPS = 5
# name -> evaluate's extras=. "with+fit" (--refit) starts each call from a run.json without a temperature, so
# evaluate fits one on val first: what the first evaluation of a run pays (the one `seglab train` ends with).
CONDITIONS = {"without": False, "with": True, "with+fit": True}
# The headline figures of the last "with" call, kept in the report to show the extras were computed.
SHOWN = ("miou", "mean_dice", "pixel_accuracy", "boundary_iou", "ece", "ece_calibrated", "temperature", "loss")


def check_extras_switch() -> None:
    """SeglabError unless this seglab's evaluate takes ``extras`` (the switch issue 24's core adds)."""
    from seglab.evaluate import evaluate

    if "extras" not in inspect.signature(evaluate).parameters:
        raise SeglabError("this seglab's evaluate has no extras= switch (issue 24's metrics), so there is "
                          "nothing to compare; update seglab")


def train_tiny_run(data: str, out: Path, steps: int = TRAIN_STEPS) -> Path:
    """A run of the quick study's CNN (its model, size, batch and loss) trained ``steps`` optimizer steps from
    random weights into ``out``, as `seglab train` leaves it (scored on test, so the temperature is fitted
    as after any training). Random weights: no download, and evaluating costs the same either way."""
    from seglab.config import from_dict, merge
    from seglab.experiment import train
    from seglab.study.spec import load_study
    from seglab.training.plan import check_names

    study = load_study(STUDY, data_root=data)
    base = next(r for r in study.runs if r.config_name == STUDY_RUN).config
    cfg = check_names(from_dict(merge(base.to_dict(), {
        "name": "bench-evaluate", "out_dir": str(out), "model": {"weights": "none"},
        "train": {"budget": None, "steps": steps, "threads": 0, "val_points": 1}})))  # one validation: at the end
    return train(cfg).path


def fresh_copy(target: Path, into: Path, temperature: bool = True) -> Path:
    """What evaluate reads of ``target`` (a run folder or a checkpoint), copied into the new folder ``into``;
    returns the checkpoint to evaluate there. The checkpoint is hard-linked (copied, times kept, across file
    systems), so a temperature stored for it still belongs to it; ``temperature=False`` leaves run.json's
    ``calibration`` out, so evaluate fits one again."""
    from seglab.runs import read_json, resolve_checkpoint, write_json

    ckpt, run = resolve_checkpoint(target)
    into.mkdir(parents=True)
    if run is None:  # a lone checkpoint: evaluate writes metrics.json beside it, so beside the copy
        return _link(ckpt, into / ckpt.name)
    for path in (run.config, run.path / "classes.json", run.info):
        if path.is_file():
            shutil.copy2(path, into / path.name)
    if not temperature and (into / run.info.name).is_file():
        info = read_json(into / run.info.name)
        info.pop("calibration", None)
        write_json(into / run.info.name, info)
    (into / "checkpoints").mkdir()
    return _link(ckpt, into / "checkpoints" / ckpt.name)


def _link(src: Path, dst: Path) -> Path:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    return dst


def order(repeats: int, names: tuple[str, ...] = ("without", "with")) -> list[str]:
    """ABBA: without, with, with, without, ... (with three conditions ABC CBA ...): each repeat reverses the
    last, so a steady drift in load adds to every median alike."""
    return [name for r in range(repeats) for name in (names if r % 2 == 0 else names[::-1])]


def run_evaluate_bench(data: str | None = None, run: str | Path | None = None, split: str = "test",
                       repeats: int = 3, warmup: int = 1, batch_size: int | None = None,
                       steps: int = TRAIN_STEPS, refit: bool = False, out: Path | None = None,
                       show: bool = True) -> dict:
    """Time ``evaluate(run, split, extras=...)`` with and without issue 24's metrics (module docstring);
    ``refit`` adds the condition "with+fit": with them, fitting the temperature on val first."""
    from seglab.evaluate import evaluate

    check_extras_switch()
    if run is None and data is None:
        raise SeglabError("--data: the dataset to train the run to time on (or give --run)")
    machine, command = machine_info(), command_line()
    names = ("without", "with", "with+fit") if refit else ("without", "with")
    with tempfile.TemporaryDirectory(prefix="seglab-bench-evaluate-") as tmp:
        work = Path(tmp)
        trained_here = None
        if run is None:
            t0 = time.monotonic()
            run = train_tiny_run(data, work / "trained", steps)
            trained_here = {"study": STUDY, "run": STUDY_RUN, "steps": steps, "weights": "none",
                            "seconds": round(time.monotonic() - t0, 1)}
        target = Path(run)
        temperature_before = _recorded_temperature(target)
        calls: list[dict] = []

        def call(name: str, timed: bool) -> dict:
            folder = work / f"call{len(calls)}"
            copy = fresh_copy(target, folder, temperature=name != "with+fit")
            t0 = time.perf_counter()
            metrics = evaluate(copy, split=split, data_root=data, batch_size=batch_size, quiet=True,
                               extras=CONDITIONS[name])
            seconds = time.perf_counter() - t0
            calls.append({"condition": name, "timed": timed, "seconds": round(seconds, 3),
                          "scoring_s": metrics.get("seconds")})
            shutil.rmtree(folder)
            return metrics

        for _ in range(warmup):
            call("with", timed=False)
        last_with = {}
        for name in order(repeats, names):
            metrics = call(name, timed=True)
            last_with = metrics if name == "with" else last_with
    summary = {name: _summary([c for c in calls if c["timed"] and c["condition"] == name]) for name in names}
    ratio = summary["with"]["median_s"] / summary["without"]["median_s"]
    refit_ratio = summary["with+fit"]["median_s"] / summary["without"]["median_s"] if refit else None
    scoring = [summary[n]["scoring_median_s"] for n in ("with", "without")]
    report = {
        "benchmark": "evaluate", "run": str(run) if trained_here is None else "trained here, in a temporary folder",
        "trained_here": trained_here, "split": split,
        "images": last_with.get("num_images"), "data": (last_with.get("data") or {}).get("root"),
        "repeats": repeats, "warmup": warmup, "order": " ".join(order(repeats, names)),
        "temperature_in_run_json": temperature_before,
        "calls": calls, **summary, "ratio": round(ratio, 4),
        "ratio_with_fit": None if refit_ratio is None else round(refit_ratio, 4),
        "scoring_ratio": round(scoring[0] / scoring[1], 4) if all(scoring) else None,
        "target_ratio": TARGET_RATIO, "meets_target": ratio <= TARGET_RATIO,
        "metrics_with": {k: last_with.get(k) for k in SHOWN if k in last_with},
        "command": command, "machine": machine}
    finish(report, out, _print if show else None)
    return report


def _recorded_temperature(target: Path):
    """run.json's calibration.temperature for ``target`` (None when it has none or lies outside a run)."""
    from seglab.runs import resolve_checkpoint

    run = resolve_checkpoint(target)[1]
    calibration = run.read_info().get("calibration") if run is not None else None
    return calibration.get("temperature") if isinstance(calibration, dict) else None


def _summary(calls: list[dict]) -> dict:
    seconds = [c["seconds"] for c in calls]
    scoring = [c["scoring_s"] for c in calls if c["scoring_s"] is not None]
    return {"seconds": seconds, "median_s": round(statistics.median(seconds), 3),
            "scoring_median_s": round(statistics.median(scoring), 3) if scoring else None}


def _print(report: dict) -> None:
    rows = [[name, report[name]["median_s"], report[name]["scoring_median_s"],
             " ".join(f"{s:.1f}" for s in report[name]["seconds"])] for name in CONDITIONS if name in report]
    fit = (f"; with+fit / without: {report['ratio_with_fit']:.3f}" if report["ratio_with_fit"] is not None
           else "")
    m = report["machine"]
    print_table(f"seglab evaluate on {report['images']} {report['split']} images, with and without issue 24's "
                "metrics", ["metrics", "median s", "scoring median s", "each call s"], rows,
                footer=f"with / without: {report['ratio']:.3f} (target <= {TARGET_RATIO}: "
                       f"{'met' if report['meets_target'] else 'NOT met'}){fit}; {m['cpu']}, {m['threads']} threads, "
                       f"load {m['load_average_start']} -> {m['load_average_end']}")
