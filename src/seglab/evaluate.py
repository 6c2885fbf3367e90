"""Score a trained model on a split with the one confusion matrix, and write ``metrics.json``.

    seglab evaluate runs/<run> --split test
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from seglab.config import ConfigError, validate
from seglab.data.datamodule import SegDataModule
from seglab.data.open import open_data
from seglab.errors import BadValue
from seglab.metrics import ConfusionMatrix
from seglab.metrics.calibration import T_HIGH, T_LOW, fit_temperature, reliability
from seglab.metrics.summary import CONFIDENCE, RESAMPLES, bootstrap_intervals, split_value, summable
from seglab.naming import safe_name
from seglab.runs import checkpoint_key, read_trained, write_json
from seglab.scoring import Extras, check_classes, check_split, measure_split
from seglab.training.module import SegModule
from seglab.training.plan import check_names, plan_for

log = logging.getLogger("seglab")


def open_scoring_data(trained, data_root: str | None = None):
    """The dataset the model is scored on (``data_root``, else the one it trained on), refused in one line
    when its classes are not the model's."""
    if data_root:
        trained.config.data.root = data_root
    source = open_data(trained.config.data)
    check_classes(source, trained.classes.names)
    return source


def tta_variant(tta: str) -> str:
    """The file tag a run's evaluation under another test-time augmentation goes to (never over the run's own):
    flip+scales:1,1.5 -> ~tta-flip+scales=1,1.5."""
    return "~tta-" + safe_name(tta, colon="=", keep=",")


def evaluate(target: str | Path, split: str = "test", data_root: str | None = None, batch_size: int | None = None,
             eval_size: tuple[int, int] | str | None = None, tta: str | None = None,
             datamodule: SegDataModule | None = None, quiet: bool = False, extras: bool = True) -> dict:
    """Metrics of the run's final checkpoint (or the given checkpoint) on ``split``, written to the run folder,
    each headline figure with its 95% bootstrap interval over the split's images.

    ``extras`` (the default) also measures Boundary IoU, calibration (with a temperature fitted on val, never on
    the split scored unless that is val) and the run's loss; ``extras=False`` scores the confusion matrices
    alone, as seglab did before those metrics (``seglab bench evaluate`` times the difference)."""
    trained = read_trained(target)
    ckpt, run, cfg = trained.checkpoint, trained.run, trained.config
    # Scoring other settings than the run's own is a variant: it goes to its own file, never over the run's.
    variant = ""
    if eval_size and eval_size != cfg.data.eval_size:
        cfg.data.eval_size = eval_size
        variant += "~" + ("x".join(map(str, eval_size)) if isinstance(eval_size, tuple) else str(eval_size))
    if tta and tta != cfg.data.tta:
        cfg.data.tta = tta
        variant += tta_variant(tta)
    try:
        validate(cfg)  # the settings given here go through the config's own checks
        check_names(cfg)
    except ConfigError as e:
        param = {"data.tta": "tta", "data.eval_size": "eval_size"}.get(e.key)
        if param is None:
            raise
        raise BadValue(param, tta if param == "tta" else eval_size, e.problem) from None
    dm = datamodule
    if dm is None:
        dm = SegDataModule(open_scoring_data(trained, data_root), cfg.data, eval_batch_size=batch_size)
    check_split(dm.source, split)
    dm.trainer = None  # scored whole by this process, even when the data module served a distributed fit

    plan = plan_for(cfg)
    if plan.fixed_threads:
        torch.set_num_threads(plan.fixed_threads)
    device = torch.device(plan.device)
    module = SegModule.from_trained(trained).to(device)
    t0 = time.monotonic()
    n = len(trained.classes.names)
    measure = None
    if extras:
        calibration = temperature_for(trained, dm, module, variant, device, plan.autocast_dtype)
        measure = Extras(cfg.eval.boundary_fraction, cfg.eval.calibration_bins, calibration.get("temperature"),
                         module.criterion, stride=cfg.eval.calibration_stride)
    dm.test_split = split
    dm.setup("test")
    batches = dm.test_dataloader()
    arrays = measure_split(module, batches if quiet else _progress(batches, split), n, cfg.data.tta, device,
                           plan.autocast_dtype, measure)
    per_image = arrays["matrices"]
    cm = ConfusionMatrix(n, list(trained.classes.names))
    cm.mat = torch.from_numpy(per_image.sum(0))  # (C, C) zeros for a split of no image
    metrics = cm.compute()
    if extras:
        metrics.update(extra_metrics(arrays, cfg, calibration))
        metrics.update(interval_metrics(arrays))
    images = [s.image.name for s in dm.source.split(split)]
    fingerprint = dm.source.fingerprint()
    trained_on = run.read_info().get("data_fingerprint") if run else None
    other = trained_on is not None and trained_on != fingerprint
    size = cfg.data.eval_input_size()
    metrics.update(split=split, num_images=len(per_image), checkpoint=str(ckpt), model=cfg.model.spec,
                   eval_size=list(size) if size else "native", tta=cfg.data.tta,
                   data={"root": str(dm.source.root), "fingerprint": fingerprint, "trained_on": trained_on},
                   seconds=round(time.monotonic() - t0, 2))
    # Scores on other data than the run trained on go to their own files: the run's results stay as they are.
    tag = (f"@{safe_name(dm.source.root.name)}-{fingerprint[:8]}" if other else "") + variant
    if run is None:  # a checkpoint outside a run folder: metrics beside it
        out = ckpt.with_name("metrics.json" if split == "test" else f"metrics_{split}.json")
        write_json(out, metrics)
    else:
        out = run.write_metrics(metrics, split, tag)
        if len(images) == len(per_image):
            run.write_per_image(per_image, images, split, tag,
                                **{k: arrays.get(k) for k in ("boundary", "calibration", "calibration_t", "loss")})
    if other:
        log.warning("%s: evaluating on other data than the run trained on (%s, fingerprint %s, trained on %s); "
                    "wrote %s", target, dm.source.root, fingerprint, trained_on, out.name)
    if not quiet:
        print_metrics(metrics)
        Console().print(f"wrote {out}")
    return metrics


