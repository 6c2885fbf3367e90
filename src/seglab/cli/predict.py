"""``seglab predict`` and ``seglab export``: use a trained model on files, or ship it.

    seglab predict runs/<run> photos/ clip.mp4 --out preds --overlay --legend
    seglab predict runs/<run>/model.onnx big.tif --tile 1024 --overlap 128
    seglab predict runs/<run> photos/ --format npy
    seglab export runs/<run> --format onnx --dynamic
    seglab export runs/<run> --format pretrained --out hub/my-camvid-unet

``predict`` exit codes: 0 when every input was written; 1 when some inputs were skipped (each one reported
as ``skipped <file>: <reason>``) and the others written; 2 (``error: ...``) when nothing could be written.
Files with other extensions found inside folders are listed as ``ignored`` and do not change the code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from seglab.cli.options import size_option, with_choices
from seglab.errors import SeglabError

app = typer.Typer()
EXPORT_FORMATS = ("onnx", "pretrained")




@app.command(cls=with_choices(tta="data.tta"))
def predict(
    target: Annotated[Path, typer.Argument(help="Run folder, .ckpt, save_pretrained folder or .onnx file.")],
    inputs: Annotated[list[Path], typer.Argument(help="Images, folders (searched recursively) and videos.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("predictions"),
    overlay: Annotated[bool, typer.Option(help="Also write <name>_overlay.png (image + colours).")] = False,
    alpha: Annotated[float, typer.Option(help="Weight of the class colours in overlays.")] = 0.5,
    legend: Annotated[bool, typer.Option(help="Also write legend.png: class colours and names.")] = False,
    fmt: Annotated[str, typer.Option("--format", help="png: index mask with the class palette; "
                                                      "npy: (C, H, W) float32 probabilities.")] = "png",
    batch: Annotated[int, typer.Option(min=1, help="Images (or tiles) per forward pass.")] = 4,
    tile: Annotated[int, typer.Option(help="Largest tile side; bigger images are tiled (bounds memory).")] = 1024,
    overlap: Annotated[int, typer.Option(help="Pixels neighbouring tiles share (multiple of 32).")] = 128,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    amp: Annotated[bool | None, typer.Option("--amp/--no-amp", help="16-bit autocast (default: the run's train.precision "
                                                                     "on this device).")] = None,
    input_size: Annotated[str | None, size_option("Model input HxW, or native (default: the scale the model "
                                                  "was trained at).", native=True, name="--input-size")] = None,
    tta: Annotated[str | None, typer.Option(help="Test-time augmentation (default: the run's setting).")] = None,
    dataset_values: Annotated[bool, typer.Option(help="Write PNG masks in the values the training masks used "
                                                      "(e.g. 0/255, from classes.yaml's values:) instead of "
                                                      "class indices with a palette.")] = False,
):
    """Predict label masks for images, folders and videos; exit 1 if some inputs were skipped."""
    from seglab.inference.batch import OutputOptions, predict_paths, summary_line
    from seglab.inference.predictor import load

    if out.exists() and not out.is_dir():
        raise typer.BadParameter(f"{out} is a file; predictions go into a folder (give a new or existing one)",
                                 param_hint="'--out'")
    predictor = load(target, device=device, amp=amp, tile=tile, overlap=overlap, batch_size=batch,
                     input_size=input_size, tta=tta)
    summary = predict_paths(predictor, inputs, OutputOptions(out, overlay, alpha, fmt, dataset_values), legend=legend,
                            progress=True)
    typer.echo(summary_line(summary, out))
    if summary.skipped:
        raise typer.Exit(1)


MIN_OPSET, MAX_OPSET = 7, 23  # what torch.onnx's TorchScript exporter (torch 2.14) accepts


@app.command()
def export(
    target: Annotated[Path, typer.Argument(help="Run folder, .ckpt or save_pretrained folder.")],
    fmt: Annotated[str, typer.Option("--format", help="onnx, or pretrained (smp save_pretrained folder).")] = "onnx",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Default: model.onnx or pretrained/ next to "
                                                                  "the checkpoint's run.")] = None,
    dynamic: Annotated[bool, typer.Option(help="ONNX: free batch, height and width.")] = False,
    size: Annotated[str | None, size_option("ONNX: input HxW of a static export, and of the check (default: "
                                            "the model's training size, else 512x512).")] = None,
    opset: Annotated[int, typer.Option(help="ONNX opset.")] = 17,
):
    """Export a trained model to ONNX (checked against PyTorch) or a self-contained pretrained folder."""
    from seglab.inference import export as ex
    from seglab.inference.predictor import TorchBackend, load

    if fmt not in EXPORT_FORMATS:
        raise typer.BadParameter(f"{fmt!r}: choose one of {', '.join(EXPORT_FORMATS)}", param_hint="'--format'")
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise typer.BadParameter(f"{opset}: this torch exports ONNX opsets {MIN_OPSET} to {MAX_OPSET}",
                                 param_hint="'--opset'")
    predictor = load(target, device="cpu", amp=False)  # exports are fp32, contiguous
    if not isinstance(predictor.backend, TorchBackend):
        raise SeglabError(f"{target}: already an ONNX file; export from the run folder or checkpoint")
    model, base = predictor.backend.model, target if target.is_dir() else target.parent
    if fmt == "pretrained":
        folder = ex.save_pretrained(model, predictor.classes, out or base / "pretrained", predictor.input_size)
        check = load(folder, device="cpu", amp=False).predict_batch  # reloaded from the folder alone
        image = np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8)
        agree = float((check([image])[0] == predictor.predict(image)).mean())
        typer.echo(f"wrote {folder} ({', '.join(sorted(p.name for p in folder.iterdir()))}); reloaded from it: "
                   f"{100 * agree:.2f}% of pixels agree. Load with seglab.load('{folder}')")
        return
    h, w = size or predictor.input_size or (512, 512)
    path = ex.export_onnx(model, predictor.classes, out or base / "model.onnx", dynamic=dynamic, size=(h, w),
                          opset=opset, input_size=predictor.input_size)
    sizes = [(h, w), (max(h // 2 // 32 * 32, 32), w + 64)] if dynamic else [(h, w)]
    report = ex.verify_onnx(model, path, sizes, batch=2 if dynamic else 1)
    axes = "dynamic batch, height and width" if dynamic else f"static 1x3x{h}x{w}"
    typer.echo(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {axes})")
    typer.echo(f"ONNX Runtime vs PyTorch at {', '.join(f'{a}x{b}' for a, b in sizes)}: max |logit diff| "
               f"{report['max_abs_diff']:.2e}, pixel agreement {100 * report['pixel_agreement']:.3f}%")
    if report["pixel_agreement"] < 0.995:
        typer.echo("warning: the ONNX model disagrees with PyTorch on more than 0.5% of pixels", err=True)
        raise typer.Exit(1)
