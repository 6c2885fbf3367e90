"""What ``seglab models`` lists: the recommended specs, why one would pick each, their size and which
weights work offline on this machine. A short curated list, because the spec grammar admits thousands
of smp x timm combinations and a newcomer needs the few that fit a CPU study.
"""

from __future__ import annotations

import warnings

import torch

from seglab.models.builder import build_model
from seglab.models.spec import parse_spec
from seglab.models.weights import offline_weights

# Specs shown by list_models(), with why one would pick them. Parameter counts are for 11 classes.
RECOMMENDED = {
    "scratch:simplesegnet": "notebook baseline: two conv stages, no skips",
    "scratch:unet": "U-Net from scratch (base 32)",
    "scratch:vit": "tiny ViT, per-patch linear decoder",
    "unet:efficientnet-lite0": "ImageNet-pretrained offline (depthwise convs: slow to train on CPU)",
    "fpn:efficientnet-lite0": "lighter decoder on the same offline encoder",
    "unet:efficientnet-lite2": "larger offline-pretrained encoder",
    "unet:resnet18": "the notebooks' pretrained model",
    "unet:resnet34": "common CamVid baseline",
    "deeplabv3plus:resnet34": "atrous context module",
    "segformer:mit_b0": "small transformer encoder",
}


def list_models() -> list[dict]:
    """The recommended specs: parameter count (11 classes), weights that work offline here, a note."""
    rows = []
    for spec, note in RECOMMENDED.items():
        arch, encoder = parse_spec(spec)
        rows.append(
            {
                "spec": spec,
                "params": _count_params(spec),
                "weights": offline_weights(arch, encoder),
                "note": note,
            }
        )
    return rows


def _count_params(spec: str, num_classes: int = 11) -> int:
    """Parameters of `spec`, built on the meta device (no memory, no init) where the model allows it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with torch.device("meta"):
                model = build_model(spec, num_classes, weights="none")
        except (RuntimeError, NotImplementedError):  # e.g. mit_b0 calls .item() while building
            model = build_model(spec, num_classes, weights="none")
    return sum(p.numel() for p in model.parameters())
