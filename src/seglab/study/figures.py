"""The report's figures, saved as PNG: training curves, per-class IoU, confusion matrix, examples, the
reliability diagram, the distribution of per-image mIoU and the worst test images.

Figures are built with ``matplotlib.figure.Figure`` (no pyplot): no global state and no display, so a
report builds the same on a headless server as on a laptop. Each function returns the file it wrote,
or None when there is nothing to draw.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from seglab.constants import IGNORE_INDEX
from seglab.errors import SeglabError
from seglab.scoring import check_classes, check_split, confusions
from seglab.study.compare import ConfigRow, RunRecord

DPI = 100
LOSS_NAMES = {"ce": "cross-entropy", "dice": "Dice", "dice_ce": "Dice + cross-entropy", "focal": "focal"}
VOID_RGB = (0, 0, 0)  # ground truth and predictions: void black, as in CamVid's colour masks
ERROR_RGB = {"correct": (20, 20, 20), "wrong": (230, 40, 40), "void": (150, 150, 150)}


def _colors(n: int) -> list:
    """Distinct colours, tab10 then tab20, so a configuration keeps one colour in every figure."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight", facecolor="white")
    return path


def training_curves(rows: list[ConfigRow], path: Path) -> Path | None:
    """Training loss (one panel per loss kind: cross-entropy and Dice + CE are not on one scale) and
    validation mIoU, against epochs (fractional: runs validate several times per epoch); one colour per
    configuration, one line per seed."""
    series = [(i, r, r.epochs()) for i, row in enumerate(rows) for r in row.runs]
    series = [(i, r, e) for i, r, e in series if e]
    if not series:
        return None
    losses = list(dict.fromkeys(r.loss or "loss" for _, r, _ in series))
    panels = [(f"training loss ({LOSS_NAMES.get(k, k)})", "train_loss", k) for k in losses]
    panels.append(("validation mIoU (%)", "val_miou", None))
    colors = _colors(len(rows))
    fig = Figure(figsize=(5 * len(panels), 4.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    labelled: set[int] = set()
    for i, run, rows_ in series:
        x = [e["epoch"] for e in rows_]
        for ax, (_, key, loss) in zip(axes, panels):
            if loss is not None and (run.loss or "loss") != loss:
                continue
            y = [np.nan if e.get(key) is None else e[key] * (100 if key == "val_miou" else 1) for e in rows_]
            label = None if i in labelled else rows[i].config_name
            labelled.add(i)
            ax.plot(x, y, color=colors[i], lw=1.6, alpha=0.9, marker="o" if len(x) <= 30 else None, ms=3,
                    label=label)
    for ax, (title, _, _) in zip(axes, panels):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    handles, labels = [], []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 6), frameon=False)
    fig.suptitle("Training curves (one point per validation; seeds of a configuration share its colour)")
    return _save(fig, path)


def per_class_iou(rows: list[ConfigRow], class_names: list[str], path: Path) -> Path | None:
    """Grouped bars: test IoU per class, one bar per configuration (mean over seeds; the standard deviation
    as an error bar only for configurations with several seeds)."""
    rows = [r for r in rows if r.finished]
    if not rows or not class_names:
        return None
    k = len(class_names)
    means = np.full((len(rows), k), np.nan)
    stds = np.zeros((len(rows), k))
    for j, row in enumerate(rows):
        per_seed = np.array([[np.nan if v is None else v for v in (r.test or {}).get("per_class_iou", [None] * k)]
                             for r in row.finished], float)
        if per_seed.shape[1:] != (k,):
            continue
        with warnings.catch_warnings():  # a class absent in every seed gives an all-NaN column
            warnings.simplefilter("ignore", RuntimeWarning)
            means[j] = np.nanmean(per_seed, 0) * 100
            stds[j] = np.nan_to_num(np.nanstd(per_seed, 0, ddof=1) * 100) if len(per_seed) > 1 else 0
    width = 0.8 / len(rows)
    x = np.arange(k)
    fig = Figure(figsize=(max(10, 0.9 * k + 2), 5), layout="constrained")
    ax = fig.subplots()
    for j, (row, color) in enumerate(zip(rows, _colors(len(rows)))):
        error = stds[j] if len(row.finished) > 1 else None  # one run has no spread to draw
        ax.bar(x - 0.4 + width * (j + 0.5), np.nan_to_num(means[j]), width, yerr=error, color=color,
               label=row.config_name, capsize=2, error_kw={"lw": 0.8})
    for i in np.flatnonzero(np.isnan(means).all(0)):  # no IoU: the class is in neither labels nor predictions
        ax.text(i, 2, "absent", ha="center", va="bottom", rotation=90, fontsize=8, color="0.4")
    ax.set_xticks(x, class_names, rotation=30, ha="right")
    ax.set_ylabel("test IoU (%)")
    ax.set_ylim(0, 100)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    repeated = any(len(row.finished) > 1 for row in rows)
    ax.set_title("Per-class test IoU" + (" (mean over seeds, error bar: standard deviation over seeds)"
                                         if repeated else " (one run per configuration)"))
    fig.legend(loc="outside upper center", ncol=min(len(rows), 6), fontsize=9, frameon=False)
    return _save(fig, path)


