"""The report section "The notebook reported — seglab measured", for a study that ships its notebook's figures.

A built-in study with a ``studies/<name>.reported.yaml`` beside it (seed000, seed001) gets, for every run, the
figure its source notebook printed, the same run re-measured with the notebook's own metric (its bugs
reproduced by ``study/notebook_bugs.py``, the only module that imports them) and seglab's correct figure
(metrics.json). The notebook's metric is re-measured as the notebook scored: the final checkpoint's
predictions on test at the notebook's image size, in the notebook's test batches, against labels read the
way the notebook read them. Between the two, each bug is fixed in turn, so one sentence per bug can say how
far it moved the number, and the steps add up to the whole difference.

The re-measurement needs the checkpoint and the data; it is kept in ``report_files/notebook_measured.json``,
keyed by the checkpoint files, so a rebuilt report does not run the models again.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import yaml

from seglab.constants import IGNORE_INDEX
from seglab.errors import SeglabError, first_line
from seglab.runs import write_text
from seglab.sizes import parse_size
from seglab.study import notebook_bugs as bugs
from seglab.study.compare import StudyResults
from seglab.study.records import RunRecord
from seglab.study.report_tables import esc, md_table
from seglab.study.spec import REPORTED

TITLE = "The notebook reported — seglab measured"
CACHE = "notebook_measured.json"
METRIC_NAMES = {"dice": "Dice", "miou": "mIoU", "pixel_accuracy": "pixel accuracy", "loss": "test loss"}
CORRECT_KEYS = {"dice": "mean_dice", "miou": "miou", "pixel_accuracy": "pixel_accuracy"}

# Per notebook: the steps from its metric to seglab's, each fixing one thing, as (key, what is fixed). The
# first key is the notebook's metric, the last seglab's (metrics.json); each sentence reports one step.
STEPS = {
    "seed000": [("notebook", None),
                ("labels", ("Reading CamVid's colour masks as grayscale (of the 32 colours only car's grey value is a "
                            "key of the notebook's MAP, so its 6 classes were car against everything else)")),
                ("split", ("Averaging Dice over batches of {batch} with a class absent from a batch counted as a "
                           "perfect 1 (instead of one confusion matrix over the split, absent classes left out)")),
                ("correct", ("Scoring at {size} instead of the native labels (the notebook's resolution, not a bug "
                             "of its metric)"))],
    "seed001": [("notebook", None),
                ("void", "Scoring void as a class (in the mean IoU and in the pixel accuracy)"),
                ("classes", ("Scoring 32 classes for CamVid's 12 labels (torchmetrics leaves out a class absent from "
                             "labels and predictions, so this costs only the non-existent classes a model predicts; "
                             "seglab's models predict CamVid's 11 classes alone, so here it can cost nothing, while "
                             "the notebook's 32-output models could lose points to it)")),
                ("correct", ("Scoring at the notebook's square sizes instead of the native labels (its resolution, "
                             "not a bug of its metric)"))],
}


@dataclass
class Reported:
    """A study's ``.reported.yaml``: the notebook's figures per run, and how the notebook scored."""

    study: str
    notebook: str
    metric: str  # a key of STEPS
    runs: dict[str, dict]  # run name -> {notebook, size, batch_size, figures: [{metric, value, line, printed}]}
    size: str | None = None
    batch_size: int | None = None
    source: Path | None = field(default=None, repr=False)

    def size_of(self, run: str) -> tuple[int, int]:
        return parse_size(str(self.runs[run].get("size") or self.size))

    def batch_of(self, run: str) -> int:
        return int(self.runs[run].get("batch_size") or self.batch_size)


def reported_file(study: str) -> Path | None:
    """``studies/<study>.reported.yaml`` shipped with seglab, or None."""
    path = Path(str(resources.files("seglab") / "studies" / f"{study}{REPORTED}"))
    return path if path.is_file() else None


def load_reported(study: str, path: Path | None = None) -> Reported | None:
    path = path or reported_file(study)
    if path is None:
        return None
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if raw.get("metric") not in STEPS:
        raise SeglabError(f"{path}: metric {raw.get('metric')!r} is not one of {', '.join(STEPS)}")
    return Reported(str(raw.get("study", study)), str(raw.get("notebook", "")), raw["metric"], raw.get("runs") or {},
                    raw.get("size"), raw.get("batch_size"), path)


# --- measuring -------------------------------------------------------------------------------------------


def _checkpoint_key(run: RunRecord) -> str:
    parts = []
    for ckpt in run.run_dir.final_checkpoints():
        if ckpt.is_file():
            st = ckpt.stat()
            parts.append(f"{ckpt.name}:{st.st_size}:{st.st_mtime_ns}")
    return ";".join(parts)


def _notebook_labels(metric: str, source, raw: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The labels the notebook scored against, from one raw mask, at the notebook's size."""
    if metric == "seed000":
        if source.color_table:  # CamVid-32 colour masks: the notebook's own files
            palette = np.zeros((256, 3), np.uint8)
            for rgb, value in source.color_table.items():
                palette[value] = rgb
            colour = palette[raw]
        elif source.layout == "camvid":  # SegNet's labels drawn in CamVid's colours
            colour = bugs.segnet_as_colours(raw)
        else:
            raise SeglabError(f"the seed 000 notebook read CamVid colour masks; {source.layout} data has none")
        return bugs.cv2_nearest(bugs.seed000_grayscale_labels(colour).astype(np.uint8), size).astype(np.int64)
    if source.layout != "camvid":
        raise SeglabError(f"the seed 001 notebook read SegNet's CamVid labels; this is {source.layout} data")
    return bugs.pil_nearest(raw, size).astype(np.int64)


