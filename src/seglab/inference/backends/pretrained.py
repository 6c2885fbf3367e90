"""Read a ``save_pretrained`` folder (layout: inference/export/pretrained.py) back into a model: safetensors
weights only, so loading runs no code, and no run folder needed."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from seglab.data.classes import ClassSet
from seglab.errors import SeglabError, first_line


def load_pretrained(folder: Path):
    """(SegmentationNet in eval mode, ClassSet) from a save_pretrained folder; needs no run folder."""
    from safetensors.torch import load_model

    from seglab.models import build_model

    folder = Path(folder)
    meta_path, weights = folder / "seglab.json", folder / "model.safetensors"
    try:
        meta = json.loads(meta_path.read_text())
        classes = ClassSet.from_fields(meta)
        spec, layout = meta["spec"], meta.get("weights_layout", "seglab")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SeglabError(f"{meta_path}: not a seglab.json from save_pretrained ({type(e).__name__}: {e})") from None
    if not weights.is_file():
        raise SeglabError(f"{weights}: missing; the folder needs the weights saved next to seglab.json")
    model = build_model(spec, classes.num_classes, weights="none")
    target = model.net if layout == "smp" else model
    try:
        load_model(target, str(weights), strict=True)
    except Exception as e:  # noqa: BLE001 - shape/key mismatches and corrupt files alike
        raise SeglabError(f"{weights}: weights do not fit {spec} with {classes.num_classes} classes "
                          f"({first_line(e, 200)})") from None
    if layout == "smp" and (tuple(meta["mean"]), tuple(meta["std"])) != (model.mean, model.std):
        mean = torch.tensor(meta["mean"], dtype=torch.float32).mul(255).view(1, -1, 1, 1)  # 0..1 -> 0..255
        std = torch.tensor(meta["std"], dtype=torch.float32).mul(255).view(1, -1, 1, 1)
        model.load_state_dict({"mean": mean, "std": std}, strict=False)
    return model.eval(), classes