def confusion_matrix(metrics: dict, title: str, path: Path) -> Path | None:
    """Row-normalised heat map (rows: true class, columns: predicted), each cell annotated in percent."""
    mat = np.asarray(metrics.get("confusion_matrix") or [], float)
    names = metrics.get("class_names") or [str(i) for i in range(len(mat))]
    if mat.ndim != 2 or mat.size == 0:
        return None
    totals = mat.sum(1, keepdims=True)
    norm = np.divide(mat, totals, out=np.zeros_like(mat), where=totals > 0) * 100
    k = len(mat)
    fig = Figure(figsize=(0.62 * k + 3, 0.55 * k + 2.5), layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=100)
    for t in range(k):
        for p in range(k):
            if norm[t, p] >= 0.5:
                ax.text(p, t, f"{norm[t, p]:.0f}", ha="center", va="center", fontsize=8,
                        color="white" if norm[t, p] > 55 else "black")
    ax.set_xticks(range(k), names, rotation=45, ha="right")
    ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="% of the true class's pixels")
    return _save(fig, path)


# ---------------------------------------------------------------------------------------------------
# Qualitative examples: the best run's predictions on fixed test images.


def example_indices(n: int, k: int = 4) -> list[int]:
    """Evenly spaced test indices: fixed for a given split, so rebuilds show the same images."""
    return sorted({round(i) for i in np.linspace(0, n - 1, min(k, n))}) if n else []


def predict_examples(run: RunRecord, data_root: str | None, k: int = 4,
                     names: list[str] | None = None) -> tuple[list, list[str], list]:
    """[(name, image HxWx3, truth HxW, prediction HxW)], class names and colours, for the best run: ``k``
    evenly spaced test images, or the test images named ``names`` (file names, as per_image_test.npz holds
    them), in that order.

    Raises SeglabError (the report turns it into a note) when the checkpoint or the data is unusable.
    """
    from seglab.data import SegmentationDataset, open_source
    from seglab.inference import load

    predictor = load(run.run_dir.path, device="cpu")  # the scale and weights `seglab evaluate` scores
    classes = list(predictor.classes.names)
    data = run.run_dir.read_config().data
    root = data_root or data.root
    if not root or not Path(root).is_dir():
        raise SeglabError(f"data folder {root or '(none recorded)'} not found; pass --data PATH")
    source = open_source(Path(root), data.layout, data.remap, data.classes_file)
    check_classes(source, classes)
    check_split(source, "test")
    samples = source.split("test")
    if names is None:
        idx = example_indices(len(samples), k)
    else:
        where = {s.image.name: i for i, s in enumerate(samples)}
        unknown = [n for n in names if n not in where]
        if unknown:
            raise SeglabError(f"test image {unknown[0]} is not in the data folder {root} any more")
        idx = [where[n] for n in names]
    ds = SegmentationDataset([samples[i] for i in idx], source.lut, len(classes),
                             color_table=source.color_table, cache=False)
    out = []
    for j, i in enumerate(idx):
        image, mask = ds.decoded(j)  # native resolution
        out.append((samples[i].image.name, image, mask, predictor.predict(image)))
    return out, classes, list(predictor.classes.colors)


def colorize(labels: np.ndarray, colors: list) -> np.ndarray:
    """(H, W) labels -> (H, W, 3) uint8 with class colours, void black."""
    palette = np.zeros((256, 3), np.uint8)
    palette[:] = VOID_RGB
    palette[: len(colors)] = np.asarray(colors, np.uint8)
    return palette[np.clip(labels, 0, 255)]


def error_map(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """(H, W, 3): wrong pixels red, correct dark, void grey."""
    out = np.empty((*truth.shape, 3), np.uint8)
    out[:] = ERROR_RGB["correct"]
    out[truth != pred] = ERROR_RGB["wrong"]
    out[truth == IGNORE_INDEX] = ERROR_RGB["void"]
    return out


def qualitative_grid(examples: list, class_names: list[str], colors: list, title: str, path: Path) -> Path | None:
    """Rows of image | ground truth | prediction | error map, with a class-colour legend."""
    if not examples:
        return None
    h, w = examples[0][1].shape[:2]
    cell = 3.2  # inches per panel width
    fig = Figure(figsize=(4 * cell, len(examples) * (cell * h / w + 0.35) + 1.2), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(examples), 4))
    for row, (name, image, truth, pred) in zip(axes, examples):
        mat = confusions(pred[None], truth[None], len(class_names))[0]  # scored as evaluate scores it
        acc = 100 * np.trace(mat) / mat.sum() if mat.sum() else float("nan")
        panels = [(image, name), (colorize(truth, colors), "ground truth"),
                  (colorize(pred, colors), "prediction"), (error_map(truth, pred), f"errors: {acc:.1f}% correct")]
        for ax, (img, label) in zip(row, panels):
            ax.imshow(img, interpolation="nearest")
            ax.set_title(label, fontsize=9)
            ax.axis("off")
    handles = [Patch(color=np.asarray(c) / 255, label=n) for n, c in zip(class_names, colors)]
    handles += [Patch(color=np.asarray(VOID_RGB) / 255, label="void (not scored)"),
                Patch(color=np.asarray(ERROR_RGB["wrong"]) / 255, label="error"),
                Patch(color=np.asarray(ERROR_RGB["void"]) / 255, label="void in error map")]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 7), fontsize=8, frameon=False)
    fig.suptitle(title)
    return _save(fig, path)