def measure_run(run: RunRecord, reported: Reported, data_root: str | None) -> dict[str, dict[str, float]]:
    """{figure: {step: value}} for one run: its predictions at the notebook's size, scored at each step."""
    import torch

    from seglab.data import open_source
    from seglab.data.dataset import apply_lut, color_lookup, read_pair
    from seglab.data.transforms import resize_image
    from seglab.inference import load
    from seglab.metrics import ConfusionMatrix
    from seglab.scoring import check_classes, check_split, confusions

    if not any(c.is_file() for c in run.run_dir.final_checkpoints()):
        raise SeglabError(f"{run.name} has no checkpoint")
    cfg = run.run_dir.read_config().data
    root = data_root or cfg.root
    if not root or not Path(root).is_dir():
        raise SeglabError(f"data folder {root or '(none recorded)'} not found; pass --data PATH")
    predictor = load(run.run_dir.path, device="cpu")
    names = list(predictor.classes.names)
    source = open_source(Path(root), cfg.layout, cfg.remap, cfg.classes_file)
    check_classes(source, names)
    check_split(source, "test")
    size, batch, n = reported.size_of(run.name), reported.batch_of(run.name), len(names)
    lookup = color_lookup(source.color_table) if source.color_table else None
    resize_labels = bugs.cv2_nearest if reported.metric == "seed000" else bugs.pil_nearest
    preds, ours, theirs = [], [], []
    samples = source.split("test")  # the notebooks' loaders: sorted file names, shuffle=False
    for s in range(0, len(samples), batch):
        images, p, o, t = [], [], [], []
        for sample in samples[s:s + batch]:
            image, raw = read_pair(sample, lookup)
            images.append(resize_image(image, size))
            o.append(resize_labels(apply_lut(raw, source.lut, sample.mask), size).astype(np.int64))
            t.append(_notebook_labels(reported.metric, source, raw, size))
        p = [m.astype(np.int64) for m in predictor.predict_batch(images)]  # at the notebook's size
        preds.append(np.stack(p))
        ours.append(np.stack(o))
        theirs.append(np.stack(t))

    cm = ConfusionMatrix(n, names)
    for p, o in zip(preds, ours):
        cm.merge(torch.from_numpy(confusions(p, o, n).sum(0)))
    ours_at_size = cm.compute()
    test = run.test or {}
    if reported.metric == "seed000":
        void = [o == IGNORE_INDEX for o in ours]
        dice = {"notebook": bugs.seed000_dice(preds, theirs),
                # the notebook's Dice, on seglab's labels (void pixels left out of labels and predictions)
                "labels": bugs.seed000_dice([np.where(v, -1, p) for p, v in zip(preds, void)],
                                            [np.where(v, -1, o) for o, v in zip(ours, void)], n),
                "split": ours_at_size["mean_dice"], "correct": test.get("mean_dice")}
        return {"dice": dice}
    nb = sum(bugs.seed001_confusion(p, t) for p, t in zip(preds, theirs))
    labelled = [t != bugs.SEED001_VOID for t in theirs]
    no_void = sum(bugs.seed001_confusion(p[k], t[k]) for p, t, k in zip(preds, theirs, labelled))
    return {"miou": {"notebook": bugs.seed001_macro_iou(nb), "void": bugs.seed001_macro_iou(no_void),
                     "classes": ours_at_size["miou"], "correct": test.get("miou")},
            "pixel_accuracy": {"notebook": bugs.seed001_pixel_accuracy(nb),
                               "void": bugs.seed001_pixel_accuracy(no_void),
                               "classes": ours_at_size["pixel_accuracy"], "correct": test.get("pixel_accuracy")}}


