"""Hand a trained model on: ONNX (checked against PyTorch) and a self-contained ``save_pretrained`` folder.

    folder/
        seglab.json         spec, class names and colours, mean/std, input range, ignore index
        model.safetensors   weights (never pickled, so loading cannot run code)
        config.json         smp models only: smp's own config, so ``smp.from_pretrained(folder)`` works
        README.md           smp models only: smp's model card

For smp models the folder follows segmentation_models.pytorch's convention (``model.net.save_pretrained``),
so it can be pushed to a model hub as is; seglab.json adds what smp does not store.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch

from seglab.constants import IGNORE_INDEX, SIZE_DIVISOR, VERSION
from seglab.data.classes import ClassSet
from seglab.errors import BadValue, SeglabError, first_line
from seglab.sizes import check_model_size

ONNX_INPUT, ONNX_OUTPUT = "images", "logits"
ONNX_OPSET = 17
FORMAT = "seglab-pretrained"
INPUT_NOTE = (f"RGB (B, 3, H, W), values 0..255 (uint8 or float), H and W multiples of {SIZE_DIVISOR}; "
              "normalised inside")


def model_info(model: torch.nn.Module, classes: ClassSet, input_size: tuple[int, int] | None = None,
               precision: str = "fp32") -> dict:
    """What a user needs besides the weights: stored in seglab.json, the ONNX metadata and the OpenVINO IR's
    runtime info. ``precision``: what the file computes in (fp32, or int8 for quantized exports)."""
    if model.num_classes != classes.num_classes:
        raise SeglabError(f"model has {model.num_classes} outputs but {classes.num_classes} class names")
    return {"format": FORMAT, "version": 1, "seglab_version": VERSION, "spec": model.spec,
            "num_classes": model.num_classes, **classes.to_fields(), "mean": list(model.mean), "std": list(model.std),
            "input": INPUT_NOTE, "ignore_index": IGNORE_INDEX,
            "input_size": list(input_size) if input_size else None,  # the scale it was trained at; None: native
            "precision": precision}


# ---------------------------------------------------------------------------------------------------
# ONNX


def export_onnx(model: torch.nn.Module, classes: ClassSet, path: Path, dynamic: bool = True,
                size: tuple[int, int] = (512, 512), opset: int = ONNX_OPSET,
                input_size: tuple[int, int] | None = None) -> Path:
    """Write ``model`` as ONNX: input "images" (B, 3, H, W) float 0..255, output "logits" (B, C, H, W).

    ``dynamic`` leaves batch, height and width free; otherwise they are fixed to 1 x ``size``.
    Class names, colours and normalisation go into the file's metadata (key "seglab").
    """
    try:
        check_model_size(size)
    except ValueError as e:
        raise BadValue("size", size, str(e)) from None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().float()
    sample = torch.zeros(1, 3, *size, device=next(model.parameters()).device)
    axes = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings():
        # The TorchScript-based exporter is deprecated in favour of the dynamo one, which needs onnxscript,
        # not a dependency of seglab; tracer warnings about shape-dependent Python branches are expected.
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(model, (sample,), str(path), dynamo=False, opset_version=opset,
                              input_names=[ONNX_INPUT], output_names=[ONNX_OUTPUT],
                              dynamic_axes={ONNX_INPUT: axes, ONNX_OUTPUT: axes} if dynamic else None)
        except Exception as e:  # noqa: BLE001 - an operator the chosen opset lacks, e.g. bilinear upsampling
            raise BadValue("opset", opset, f"this model cannot be exported at it ({first_line(e, 160)}); "
                              f"use {ONNX_OPSET}, the default") from None
    set_onnx_metadata(path, json.dumps(model_info(model, classes, input_size)))
    return path


def set_onnx_metadata(path: Path, value: str) -> None:
    """Store ``value`` (model_info as JSON) under the key "seglab" of an ONNX file's metadata."""
    import onnx

    proto = onnx.load(str(path))
    kept = [(e.key, e.value) for e in proto.metadata_props if e.key != "seglab"]
    del proto.metadata_props[:]
    for key, v in [*kept, ("seglab", value)]:
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, v
    onnx.save(proto, str(path))


def export_openvino(onnx_path: Path, out: Path, metadata: str, int8_inputs: list | None = None) -> Path:
    """Convert an ONNX export to an OpenVINO IR (``out`` .xml beside its .bin), weights kept in fp32 (the CPU
    picks bf16 at run time where it has it); with ``int8_inputs``, quantized by NNCF on those inputs."""
    import openvino as ov

    model = ov.convert_model(str(onnx_path))
    if int8_inputs is not None:
        from seglab.inference.quantize import quantize_openvino

        model = quantize_openvino(model, int8_inputs)
    model.set_rt_info(metadata, ["seglab"])
    out = Path(out).with_suffix(".xml")
    out.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(out), compress_to_fp16=False)
    return out


def verify_onnx(model: torch.nn.Module, path: Path, sizes: list[tuple[int, int]], batch: int = 2,
                seed: int = 0) -> dict:
    """Run ONNX Runtime and PyTorch on the same random images at each size and compare.

    Returns the largest absolute logit difference and the fraction of pixels whose argmax agrees
    (the worst over ``sizes``), with the numbers per size.
    """
    import onnxruntime as ort

    from seglab.inference.verify import smooth_random_images

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    device = next(model.parameters()).device
    per_size = []
    for i, (h, w) in enumerate(sizes):
        frames = smooth_random_images(batch, (h, w), seed + i)  # photo-like blobs, not per-pixel noise
        images = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float()  # (B, 3, H, W), 0..255
        with torch.inference_mode():
            expected = model.eval()(images.to(device)).float().cpu()
        (got,) = session.run(None, {ONNX_INPUT: images.numpy()})
        got = torch.from_numpy(got)
        per_size.append({"size": [h, w], "max_abs_diff": float((got - expected).abs().max()),
                         "pixel_agreement": float((got.argmax(1) == expected.argmax(1)).float().mean())})
    return {"max_abs_diff": max(r["max_abs_diff"] for r in per_size),
            "pixel_agreement": min(r["pixel_agreement"] for r in per_size), "sizes": per_size}


# ---------------------------------------------------------------------------------------------------
# save_pretrained / load_pretrained


def _smp_net(model: torch.nn.Module):
    """The inner smp model when ``model`` is a SegmentationNet around one, else None."""
    from segmentation_models_pytorch.base import SegmentationModel

    net = getattr(model, "net", None)
    return net if isinstance(net, SegmentationModel) else None


def save_pretrained(model: torch.nn.Module, classes: ClassSet, folder: Path,
                    input_size: tuple[int, int] | None = None) -> Path:
    """Write the folder described in the module docstring; returns it."""
    from safetensors.torch import save_model

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    info = model_info(model, classes, input_size)
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