# ---------------------------------------------------------------------------------------------------
# Calibration and the per-image view.


def _bins(rel: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A reliability dict's lists as arrays (None -> nan), equal-width bins over [0, 1]."""
    def arr(key):
        return np.array([np.nan if v is None else v for v in rel.get(key) or []], float)

    return arr("confidence"), arr("accuracy"), arr("count")


def reliability_diagram(panels: list[tuple[str, dict]], title: str, path: Path) -> Path | None:
    """One panel per (label, metrics.json reliability dict): accuracy of each equal-width confidence bin as
    a bar, the bin's mean confidence as a dot, the diagonal where they agree; under each, the share of
    pixels per bin (most pixels sit in the top bins, so the bars there carry the ECE)."""
    panels = [(label, rel) for label, rel in panels if rel and len(rel.get("accuracy") or [])]
    if not panels:
        return None
    fig = Figure(figsize=(4.6 * len(panels), 5.6), layout="constrained")
    axes = np.atleast_2d(fig.subplots(2, len(panels), height_ratios=[3, 1], squeeze=False))
    for j, (label, rel) in enumerate(panels):
        conf, acc, n = _bins(rel)
        bins = len(acc)
        centers, width = (np.arange(bins) + 0.5) * 100 / bins, 100 / bins  # in percent, as the axes
        top, bottom = axes[0, j], axes[1, j]
        top.bar(centers, np.nan_to_num(acc) * 100, width * 0.95, color="#4c78a8", label="accuracy of the bin")
        top.plot(centers[~np.isnan(conf)], conf[~np.isnan(conf)] * 100, "o", color="#e45756", ms=4,
                 label="mean confidence of the bin")
        top.plot([0, 100], [0, 100], "--", color="0.4", lw=1, label="perfect calibration")
        top.set_xlim(0, 100)
        top.set_ylim(0, 100)
        top.set_title(label, fontsize=10)
        top.set_ylabel("accuracy (%)")
        top.grid(alpha=0.3)
        top.set_axisbelow(True)
        if j == 0:
            top.legend(fontsize=8, loc="upper left")
        share = n / n[np.isfinite(n)].sum() * 100 if np.nansum(n) > 0 else np.zeros_like(n)
        bottom.bar(centers, np.nan_to_num(share), width * 0.95, color="0.55")
        bottom.set_xlim(0, 100)
        bottom.set_xlabel("confidence: top-class probability (%)")
        bottom.set_ylabel("pixels (%)")
        bottom.grid(alpha=0.3)
        bottom.set_axisbelow(True)
    fig.suptitle(title)
    return _save(fig, path)


def per_image_distribution(values: dict[str, np.ndarray], title: str, path: Path) -> Path | None:
    """Box plot of per-image test mIoU per configuration (median, quartiles, whiskers to 1.5 IQR), every
    image as a dot beside it: what the split's single number averages away."""
    values = {k: np.asarray(v, float)[~np.isnan(np.asarray(v, float))] for k, v in values.items()}
    values = {k: v for k, v in values.items() if len(v)}
    if not values:
        return None
    fig = Figure(figsize=(max(6.0, 1.3 * len(values) + 2), 4.8), layout="constrained")
    ax = fig.subplots()
    data = [v * 100 for v in values.values()]
    ax.boxplot(data, widths=0.45, showfliers=False)
    rng = np.random.default_rng(0)  # fixed jitter: rebuilds draw the same picture
    for i, (v, color) in enumerate(zip(data, _colors(len(data))), start=1):
        ax.plot(i + 0.32 + rng.uniform(-0.06, 0.06, len(v)), v, "o", ms=2.5, alpha=0.6, color=color)
    ax.set_xticks(range(1, len(values) + 1), list(values), rotation=20, ha="right")
    ax.set_ylabel("per-image test mIoU (%)")
    ax.set_ylim(0, 100)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.set_title(title, fontsize=10)
    return _save(fig, path)
