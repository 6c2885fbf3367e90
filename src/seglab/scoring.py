"""The one way a model is scored: per-image confusion matrices over a split, at the labels' native size.

``seglab evaluate``, ``seglab bench tta``, export verification, the report's figures and the bootstrap all
score through here, so a number in one place means what it means in another:

- the data's classes must be the model's (``check_classes``) and the split must exist (``check_split``);
- logits are upsampled to the native labels, bilinearly, before the argmax (``to_label_size``); labels are
  never resized, so a model evaluated at a smaller input is still scored on every labelled pixel;
- each image gets its own confusion matrix (``confusions``): they sum exactly to the split's matrix, and a
  study resamples them for its intervals without running the model again.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from seglab.errors import BadValue, SeglabError
from seglab.metrics import per_image_confusion
from seglab.metrics.boundary import DEFAULT_FRACTION, boundary_counts, boundary_width
from seglab.metrics.calibration import DEFAULT_BINS, histograms, sample_pixels
from seglab.models.tta import CUSTOM_SCALES, mirrored, tta_logits, tta_scales


def check_classes(source, names: list[str]) -> None:
    """One line when the dataset's classes are not the ``names`` a model was trained on."""
    if list(source.classes.names) != list(names):
        raise SeglabError(f"{source.root}: its classes {list(source.classes.names)} differ from the "
                          f"{len(names)} classes the model was trained on {list(names)}")


def check_split(source, split: str) -> None:
    """BadValue naming the splits there are, when ``split`` is not one of them."""
    if split not in source.splits:
        raise BadValue("split", split, f"{source.root} has splits {', '.join(source.splits)}")


def to_label_size(scores: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, C, h, w) logits or probabilities -> (B, C, H, W) at the labels' (H, W): the one upsampling rule."""
    if tuple(scores.shape[-2:]) == tuple(size):
        return scores
    return F.interpolate(scores.float(), size=tuple(size), mode="bilinear", align_corners=False)


def upsample_rows(logits: torch.Tensor, H: int, W: int, rows: int) -> Iterator[tuple[int, torch.Tensor]]:
    """``to_label_size`` for one (C, h, w) image, ``rows`` output rows at a time, so a huge image never holds
    C x H x W floats at once (prediction at the training scale). grid_sample with these coordinates samples
    exactly where ``F.interpolate(mode="bilinear", align_corners=False)`` does (border clamping included)."""
    xs = (torch.arange(W, dtype=torch.float32) + 0.5) * 2 / W - 1  # output pixel centres in [-1, 1]
    for y0 in range(0, H, rows):
        ys = (torch.arange(y0, min(y0 + rows, H), dtype=torch.float32) + 0.5) * 2 / H - 1
        grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)[None]  # (1, rows, W, 2) as (x, y)
        yield y0, F.grid_sample(logits[None], grid, mode="bilinear", padding_mode="border",
                                align_corners=False)[0]


def confusions(pred: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray, num_classes: int) -> np.ndarray:
    """(B, H, W) predicted and true labels -> (B, C, C) int64 per-image matrices (void and out-of-range labels
    dropped). Predictions must be at the labels' size: a resized label would score other pixels."""
    pred, target = (x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x)) for x in (pred, target))
    if pred.shape != target.shape:
        raise SeglabError(f"predictions of shape {tuple(pred.shape)} against labels of shape "
                          f"{tuple(target.shape)}: predictions are scored at the labels' native size")
    return per_image_confusion(target.long(), pred.long(), num_classes).numpy()


@dataclass
class Extras:
    """What an evaluation measures besides the confusion matrices, per image (``seglab.metrics``): boundary band
    counts, calibration histograms (at T = 1 and, with a ``temperature``, after it), the run's loss, and
    optionally a sample of at most ``sample_pixels`` labelled pixels' logits per image to fit a temperature on;
    ``measure=False`` takes the sample alone (a temperature fit needs nothing else). ``stride``: calibration and
    the loss count every stride-th row and column of the labelled pixels (``eval.calibration_stride``).

    ``loss``: the run's criterion, called on each image as (1, C, H, W) logits at the labels' size; a plain
    ``nn.CrossEntropyLoss`` (seglab's "ce", weighted or not) is computed from the probabilities already at hand
    instead: the same number, without another pass over C x H x W values."""

    boundary_fraction: float = DEFAULT_FRACTION
    bins: int = DEFAULT_BINS
    temperature: float | None = None
    loss: torch.nn.Module | None = None
    sample_pixels: int | None = None
    measure: bool = True
    stride: int = 1


