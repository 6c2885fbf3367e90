"""``seglab predict`` and ``seglab export``: use a trained model on files, or ship it.

    seglab predict runs/<run> photos/ clip.mp4 --out preds --overlay --legend
    seglab predict runs/<run>/model.onnx big.tif --tile 1024 --overlap 128
    seglab predict runs/<run> photos/ --format npy
    seglab predict runs/<run> photos/ --format npz --calibrated   # float16, softmax(logits / T) of run.json's T
    seglab predict runs/<run> photos/ --backend openvino
    seglab export runs/<run> --format onnx --dynamic
    seglab export runs/<run> --format openvino --int8     # calibrated on the run's training images
    seglab export runs/<run> --format pretrained --out hub/my-camvid-unet

``predict`` exit codes: 0 when every input was written; 1 when some inputs were skipped (each one reported
as ``skipped <file>: <reason>``) and the others written; 2 (``error: ...``) when nothing could be written.
Files with other extensions found inside folders are listed as ``ignored`` and do not change the code.
``--calibrated`` on a model without a fitted temperature is exit 2 before anything is written, saying how to
get one (``seglab evaluate RUN`` fits it on val).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from seglab.cli.options import Batch, Calibration, Threads, Tta, size_option

app = typer.Typer()


@app.command()
def predict(
    target: Annotated[Path, typer.Argument(help="Run folder, .ckpt, save_pretrained folder or .onnx file.")],
    inputs: Annotated[list[Path], typer.Argument(help="Images, folders (searched recursively) and videos.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("predictions"),
    overlay: Annotated[bool, typer.Option(help="Also write <name>_overlay.png (image + colours).")] = False,
    alpha: Annotated[float, typer.Option(help="Weight of the class colours in overlays.")] = 0.5,
    legend: Annotated[bool, typer.Option(help="Also write legend.png: class colours and names.")] = False,
    fmt: Annotated[str, typer.Option("--format", help="png: index mask with the class palette; "
                                                      "npy: (C, H, W) float32 probabilities; npz: compressed, "
                                                      "'probabilities' (C, H, W) float16, 'class_names', "
                                                      "'temperature'.")] = "png",
    calibrated: Annotated[bool, typer.Option("--calibrated", help="npy/npz: calibrated probabilities, softmax("
                                                                  "logits / T) with the temperature T `seglab "
                                                                  "evaluate` fitted on val (run.json, or an "
                                                                  "export's metadata); fitted at the run's "
                                                                  "input size and TTA.")] = False,
    batch: Batch = 4,
    tile: Annotated[int, typer.Option(help="Largest tile side; bigger images are tiled (bounds memory).")] = 1024,
    overlap: Annotated[int, typer.Option(help="Pixels neighbouring tiles share (multiple of 32).")] = 128,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    amp: Annotated[bool | None, typer.Option("--amp/--no-amp", help="16-bit autocast (default: the run's train.precision "
                                                                     "on this device).")] = None,
    input_size: Annotated[str | None, size_option("Model input HxW, or native (default: the scale the model "
                                                  "was trained at).", native=True, name="--input-size")] = None,
    tta: Tta = None,
    backend: Annotated[str, typer.Option(help="What runs the model: auto (PyTorch for trained models, the "
                                              "file's runtime for exports), torch, torch-compile, onnxruntime "
                                              "or openvino.")] = "auto",
    threads: Threads = None,
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
    if threads:
        import torch

        torch.set_num_threads(threads)
    predictor = load(target, device=device, amp=amp, tile=tile, overlap=overlap, batch_size=batch,
                     input_size=input_size, tta=tta, backend=backend, threads=threads)
    options = OutputOptions(out, overlay, alpha, fmt, dataset_values, calibrated)
    summary = predict_paths(predictor, inputs, options, legend=legend, progress=True)
    typer.echo(summary_line(summary, out))
    if summary.skipped:
        raise typer.Exit(1)


@app.command()
def export(
    target: Annotated[Path, typer.Argument(help="Run folder, .ckpt or save_pretrained folder.")],
    fmt: Annotated[str, typer.Option("--format", help="onnx, openvino (IR .xml + .bin), or pretrained (smp "
                                                      "save_pretrained folder).")] = "onnx",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="File (the format's suffix is added if missing) or "
                                                                  "folder; default: model[_int8].onnx|.xml or "
                                                                  "pretrained/ next to the checkpoint's run.")] = None,
    int8: Annotated[bool, typer.Option("--int8", help="ONNX/OpenVINO: INT8 by static quantization, calibrated "
                                                      "on the run's training images.")] = False,
    dynamic: Annotated[bool, typer.Option(help="ONNX/OpenVINO: free batch, height and width.")] = False,
    size: Annotated[str | None, size_option("ONNX/OpenVINO: input HxW of a static export (default: the model's "
                                            "training size, else the dataset's frame size padded, else "
                                            "512x512).")] = None,
    opset: Annotated[int, typer.Option(help="ONNX opset.")] = 17,
    data: Annotated[Path | None, typer.Option(help="Dataset to calibrate and check on (default: the run's "
                                                   "own).")] = None,
    calibration: Calibration = 100,
    check: Annotated[int, typer.Option(min=1, help="Validation images the export is checked on.")] = 20,
):
    """Export a trained model to ONNX or OpenVINO (checked against PyTorch on real images) or a pretrained folder."""
    from seglab.inference.pipeline import export_model

    done = export_model(target, fmt, out, int8=int8, dynamic=dynamic, size=size, opset=opset, data=data,
                        calibration_images=calibration, check_images=check)
    c = done.check
    if fmt == "pretrained":
        typer.echo(f"wrote {done.path} ({', '.join(f.name for f in done.files)}); reloaded from it: "
                   f"{100 * c.pixel_agreement:.2f}% of pixels agree. Load with seglab.load('{done.path}')")
        return
    megabytes = sum(f.stat().st_size for f in done.files) / 1e6
    typer.echo(f"wrote {done.path} ({fmt} {done.precision}, {megabytes:.1f} MB, {done.shape})")
    miou = (f"; mIoU {c.miou_pytorch:.4f} (PyTorch fp32) -> {c.miou_export:.4f} "
            f"({100 * (c.miou_export - c.miou_pytorch):+.2f} points)") if c.miou_pytorch is not None else ""
    typer.echo(f"checked on {c.images}: {100 * c.pixel_agreement:.2f}% of pixels as PyTorch fp32{miou}")
    if not done.agrees:
        typer.echo(f"warning: the export labels fewer than {100 * c.required:.1f}% of pixels as PyTorch does",
                   err=True)
        raise typer.Exit(1)
