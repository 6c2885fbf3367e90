"""Write a self-contained ``save_pretrained`` folder; inference/backends/pretrained.py reads it back.

    folder/
        seglab.json         spec, class names and colours, mean/std, input range, ignore index, temperature
        model.safetensors   weights (never pickled, so loading cannot run code)
        config.json         smp models only: smp's own config, so ``smp.from_pretrained(folder)`` works
        README.md           smp models only: smp's model card

For smp models the folder follows segmentation_models.pytorch's convention (``model.net.save_pretrained``),
so it can be pushed to a model hub as is; seglab.json adds what smp does not store.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from seglab.data.classes import ClassSet
from seglab.inference.metadata import model_info


def _smp_net(model: torch.nn.Module):
    """The inner smp model when ``model`` is a SegmentationNet around one, else None."""
    from segmentation_models_pytorch.base import SegmentationModel

    net = getattr(model, "net", None)
    return net if isinstance(net, SegmentationModel) else None


def save_pretrained(model: torch.nn.Module, classes: ClassSet, folder: Path,
                    input_size: tuple[int, int] | None = None, temperature: float | None = None) -> Path:
    """Write the folder described in the module docstring; returns it. ``temperature``: the run's fitted T
    (metadata.model_info), so the folder alone gives calibrated probabilities."""
    from safetensors.torch import save_model

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    info = model_info(model, classes, input_size, temperature=temperature)
    net = _smp_net(model)
    if net is not None:
        net.save_pretrained(folder)
        # The weights are in the folder: loading must not try to download ImageNet weights first.
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, "encoder_weights": None}, indent=2) + "\n")
        info["weights_layout"] = "smp"  # model.safetensors holds model.net; mean/std live in seglab.json
    else:
        save_model(model, str(folder / "model.safetensors"))
        info["weights_layout"] = "seglab"  # model.safetensors holds the whole SegmentationNet
    (folder / "seglab.json").write_text(json.dumps(info, indent=2) + "\n")
    return folder