def measurements(res: StudyResults, reported: Reported, files: Path,
                 data_root: str | None) -> tuple[dict[str, dict], dict[str, str]]:
    """({run: {figure: {step: value}}}, {run: why it could not be measured}) for the finished runs the
    notebook reported on; reuses report_files/notebook_measured.json while a run's checkpoints are unchanged."""
    cache_path = files / CACHE
    try:
        cache = json.loads(cache_path.read_text())
    except (OSError, ValueError):
        cache = {}
    out, missing = {}, {}
    for run in res.finished:
        if run.name not in reported.runs:
            continue
        key = f"{reported.metric}|{_checkpoint_key(run)}|{reported.size_of(run.name)}|{reported.batch_of(run.name)}"
        hit = cache.get(run.name)
        if isinstance(hit, dict) and hit.get("key") == key:
            out[run.name] = hit["values"]
            continue
        try:
            out[run.name] = measure_run(run, reported, data_root)
        except SeglabError as e:
            missing[run.name] = str(e)
            continue
        except Exception as e:  # noqa: BLE001 - an optional section must not cost the whole report
            missing[run.name] = f"inference failed ({type(e).__name__}: {first_line(e, 200)})"
            continue
        cache[run.name] = {"key": key, "values": out[run.name]}
    if cache:
        files.mkdir(parents=True, exist_ok=True)
        write_text(cache_path, json.dumps(cache, indent=1))
    return out, missing


# --- the section -----------------------------------------------------------------------------------------


def _fmt(v: float | None) -> str:
    return "—" if v is None else f"{v:.4f}"


def _as_printed(fig: dict) -> str:
    """The reported value with the digits the notebook printed (0.82 stays 0.82, 0.7670 stays 0.7670)."""
    four = f"{fig['value']:.4f}"
    return four if four in str(fig.get("printed", "")) else f"{fig['value']:g}"


def _points(v: float) -> str:
    return f"{round(v, 1) + 0.0:+.1f}"  # no "-0.0"


def table(reported: Reported, measured: dict[str, dict], res: StudyResults) -> str:
    """run | figure | notebook reported (line N) | notebook's metric re-measured | correct metric."""
    order = [r.name for r in res.runs if r.name in reported.runs] + [n for n in reported.runs
                                                                   if n not in {r.name for r in res.runs}]
    body = []
    for name in order:
        for fig in reported.runs[name].get("figures") or []:
            steps = measured.get(name, {}).get(fig["metric"], {})
            body.append([esc(name), METRIC_NAMES.get(fig["metric"], esc(fig["metric"])),
                         f"{_as_printed(fig)} (line {fig['line']})", _fmt(steps.get("notebook")),
                         _fmt(steps.get("correct"))])
    return md_table(["run", "figure", "notebook reported (line)", "notebook's metric re-measured",
                     "correct metric (seglab)"], body)