def _per_image_ce(scores: torch.Tensor, probs: torch.Tensor, conf: torch.Tensor, pred: torch.Tensor,
                  labels: torch.Tensor, ce: torch.nn.CrossEntropyLoss) -> np.ndarray:
    """(B,) weighted cross-entropy per image, as ``ce`` (mean over labelled pixels, weighted by class) computes
    it: -log p_y = logit_pred - logit_y - log(conf), exact (conf >= 1/C never underflows)."""
    n = scores.shape[1]
    t = labels.long()
    keep = (t >= 0) & (t < n)
    ty = t.clamp(0, n - 1).unsqueeze(1)
    nll = (scores.gather(1, pred.unsqueeze(1)) - scores.gather(1, ty)).squeeze(1) - conf.log()
    w = ce.weight.to(nll)[ty.squeeze(1)] if ce.weight is not None else torch.ones_like(nll)
    w = torch.where(keep, w, torch.zeros_like(w))
    num, den = (w * nll).flatten(1).sum(1), w.flatten(1).sum(1)
    return torch.where(den > 0, num / den.clamp_min(1e-30), torch.full_like(num, float("nan"))).double().numpy()


def _per_image_loss(scores: torch.Tensor, labels: torch.Tensor, loss: torch.nn.Module) -> np.ndarray:
    """(B,) the run's loss on each image alone; nan for an image with no labelled pixel."""
    out = []
    for s, t in zip(scores, labels):
        labelled = ((t >= 0) & (t < scores.shape[1])).any()
        out.append(float(loss(s[None], t[None].long())) if labelled else float("nan"))
    return np.asarray(out, np.float64)


def measure_batch(scores: torch.Tensor, labels: torch.Tensor, num_classes: int,
                  extras: Extras | None = None) -> dict[str, np.ndarray]:
    """One batch's per-image arrays from its (B, C, h, w) logits (or log-probabilities) and (B, H, W) labels:
    ``matrices`` always; with ``extras`` also ``boundary`` and ``boundary_width`` (d of each image, in pixels),
    ``calibration``, ``calibration_t``, ``loss`` and the pixel sample (``sample_logits``, ``sample_labels``).
    The logits are upsampled to the labels first (the one rule, ``to_label_size``). Confusion matrices and
    Boundary IoU count every labelled pixel; calibration and the loss count every ``extras.stride``-th row and
    column of them (softmax over C x H x W values is the dearest step here, and neighbouring pixels add
    little: the intervals over images carry the estimate's noise)."""
    scores = to_label_size(scores.float(), labels.shape[-2:]).cpu()
    labels = labels.cpu()
    if extras is None:
        return {"matrices": confusions(scores.argmax(1), labels, num_classes)}
    if not extras.measure:
        return _sample(scores, labels, extras)
    pred = scores.argmax(1)
    k = extras.stride
    grid, grid_labels, grid_pred = scores[:, :, ::k, ::k], labels[:, ::k, ::k], pred[:, ::k, ::k]
    probs = grid.softmax(1)
    conf = probs.gather(1, grid_pred.unsqueeze(1)).squeeze(1)  # the predicted class's probability
    confs = [conf]
    if extras.temperature is not None:  # the same argmax: only the confidence moves
        confs.append((grid / extras.temperature).softmax(1).gather(1, grid_pred.unsqueeze(1)).squeeze(1))
    hists = histograms(confs, grid_pred, grid_labels, num_classes, extras.bins)
    out = {"matrices": confusions(pred, labels, num_classes),
           "boundary": boundary_counts(pred.numpy(), labels.numpy(), num_classes, fraction=extras.boundary_fraction),
           "boundary_width": np.full(len(labels), boundary_width(*labels.shape[-2:], extras.boundary_fraction)),
           "calibration": hists[0]}
    if extras.temperature is not None:
        out["calibration_t"] = hists[1]
    if isinstance(extras.loss, torch.nn.CrossEntropyLoss):
        out["loss"] = _per_image_ce(grid, probs, conf, grid_pred, grid_labels, extras.loss)
    elif extras.loss is not None:
        out["loss"] = _per_image_loss(grid, grid_labels, extras.loss)
    return {**out, **_sample(scores, labels, extras)}


