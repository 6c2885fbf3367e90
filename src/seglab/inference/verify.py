"""Does a faster backend predict what PyTorch fp32 predicts? Several Predictors on the same real images,
taking turns image by image: pixel agreement with a reference, mIoU of each against the labels, and the
time of every ``predict`` call (decode excluded; padding or resizing, forward and argmax included).

``seglab export`` checks each file it writes this way on a few validation images; ``seglab bench infer``
runs the whole test split through every backend, so its speed and accuracy figures come from one pass.
Turns keep a change in machine load from falling on one backend only.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import numpy as np
import torch

from seglab.metrics import ConfusionMatrix
from seglab.scoring import confusions


def smooth_random_images(count: int, size: tuple[int, int], seed: int = 0) -> list[np.ndarray]:
    """(H, W, 3) uint8 noise upsampled 8x: closer to photos than per-pixel noise, for checks without data."""
    gen = torch.Generator().manual_seed(seed)
    h, w = size
    low = torch.rand(count, 3, max(h // 8, 1), max(w // 8, 1), generator=gen) * 255
    images = torch.nn.functional.interpolate(low, size=(h, w), mode="bilinear").round().to(torch.uint8)
    return [im.permute(1, 2, 0).numpy() for im in images]


def compare(predictors: dict, pairs: Iterable[tuple[np.ndarray, np.ndarray | None]], reference: str,
            warmup: int = 0) -> dict[str, dict]:
    """Run every Predictor on every (image, mask or None) pair, in turns.

    Returns per name: ``pixel_agreement`` with ``reference`` (share of all pixels with the same label),
    ``miou``, ``pixel_accuracy`` and ``per_class_iou`` (None without masks: void ignored, intersections and
    unions summed over the images) and ``seconds``, one per image after the first ``warmup`` images.
    """
    num_classes = predictors[reference].num_classes
    names = list(predictors)
    confusion = {n: ConfusionMatrix(num_classes) for n in names}
    same = dict.fromkeys(names, 0)
    seconds: dict[str, list[float]] = {n: [] for n in names}
    pixels, labelled = 0, False
    for i, (image, mask) in enumerate(pairs):
        labels = {}
        for name in names:
            t0 = time.perf_counter()
            labels[name] = predictors[name].predict(image)
            if i >= warmup:
                seconds[name].append(time.perf_counter() - t0)
        pixels += labels[reference].size
        for name in names:
            same[name] += int((labels[name] == labels[reference]).sum())
            if mask is not None:
                confusion[name].merge(torch.from_numpy(confusions(labels[name][None], mask[None], num_classes)[0]))
        labelled = labelled or mask is not None
    results = {}
    for name in names:
        scores = confusion[name].compute() if labelled else {}
        results[name] = {"pixel_agreement": same[name] / max(pixels, 1), "miou": scores.get("miou"),
                         "pixel_accuracy": scores.get("pixel_accuracy"),
                         "per_class_iou": scores.get("per_class_iou"), "seconds": seconds[name]}
    return results


def labelled_pairs(dataset, limit: int | None = None) -> Iterable[tuple[np.ndarray, np.ndarray]]:
    """(image, mask) of a SegmentationDataset, decoded one at a time (nothing kept)."""
    for i in range(len(dataset) if limit is None else min(limit, len(dataset))):
        yield dataset.decoded(i)
