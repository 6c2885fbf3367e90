"""The model spec grammar: ``arch:encoder`` or ``arch:encoder:W``, and ``scratch:<name>`` or ``scratch:<name>:W``.

One place checks a spec, so the CLI, config validation and the builder refuse a bad one with the same
line, and a typo in an encoder name gets its nearest valid names. ``arch`` is any smp architecture (or
``scratch``), ``encoder`` any smp encoder, ``tu-<timm name>`` or an offline Lite alias (pretrained.py).
W sets the decoder's width (DECODER_WIDTH; smp's default is 256): at full resolution the decoder, not the
encoder, dominates the cost of smp's FPN and Unet, so a narrow one is the lever for speed
(``fpn:efficientnet-lite0:64``). For a from-scratch model W is its size (scratch.SCRATCH_WIDTH: SimpleSegNet's
first-stage width, the U-Net's first-level channels, the ViT's embedding width with one head per 64 channels):
``scratch:unet:64`` and ``scratch:vit:384`` are the second notebook's own models. The size lives in the spec, so
every record of a model (config.yaml, checkpoints, save_pretrained's seglab.json) rebuilds it at that size.
"""

from __future__ import annotations

import difflib

import segmentation_models_pytorch as smp
import timm

from seglab.errors import SeglabError
from seglab.models.pretrained import LITE_ENCODERS
from seglab.models.scratch import SCRATCH_MODELS, SCRATCH_WIDTH

ARCHITECTURES = sorted(smp.MODEL_ARCHITECTURES_MAPPING) + ["scratch"]


def _halving(w: int) -> dict:
    return {"decoder_channels": [w >> i for i in range(5)]}  # smp's default (256, 128, 64, 32, 16) at w = 256


# The smp arguments that set each architecture's decoder width W (the third part of a spec).
DECODER_WIDTH = {
    "fpn": lambda w: {"decoder_pyramid_channels": w, "decoder_segmentation_channels": w // 2},
    "unet": _halving, "unetplusplus": _halving, "manet": _halving,
    "deeplabv3": lambda w: {"decoder_channels": w}, "deeplabv3plus": lambda w: {"decoder_channels": w},
    "pan": lambda w: {"decoder_channels": w}, "upernet": lambda w: {"decoder_channels": w},
    "segformer": lambda w: {"decoder_segmentation_channels": w},
    "pspnet": lambda w: {"psp_out_channels": w},
}


def parse_spec(spec: str) -> tuple[str, str]:
    """Split and check "arch:encoder" (or "arch:encoder:W"): ("unet", "resnet34"). Arch and scratch names are
    case-insensitive; decoder_width() reads W."""
    parts = spec.split(":") if isinstance(spec, str) else []
    if len(parts) not in (2, 3) or not all(p.strip() for p in parts):
        raise SeglabError(
            f"model spec {spec!r} is malformed: write ARCH:ENCODER, e.g. unet:resnet34, "
            f"unet:efficientnet-lite0 or scratch:unet (ARCH:ENCODER:WIDTH sets the decoder width, "
            f"scratch:NAME:WIDTH the model's size)"
        )
    arch, encoder = parts[0].strip().lower(), parts[1].strip()
    if arch == "scratch":
        encoder = encoder.lower()
        if encoder not in SCRATCH_MODELS:
            raise SeglabError(
                f"model spec {spec!r}: unknown scratch model; choose one of {list(SCRATCH_MODELS)}"
            )
    if len(parts) == 3:
        _check_width(spec, arch, encoder, parts[2].strip())
    if arch not in ARCHITECTURES:
        raise SeglabError(
            f"model spec {spec!r}: unknown architecture {arch!r}; choose one of {ARCHITECTURES}"
        )
    if arch != "scratch" and not _is_encoder(encoder):
        candidates = [*LITE_ENCODERS, *smp.encoders.get_encoder_names()]
        close = difflib.get_close_matches(encoder, candidates + ["tu-" + n for n in timm.list_models()], n=4)
        raise SeglabError(
            f"model spec {spec!r}: unknown encoder {encoder!r}"
            f"{'; did you mean ' + ', '.join(close) + '?' if close else ''} "
            f"(valid: efficientnet-lite0|1|2, smp.encoders.get_encoder_names(), or tu-<name from timm.list_models()>)"
        )
    return arch, encoder


def _check_width(spec: str, arch: str, encoder: str, width: str) -> int:
    if arch == "scratch":
        what, step, low, high, default = SCRATCH_WIDTH[encoder]
        if not width.isdigit() or int(width) % step or not low <= int(width) <= high:
            raise SeglabError(f"model spec {spec!r}: the size of scratch:{encoder} ({what}, default {default}) "
                              f"must be a multiple of {step} from {low} to {high}")
        return int(width)
    if arch not in DECODER_WIDTH:
        raise SeglabError(f"model spec {spec!r}: the decoder width (third part) is not a setting of {arch}; "
                          f"it is for {', '.join(sorted(DECODER_WIDTH))} (and sizes scratch models)")
    step = 64 if arch == "fpn" else 16  # FPN's segmentation blocks (W/2 channels) use 32-group norms
    if not width.isdigit() or int(width) % step or not step <= int(width) <= 1024:
        raise SeglabError(f"model spec {spec!r}: decoder width {width!r} must be a multiple of {step} "
                          f"from {step} to 1024")
    return int(width)


def decoder_width(spec: str) -> int | None:
    """W of an "arch:encoder:W" spec (checked), None for "arch:encoder"; for scratch models, their size."""
    parts = spec.split(":")
    if len(parts) != 3:
        return None
    arch, encoder = parts[0].strip().lower(), parts[1].strip().lower()
    return _check_width(spec, arch, encoder, parts[2].strip())


def _is_encoder(name: str) -> bool:
    if name in LITE_ENCODERS or name in smp.encoders.get_encoder_names():
        return True
    return name.startswith("tu-") and timm.is_model(name[3:])