def _moved(figure: str, moves: list[float], over: str) -> str:
    """"lowered mIoU by 3.5 points on average over the 2 runs (single runs: -4.0 to -3.0)": the bug's effect on
    the notebook's number (its figure minus the figure with the bug fixed), its direction in words."""
    mean = sum(moves) / len(moves)
    name = METRIC_NAMES[figure]
    if all(abs(m) < 0.05 for m in moves):
        return f"left {name} within 0.05 points in every run" if len(moves) > 1 else \
            f"left {name} within 0.05 points {over}"
    if round(mean, 1) == 0:
        text = f"left {name} within 0.05 points {over}"
    else:
        text = f"{'raised' if mean > 0 else 'lowered'} {name} by {abs(mean):.1f} points {over}"
    return text + (f" (single runs: {_points(min(moves))} to {_points(max(moves))})" if len(moves) > 1 else "")


def sentences(reported: Reported, measured: dict[str, dict]) -> list[str]:
    """One sentence per bug (per step between the notebook's metric and seglab's): whether it raised or lowered
    the notebook's number, by how many points on average over the runs, and the range over single runs."""
    steps = STEPS[reported.metric]
    figures = list(dict.fromkeys(f for values in measured.values() for f in values))
    sizes = sorted({"x".join(map(str, reported.size_of(r))) for r in measured})
    batches = sorted({reported.batch_of(r) for r in measured})
    runs = len(measured)
    over = f"on average over the {runs} runs" if runs > 1 else "in the one run measured"
    out = []
    for (before, _), (after, what) in itertools.pairwise(steps):
        parts = []
        for fig in figures:
            moves = [100 * (v[before] - v[after]) for v in (m.get(fig, {}) for m in measured.values())
                     if v.get(before) is not None and v.get(after) is not None]
            if moves:
                parts.append(_moved(fig, moves, over))
        if parts:
            text = what.format(batch=" or ".join(map(str, batches)), size=" or ".join(sizes))
            out.append(f"{text} {' and '.join(parts)}.")
    return out


def section(res: StudyResults, files: Path, data_root: str | None,
            reported: Reported | None = None) -> list[tuple[str, list[str]]]:
    """[(TITLE, blocks)] for a study with a notebook's figures, else []."""
    reported = reported or load_reported(res.name)
    if reported is None:
        return []
    measured, missing = measurements(res, reported, files, data_root)
    blocks = [
        (f"What the source notebook ({esc(reported.notebook)}) printed for each run, beside the same run of this "
         f"study re-measured two ways: with the notebook's own metric, its bugs reproduced (predictions at the "
         f"notebook's image size, in its test batches, against labels read as it read them), and with seglab's "
         f"correct metric (one confusion matrix over the test split at native resolution, void ignored, absent "
         f"classes left out). Fractions, as the notebook prints them; test losses are not re-measured (they "
         f"depend on the loss and its class weights, not on how a metric is computed)."),
        table(reported, measured, res)]
    lines = sentences(reported, measured)
    if lines:
        blocks.append("How far each bug moved the notebook's number (its metric minus the same metric with that bug "
                      "fixed; the bugs fixed one after another, so the steps add up to the whole difference):\n\n"
                      + "\n".join(f"- {s}" for s in lines))
    unfinished = [n for n in reported.runs if n not in {r.name for r in res.finished}]
    if unfinished:
        blocks.append(f"> Not re-measured, not finished in this study: {esc(', '.join(unfinished))}.")
    for name, why in missing.items():
        blocks.append(f"> Not re-measured, {esc(name)}: {esc(why)}.")
    return [(TITLE, blocks)]