def _sample(scores: torch.Tensor, labels: torch.Tensor, extras: Extras) -> dict[str, np.ndarray]:
    if not extras.sample_pixels:
        return {}
    stride = max(1, math.ceil(math.sqrt(labels.shape[-2] * labels.shape[-1] / extras.sample_pixels)))
    logits, target = sample_pixels(scores, labels, stride)
    return {"sample_logits": logits.numpy(), "sample_labels": target.numpy()}


def measure_split(forward: Callable[[torch.Tensor], torch.Tensor], batches: Iterable, num_classes: int,
                  mode: str = "none", device=None, autocast: torch.dtype | None = None,
                  extras: Extras | None = None) -> dict[str, np.ndarray]:
    """Every per-image array of ``forward`` over ``batches`` of (images, labels) with test-time augmentation
    ``mode``: (N, C, C) ``matrices``, and with ``extras`` the arrays ``measure_batch`` lists, concatenated."""
    device = torch.device(device or "cpu")
    parts: dict[str, list[np.ndarray]] = {}
    for images, labels in batches:
        with torch.no_grad(), torch.autocast(device.type, dtype=autocast or torch.float32,
                                             enabled=autocast is not None):
            scores = tta_logits(forward, images.to(device), mode)
        for key, value in measure_batch(scores, labels, num_classes, extras).items():
            parts.setdefault(key, []).append(value)
    out = {k: np.concatenate(v) for k, v in parts.items()}
    out.setdefault("matrices", np.zeros((0, num_classes, num_classes), np.int64))  # a split of no image
    return out


@torch.no_grad()
def score_split(forward: Callable[[torch.Tensor], torch.Tensor], batches: Iterable, num_classes: int,
                modes: list[str] | tuple[str, ...] = ("none",), device=None,
                autocast: torch.dtype | None = None) -> dict[str, np.ndarray]:
    """(N, C, C) per-image confusion matrices of ``forward`` over ``batches`` of (images, labels), for each
    test-time augmentation in ``modes``.

    One mode runs exactly its own views (``models.tta``). Several modes share work: each scale's mirrored pair
    runs once per batch and every mode is scored from those shared probabilities, so all candidates together
    cost what the widest one costs (``seglab bench tta``).
    """
    modes = list(modes)
    if len(modes) == 1:
        return {modes[0]: measure_split(forward, batches, num_classes, modes[0], device, autocast)["matrices"]}
    device = torch.device(device or "cpu")
    mats: dict[str, list[np.ndarray]] = {m: [] for m in modes}
    shared = sorted({s for m in modes if mirrored(m) for s in tta_scales(m)})
    for images, labels in batches:
        images = images.to(device)
        with torch.autocast(device.type, dtype=autocast or torch.float32, enabled=autocast is not None):
            pairs = {s: tta_logits(forward, images, f"{CUSTOM_SCALES}{s:g}").exp() for s in shared}
            scores = {m: torch.stack([pairs[s] for s in tta_scales(m)]).sum(0) if mirrored(m) else
                      tta_logits(forward, images, m).float() for m in modes}
        for mode, s in scores.items():
            mats[mode].append(measure_batch(s, labels, num_classes)["matrices"])
    empty = np.zeros((0, num_classes, num_classes), np.int64)
    return {m: np.concatenate(v) if v else empty for m, v in mats.items()}
