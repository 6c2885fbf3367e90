"""The ``predict`` and ``export`` commands, added to the main CLI by ``register(app)``.

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

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from seglab.config import parse_size
from seglab.errors import SeglabError
from seglab.inference import io
from seglab.inference.predictor import Predictor, TorchBackend, load

OUTPUT_FORMATS = ("png", "npy")
EXPORT_FORMATS = ("onnx", "pretrained")


@dataclass
class PredictSummary:
    images: int = 0  # still images predicted
    videos: int = 0
    frames: int = 0  # video frames predicted
    seconds: float = 0.0
    written: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def per_second(self) -> float:
        return (self.images + self.frames) / max(self.seconds, 1e-9)


@dataclass
class OutputOptions:
    out: Path
    overlay: bool = False
    alpha: float = 0.5
    fmt: str = "png"  # png: index mask; npy: (C, H, W) float32 probabilities
    dataset_values: bool = False  # png masks hold each class's value in the training masks (e.g. 0/255)


def predict_paths(predictor: Predictor, paths: list[Path], options: OutputOptions, legend: bool = False,
                  progress: bool = False, echo=typer.echo) -> PredictSummary:
    """Predict every image and video under ``paths`` into ``options.out``; bad inputs are reported through
    ``echo`` and skipped, the rest is still written. Raises SeglabError only when no input is usable."""
    if options.fmt not in OUTPUT_FORMATS:
        raise SeglabError(f"--format {options.fmt}: choose one of {', '.join(OUTPUT_FORMATS)}")
    if not 0 <= options.alpha <= 1:
        raise SeglabError(f"--alpha {options.alpha}: must be between 0 and 1")
    inputs = io.list_inputs(paths)
    summary = PredictSummary(skipped=list(inputs.skipped))
    for path, reason in inputs.ignored:
        echo(f"ignored {path}: {reason}", err=True)
    for path, reason in inputs.skipped:
        echo(f"skipped {path}: {reason}", err=True)
    options.out.mkdir(parents=True, exist_ok=True)
    if legend:
        summary.written.append(options.out / "legend.png")
        io.write_rgb(summary.written[-1], io.legend(list(predictor.classes.names), list(predictor.classes.colors)))

    files = list(_unique(inputs.files, summary, echo))
    videos = [(f, name) for f, name in files if io.is_video(f)]
    images = [(f, name) for f, name in files if not io.is_video(f)]
    t0 = time.monotonic()
    with _progress(progress, len(images) + len(videos)) as advance:
        for s in range(0, len(images), predictor.batch_size):
            _predict_images(predictor, images[s:s + predictor.batch_size], options, summary, echo)
            advance(len(images[s:s + predictor.batch_size]))
        for f, name in videos:
            _predict_video(predictor, f, name, options, summary, echo)
            advance(1)
    summary.seconds = time.monotonic() - t0
    if summary.images + summary.frames == 0:
        raise SeglabError(f"no outputs written: all {len(summary.skipped)} inputs were skipped (see above)")
    return summary


def _unique(files, summary: PredictSummary, echo):
    """Drop inputs whose output name another input already takes (photo.jpg and photo.png in one folder)."""
    seen: dict[Path, Path] = {}
    for f, name in files:
        if name in seen:
            echo(f"skipped {f}: same output name as {seen[name]}; predict it separately", err=True)
            summary.skipped.append((f, "duplicate output name"))
            continue
        seen[name] = f
        yield f, name


def _predict_images(predictor, batch, options: OutputOptions, summary: PredictSummary, echo) -> None:
    """Read a batch of files (skipping unreadable ones), predict them together, write their outputs."""
    good = []
    for f, name in batch:
        try:
            good.append((name, io.read_image(f)))
        except SeglabError as e:
            echo(f"skipped {e}", err=True)
            summary.skipped.append((f, str(e)))
    if not good:
        return
    results = predictor.predict_batch([image for _, image in good], proba=options.fmt == "npy")
    for (name, image), result in zip(good, results):
        base = options.out / name
        base.parent.mkdir(parents=True, exist_ok=True)
        if options.fmt == "npy":
            np.save(base.with_suffix(".npy"), result)  # (C, H, W) float32
            mask = result.argmax(0).astype(np.uint8)
        else:
            if options.dataset_values:  # grey PNG in the dataset's own mask values, e.g. 0 and 255
                io.write_grey_png(base.with_suffix(".png"), predictor.classes.value_table()[result])
            else:
                io.write_index_png(base.with_suffix(".png"), result, predictor.palette())
            mask = result
        summary.written.append(base.with_suffix("." + options.fmt))
        if options.overlay:
            overlay_path = base.with_name(base.name + "_overlay.png")
            io.write_rgb(overlay_path, io.overlay(image, mask, predictor.palette(), options.alpha))
            summary.written.append(overlay_path)
        summary.images += 1


def _predict_video(predictor, path: Path, name: Path, options: OutputOptions, summary: PredictSummary,
                   echo) -> None:
    """Write ``<name>_overlay.mp4`` (``.avi`` for .avi input): every frame with its prediction overlaid."""
    out = (options.out / name).with_name(name.name + "_overlay" + (".avi" if path.suffix.lower() == ".avi"
                                                                   else ".mp4"))
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        cap, info = io.open_video(path)
        writer = io.video_writer(out, info)
    except SeglabError as e:
        echo(f"skipped {e}", err=True)
        summary.skipped.append((path, str(e)))
        return
    frames = 0
    try:
        for batch in io.read_frames(cap, predictor.batch_size):
            for frame, mask in zip(batch, predictor.predict_batch(batch)):
                io.write_frame(writer, io.overlay(frame, mask, predictor.palette(), options.alpha))
            frames += len(batch)
    finally:
        writer.release()
    if frames == 0:
        out.unlink(missing_ok=True)
        echo(f"skipped {path}: no frame could be decoded", err=True)
        summary.skipped.append((path, "no frame could be decoded"))
        return
    summary.videos, summary.frames = summary.videos + 1, summary.frames + frames
    summary.written.append(out)


@contextlib.contextmanager
def _progress(enabled: bool, total: int):
    """Yields ``advance(n)``: a rich progress bar on stderr (drawn on terminals only) when enabled."""
    if not enabled:
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("predicting", total=total)
        yield lambda n: bar.advance(task, n)


def _summary_line(s: PredictSummary, out: Path) -> str:
    videos = f" and {s.videos} video{'s' * (s.videos != 1)} ({s.frames} frames)" if s.videos else ""
    skipped = f"; skipped {len(s.skipped)}" if s.skipped else ""
    return (f"predicted {s.images} image{'s' * (s.images != 1)}{videos} in {s.seconds:.1f} s "
            f"({s.per_second:.1f} images/s); wrote {len(s.written)} files to {out}{skipped}")


# ---------------------------------------------------------------------------------------------------
# Commands


def predict(
    target: Annotated[Path, typer.Argument(help="Run folder, .ckpt, save_pretrained folder or .onnx file.")],
    inputs: Annotated[list[Path], typer.Argument(help="Images, folders (searched recursively) and videos.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("predictions"),
    overlay: Annotated[bool, typer.Option(help="Also write <name>_overlay.png (image + colours).")] = False,
    alpha: Annotated[float, typer.Option(help="Weight of the class colours in overlays.")] = 0.5,
    legend: Annotated[bool, typer.Option(help="Also write legend.png: class colours and names.")] = False,
    fmt: Annotated[str, typer.Option("--format", help="png: index mask with the class palette; "
                                                      "npy: (C, H, W) float32 probabilities.")] = "png",
    batch: Annotated[int, typer.Option(help="Images (or tiles) per forward pass.")] = 4,
    tile: Annotated[int, typer.Option(help="Largest tile side; bigger images are tiled (bounds memory).")] = 1024,
    overlap: Annotated[int, typer.Option(help="Pixels neighbouring tiles share (multiple of 32).")] = 128,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    amp: Annotated[bool | None, typer.Option("--amp/--no-amp", help="Autocast (default: CUDA only).")] = None,
    input_size: Annotated[str | None, typer.Option(help="Model input HxW, or native (default: the scale the "
                                                        "model was trained at).")] = None,
    tta: Annotated[str | None, typer.Option(help="Test-time augmentation: none, flip or flip+scales "
                                                 "(default: the run's setting).")] = None,
    dataset_values: Annotated[bool, typer.Option(help="Write PNG masks in the values the training masks used "
                                                      "(e.g. 0/255, from classes.yaml's values:) instead of "
                                                      "class indices with a palette.")] = False,
):
    """Predict label masks for images, folders and videos; exit 1 if some inputs were skipped."""
    if out.exists() and not out.is_dir():
        raise SeglabError(f"--out {out}: is a file; predictions go into a folder (give a new or existing folder)")
    predictor = load(target, device=device, amp=amp, tile=tile, overlap=overlap, batch_size=batch,
                     input_size=_input_size(input_size), tta=tta)
    summary = predict_paths(predictor, inputs, OutputOptions(out, overlay, alpha, fmt, dataset_values), legend=legend,
                            progress=True)
    typer.echo(_summary_line(summary, out))
    if summary.skipped:
        raise typer.Exit(1)


def _input_size(text: str | None) -> tuple[int, int] | str | None:
    if text in (None, "native"):
        return text
    try:
        h, w = parse_size(text)
    except ValueError:
        raise SeglabError(f"--input-size {text!r}: expected HxW (e.g. 192x256) or native") from None
    if h % 32 or w % 32:
        raise SeglabError(f"--input-size {text}: height and width must be multiples of 32")
    return h, w


MIN_OPSET, MAX_OPSET = 7, 23  # what torch.onnx's TorchScript exporter (torch 2.14) accepts


def export(
    target: Annotated[Path, typer.Argument(help="Run folder, .ckpt or save_pretrained folder.")],
    fmt: Annotated[str, typer.Option("--format", help="onnx, or pretrained (smp save_pretrained folder).")] = "onnx",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Default: model.onnx or pretrained/ next to "
                                                                  "the checkpoint's run.")] = None,
    dynamic: Annotated[bool, typer.Option(help="ONNX: free batch, height and width.")] = False,
    size: Annotated[str | None, typer.Option(help="ONNX: input HxW of a static export, and of the check "
                                                  "(default: the model's training size, else 512x512).")] = None,
    opset: Annotated[int, typer.Option(help="ONNX opset.")] = 17,
):
    """Export a trained model to ONNX (checked against PyTorch) or a self-contained pretrained folder."""
    from seglab.inference import export as ex

    if fmt not in EXPORT_FORMATS:
        raise SeglabError(f"--format {fmt}: choose one of {', '.join(EXPORT_FORMATS)}")
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise SeglabError(f"--opset {opset}: this torch exports ONNX opsets {MIN_OPSET} to {MAX_OPSET}")
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
    if size is None:
        h, w = predictor.input_size or (512, 512)
    else:
        try:
            h, w = parse_size(size)
        except ValueError:
            raise SeglabError(f"--size {size!r}: expected HxW, e.g. 512x512") from None
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


def register(app: typer.Typer) -> None:
    """Add ``predict`` and ``export`` to the main CLI."""
    app.command("predict")(predict)
    app.command("export")(export)