SAMPLE_BUDGET = 2_000_000  # val pixels a temperature is fitted on, at most (their logits are kept in memory)


def temperature_for(trained, dm: SegDataModule, module: SegModule, variant: str, device,
                    autocast) -> dict:
    """The run's temperature (run.json ``calibration``) for these weights and settings, fitted on val when there
    is none yet; ``{"temperature": None, "why_none": ...}`` when it cannot be had. Never fitted on test: a
    temperature chosen on the split it is scored on would make that split's calibrated ECE a training figure.
    Fitted by minimising the NLL of a grid sample of val pixels (at most SAMPLE_BUDGET), once per checkpoint:
    later evaluations reuse it, and ``seglab predict --calibrated`` reads it."""
    cfg, run = trained.config, trained.run
    if not cfg.eval.temperature:
        return {"temperature": None, "why_none": "eval.temperature is off"}
    if "val" in cfg.data.trains_on():
        return {"temperature": None, "why_none": "the model trained on val (data.train_splits), which leaves no "
                                                 "held-out split to fit a temperature on"}
    if "val" not in dm.source.splits:
        return {"temperature": None, "why_none": f"{dm.source.root} has no val split to fit a temperature on"}
    key = checkpoint_key(trained.checkpoint) + variant
    fingerprint = dm.source.fingerprint()
    stored = run.read_info().get("calibration") if run else None
    if isinstance(stored, dict) and stored.get("key") == key and isinstance(stored.get("temperature"), (int, float)):
        return stored
    dm.test_split = "val"
    dm.setup("test")
    images = len(dm.dataset("val"))
    sample = measure_split(module, dm.test_dataloader(), len(trained.classes.names), cfg.data.tta, device,
                           autocast, Extras(sample_pixels=max(1000, SAMPLE_BUDGET // max(images, 1)), measure=False))
    if not len(sample.get("sample_labels", ())):
        return {"temperature": None, "why_none": "val has no labelled pixel to fit a temperature on"}
    t, before, after = fit_temperature(torch.from_numpy(sample["sample_logits"]),
                                       torch.from_numpy(sample["sample_labels"]))
    info = {"temperature": round(t, 4), "fitted_on": "val", "images": images, "pixels": len(sample["sample_labels"]),
            "nll_before": round(before, 5), "nll_after": round(after, 5), "checkpoint": trained.checkpoint.name,
            "data_fingerprint": fingerprint, "key": key,
            "at_bound": not T_LOW * 1.01 < t < T_HIGH / 1.01}
    trained_on = run.read_info().get("data_fingerprint") if run else None
    if run is not None and not variant and trained_on in (None, fingerprint):
        run.write_info(calibration=info)
    return info


def _value(arrays: dict, name: str) -> float | None:
    per_image = summable(arrays, name)
    if per_image is None or not len(per_image):
        return None
    v = float(split_value(per_image, name))
    return v if math.isfinite(v) else None


def loss_name(cfg) -> str:
    """The run's loss in words, as training used it: "ce", "dice_ce (0.5 CE + 0.5 Dice), class weights"."""
    t = cfg.train
    name = t.loss + (f" ({t.ce_weight:g} CE + {t.dice_weight:g} Dice)" if t.loss == "dice_ce" else "")
    name += f" + {t.lovasz_weight:g} Lovasz" if t.lovasz_weight > 0 else ""
    return name + (", class weights" if t.class_weights is not None else "")


def extra_metrics(arrays: dict, cfg, calibration: dict) -> dict:
    """metrics.json's Boundary IoU, calibration and loss figures from the per-image arrays."""
    from seglab.metrics.boundary import boundary_iou

    widths = arrays.get("boundary_width", np.zeros(0))
    per_class = boundary_iou(arrays["boundary"].sum(0)) if len(arrays.get("boundary", ())) else []
    hist = arrays.get("calibration")
    hist_t = arrays.get("calibration_t")
    return {
        "boundary_iou": _value(arrays, "boundary_iou"),
        "per_class_boundary_iou": [float(v) if math.isfinite(v) else None for v in per_class],
        "boundary": {"fraction": cfg.eval.boundary_fraction, "of": "image diagonal", "distance": "chessboard",
                     "width_px": [int(widths.min()), int(widths.max())] if len(widths) else None},
        "ece": _value(arrays, "ece"),
        "ece_calibrated": _value(arrays, "ece_calibrated") if hist_t is not None else None,
        "temperature": calibration.get("temperature"),
        "calibration": {"bins": cfg.eval.calibration_bins, "stride": cfg.eval.calibration_stride,
                        "fitted_on": calibration.get("fitted_on"),
                        "why_none": calibration.get("why_none"), "nll_before": calibration.get("nll_before"),
                        "nll_after": calibration.get("nll_after"), "pixels": calibration.get("pixels"),
                        "at_bound": calibration.get("at_bound"),
                        "reliability": reliability(hist.sum(0)) if hist is not None and len(hist) else None,
                        "reliability_calibrated": reliability(hist_t.sum(0)) if hist_t is not None and len(hist_t)
                        else None},
        "loss": _value(arrays, "loss"),
        "loss_name": loss_name(cfg),
        "loss_stride": cfg.eval.calibration_stride,
    }


def interval_metrics(arrays: dict) -> dict:
    """metrics.json's ``intervals`` (95% percentile bootstrap over the split's images) of every headline figure
    the arrays hold, and how they were made."""
    n = len(arrays["matrices"])
    return {"intervals": {k: None if v is None else [round(v[0], 6), round(v[1], 6)]
                          for k, v in bootstrap_intervals(arrays).items()},
            "interval": {"confidence": CONFIDENCE, "resamples": RESAMPLES,
                         "method": f"percentile bootstrap over {n} images"}}


def _progress(batches, split: str):
    """The batches, with a progress bar on a terminal (plain output in a log says nothing per batch)."""
    from rich.progress import track

    console = Console(stderr=True)
    return track(batches, description=f"scoring {split}", transient=True, console=console) \
        if console.is_terminal else batches


def _fmt(v) -> str:
    return "—" if v is None else f"{100 * v:.2f}"


def _with_interval(m: dict, key: str, scale: float = 100, digits: int = 2, unit: str = "%") -> str:
    """"53.82% [52.31, 55.10]": a figure with its interval, as every evaluation prints it."""
    v = m.get(key)
    if v is None:
        return "—"
    ci = (m.get("intervals") or {}).get(key)
    text = f"{scale * v:.{digits}f}{unit}"
    return text + (f" [{scale * ci[0]:.{digits}f}, {scale * ci[1]:.{digits}f}]" if ci else "")


def print_metrics(m: dict) -> None:
    """Per-class IoU, Dice and Boundary IoU, then the headline figures, each with its 95% interval."""
    table = Table(title=f"{m['model']} on {m['split']} ({m['num_images']} images)")
    table.add_column("class")
    table.add_column("IoU %", justify="right")
    table.add_column("Dice %", justify="right")
    boundary = m.get("per_class_boundary_iou")
    if boundary:
        table.add_column("Boundary IoU %", justify="right")
    for i, (name, iou, dice) in enumerate(zip(m["class_names"], m["per_class_iou"], m["per_class_dice"])):
        table.add_row(name, _fmt(iou), _fmt(dice), *([_fmt(boundary[i])] if boundary else []))
    table.add_section()
    table.add_row("mean", _fmt(m["miou"]), _fmt(m["mean_dice"]), *([_fmt(m.get("boundary_iou"))] if boundary else []),
                  style="bold")
    console = Console()
    console.print(table)
    console.print(f"mIoU {_with_interval(m, 'miou')}  mean Dice {_with_interval(m, 'mean_dice')}  pixel accuracy "
                  f"{_with_interval(m, 'pixel_accuracy')}")
    console.print(f"mean class accuracy {_fmt(m['mean_class_accuracy'])}%  frequency-weighted IoU "
                  f"{_fmt(m['fw_iou'])}%")
    if m.get("boundary_iou") is not None:
        b = m.get("boundary") or {}
        width = b.get("width_px") or []
        px = "" if not width else f"{width[0]} px, " if width[0] == width[1] else f"{width[0]}-{width[1]} px, "
        console.print(f"Boundary IoU {_with_interval(m, 'boundary_iou')} (d = {px}{100 * b.get('fraction', 0):g}% "
                      f"of the image diagonal)")
    if m.get("ece") is not None:
        cal = m.get("calibration") or {}
        bound = ", at the end of its search range" if cal.get("at_bound") else ""
        after = (f" -> {_with_interval(m, 'ece_calibrated')} after temperature {m['temperature']:.3g} (fitted on "
                 f"{cal.get('fitted_on')}{bound})" if m.get("ece_calibrated") is not None else
                 f" (no temperature: {cal.get('why_none')})" if cal.get("why_none") else "")
        console.print(f"ECE {_with_interval(m, 'ece')}{after}, {cal.get('bins')} bins")
    if m.get("loss") is not None:
        console.print(f"{m['split']} loss {_with_interval(m, 'loss', 1, 4, '')} ({m.get('loss_name')})")
    if m.get("interval"):
        console.print(f"[dim]95% intervals: {m['interval']['method']}, {m['interval']['resamples']} resamples[/dim]")
