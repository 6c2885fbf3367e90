"""Whether a model's confidence means anything: pixel-wise expected calibration error and temperature scaling.

ECE (Naeini et al., AAAI 2015; Guo et al., "On Calibration of Modern Neural Networks", ICML 2017): every
labelled pixel's top-class probability (its confidence) falls in one of ``bins`` equal-width bins of [0, 1];
ECE = sum over bins of (pixels in bin / all pixels) x |accuracy in bin - mean confidence in bin|. Void pixels
are left out. Per image, only the bins' sums are kept ([pixels, sum of confidence, sum of correct]): they add
up over images to the split's, so the split's ECE and its bootstrap over images come from the same numbers.

Temperature scaling (Guo et al.): one scalar T divides the logits; it changes no argmax (so no IoU), only
the confidence. T is fitted by minimising the mean negative log-likelihood on validation pixels, never on
test: a temperature chosen on test would make the test ECE a training figure.
"""

from __future__ import annotations

import numpy as np
import torch

DEFAULT_BINS = 15  # Guo et al.'s choice, the usual one


def histogram(conf: torch.Tensor, pred: torch.Tensor, target: torch.Tensor, num_classes: int,
              bins: int = DEFAULT_BINS) -> np.ndarray:
    """(B, H, W) top-class probability, predicted and true labels -> (B, bins, 3) float64 per image and bin:
    [pixels, sum of confidence, sum of correct], over pixels whose label is a class (void and out-of-range
    labels dropped). Bins are right-closed as in Guo et al.: bin k holds confidences in (k/bins, (k+1)/bins],
    the first also 0 (torchmetrics' bins are left-closed; the two agree except for a confidence exactly on an
    edge)."""
    return histograms([conf], pred, target, num_classes, bins)[0]


def histograms(confs, pred: torch.Tensor, target: torch.Tensor, num_classes: int,
               bins: int = DEFAULT_BINS) -> list[np.ndarray]:
    """``histogram`` of several confidences of one prediction (before and after a temperature, which moves no
    argmax), sharing the work that depends only on the labels and the prediction. NumPy's bincount: several
    times faster here than torch's on CPU."""
    b = target.shape[0]
    t = np.asarray(target).reshape(b, -1)
    keep = (t >= 0) & (t < num_classes)
    correct = (np.asarray(pred).reshape(b, -1) == t)[keep].astype(np.float64)
    offsets = (bins * np.arange(b))[:, None]
    out = []
    for conf in confs:
        c = np.asarray(conf, np.float32).reshape(b, -1)[keep]
        flat = (np.clip(np.ceil(c * np.float32(bins)).astype(np.int64) - 1, 0, bins - 1)
                + np.broadcast_to(offsets, keep.shape)[keep])
        out.append(np.stack([np.bincount(flat, minlength=b * bins).astype(np.float64),
                             np.bincount(flat, c.astype(np.float64), minlength=b * bins),
                             np.bincount(flat, correct, minlength=b * bins)], axis=-1).reshape(b, bins, 3))
    return out


def calibration_histogram(probs: torch.Tensor, target: torch.Tensor, bins: int = DEFAULT_BINS) -> np.ndarray:
    """``histogram`` of (B, C, H, W) probabilities: confidence and prediction are their maximum and argmax."""
    conf, pred = torch.as_tensor(probs).float().max(1)
    return histogram(conf, pred, torch.as_tensor(target), probs.shape[1], bins)


def ece(hist) -> np.ndarray:
    """(..., bins, 3) summed histograms -> (...) expected calibration error; nan where no pixel was counted."""
    h = np.asarray(hist, np.float64)
    count, conf, correct = h[..., 0], h[..., 1], h[..., 2]
    total = count.sum(-1)
    gap = np.abs(correct - conf).sum(-1)  # sum over bins of n_k |acc_k - conf_k|
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, gap / np.where(total > 0, total, 1.0), np.nan)


def reliability(hist) -> dict[str, list]:
    """(bins, 3) -> the reliability diagram's data: per bin its edges, mean confidence, accuracy (None where
    the bin is empty) and pixel count."""
    h = np.asarray(hist, np.float64)
    bins = h.shape[0]
    count = h[:, 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        conf, acc = h[:, 1] / count, h[:, 2] / count
    return {"edges": [k / bins for k in range(bins + 1)],
            "confidence": [None if n == 0 else float(c) for n, c in zip(count, conf)],
            "accuracy": [None if n == 0 else float(a) for n, a in zip(count, acc)],
            "count": [int(n) for n in count]}


def sample_pixels(logits: torch.Tensor, target: torch.Tensor, stride: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, C, H, W) logits at the labels' size, (B, H, W) labels -> ((P, C) float32 logits, (P,) labels) of the
    labelled pixels on a fixed grid of every ``stride``-th row and column: enough pixels to fit one scalar,
    a fraction of the memory of keeping every logit of the split."""
    num_classes = logits.shape[1]
    lg = logits[:, :, ::stride, ::stride].float().permute(0, 2, 3, 1).reshape(-1, num_classes)
    t = target[:, ::stride, ::stride].reshape(-1).long()
    keep = (t >= 0) & (t < num_classes)
    return lg[keep].cpu(), t[keep].cpu()


def nll(logits: torch.Tensor, labels: torch.Tensor, temperature: float) -> float:
    """Mean negative log-likelihood of ``labels`` under softmax(logits / temperature)."""
    return float(torch.nn.functional.cross_entropy(logits.double() / temperature, labels, reduction="mean"))


T_LOW, T_HIGH = 0.05, 20.0  # the search range; a fit at an end says the logits carry almost no information


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, low: float = T_LOW,
                    high: float = T_HIGH) -> tuple[float, float, float]:
    """The temperature minimising the mean NLL of (P, C) ``logits`` for (P,) ``labels``, searched on log T in
    [low, high] (bounded Brent; the NLL is convex in 1/T); -> (T, NLL at T = 1, NLL at T)."""
    from scipy.optimize import minimize_scalar

    if len(labels) == 0:
        raise ValueError("no labelled pixel to fit a temperature on")
    logits, labels = logits.double(), labels.long()
    res = minimize_scalar(lambda log_t: nll(logits, labels, float(np.exp(log_t))),
                          bounds=(np.log(low), np.log(high)), method="bounded", options={"xatol": 1e-4})
    t = float(np.exp(res.x))
    return t, nll(logits, labels, 1.0), nll(logits, labels, t)
