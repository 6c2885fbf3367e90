"""Predict every image and video under some paths into an output folder: the work behind ``seglab predict``.

Bad inputs are reported (through ``echo``) and skipped, the rest is still written; video frames are read,
predicted and overlaid in batches, the three at once (inference/stream.py).
"""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seglab.errors import BadValue, SeglabError
from seglab.inference import io, stream
from seglab.inference.predictor import Predictor

OUTPUT_FORMATS = ("png", "npy", "npz")
PROBABILITY_FORMATS = ("npy", "npz")  # what each format holds: see OutputOptions.fmt


def _echo(text: str, err: bool = False) -> None:
    print(text, file=sys.stderr if err else sys.stdout)


@dataclass
class PredictSummary:
    images: int = 0  # still images predicted
    videos: int = 0
    frames: int = 0  # video frames predicted
    seconds: float = 0.0
    steady_frames: int = 0  # video frames after each video's first batch, and the seconds they took
    steady_seconds: float = 0.0
    written: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def per_second(self) -> float:
        return (self.images + self.frames) / max(self.seconds, 1e-9)

    @property
    def video_fps(self) -> float:
        """Sustained video rate: frames over seconds, each video's first batch (its warm-up) left out."""
        return self.steady_frames / max(self.steady_seconds, 1e-9)


@dataclass
class OutputOptions:
    out: Path
    overlay: bool = False
    alpha: float = 0.5
    # png: index mask; npy: (C, H, W) float32 probabilities; npz: compressed float16 probabilities with the
    # class names and the temperature used (io.write_probabilities)
    fmt: str = "png"
    dataset_values: bool = False  # png masks hold each class's value in the training masks (e.g. 0/255)
    calibrated: bool = False  # probabilities are softmax(logits / T) with the model's fitted temperature T


def predict_paths(predictor: Predictor, paths: list[Path], options: OutputOptions, legend: bool = False,
                  progress: bool = False, echo=_echo) -> PredictSummary:
    """Predict every image and video under ``paths`` into ``options.out``; bad inputs are reported through
    ``echo`` and skipped, the rest is still written. Raises SeglabError only when no input is usable."""
    if options.fmt not in OUTPUT_FORMATS:
        raise BadValue("format", options.fmt, f"choose one of {', '.join(OUTPUT_FORMATS)}")
    if not 0 <= options.alpha <= 1:
        raise BadValue("alpha", options.alpha, "must be between 0 and 1")
    if options.calibrated and options.fmt not in PROBABILITY_FORMATS:
        raise BadValue("calibrated", True, f"a temperature changes the probabilities --format "
                                           f"{' or '.join(PROBABILITY_FORMATS)} writes, not the masks {options.fmt} "
                                           "holds; add --format npz")
    if options.calibrated:
        predictor.calibration.require()  # before any output, not after the first batch
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
    proba = options.fmt in PROBABILITY_FORMATS
    results = predictor.predict_batch([image for _, image in good], proba=proba, calibrated=options.calibrated)
    temperature = predictor.temperature if options.calibrated else 1.0
    for (name, image), result in zip(good, results):
        base = options.out / name
        base.parent.mkdir(parents=True, exist_ok=True)
        if proba:
            io.write_probabilities(base.with_suffix("." + options.fmt), result, list(predictor.classes.names),
                                   temperature)
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
    """Write ``<name>_overlay.mp4`` (``.avi`` for .avi input): every frame with its prediction overlaid, and
    report the video's frame count and sustained rate on one line. An unreadable video is reported and skipped."""
    out = (options.out / name).with_name(name.name + "_overlay" + (".avi" if path.suffix.lower() == ".avi"
                                                                   else ".mp4"))
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        stats = _stream_video(predictor, path, out, options.alpha)
    except SeglabError as e:
        echo(f"skipped {e}", err=True)
        summary.skipped.append((path, str(e)))
        return
    echo(f"{path}: {stats.describe()}")
    summary.videos, summary.frames = summary.videos + 1, summary.frames + stats.frames
    summary.steady_frames += stats.steady_frames
    summary.steady_seconds += stats.steady_seconds
    summary.written.append(out)


def _stream_video(predictor, path: Path, out: Path, alpha: float) -> stream.StreamStats:
    """Decode, predict and encode the frames at once (inference/stream.py). SeglabError, and no partial
    ``out``, when the video cannot be opened or read to its end."""
    cap, info = io.open_video(path)
    try:
        writer = io.video_writer(out, info)
    except SeglabError:
        cap.release()
        raise
    palette = predictor.palette()

    def write(frames, masks):
        for frame, mask in zip(frames, masks):
            io.write_frame(writer, io.overlay(frame, mask, palette, alpha))

    try:
        try:
            stats = stream.run(io.read_frames(cap, predictor.batch_size, path), predictor.predict_batch, write)
        finally:
            writer.release()
        if stats.frames == 0:
            raise SeglabError(f"{path}: no frame could be decoded")
        io.check_complete(path, info, stats.frames)
    except SeglabError:
        out.unlink(missing_ok=True)
        raise
    return stats


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


def summary_line(s: PredictSummary, out: Path) -> str:
    videos = (f" and {s.videos} video{'s' * (s.videos != 1)} ({s.frames} frames) at {s.video_fps:.1f} FPS sustained"
              if s.videos else "")
    skipped = f"; skipped {len(s.skipped)}" if s.skipped else ""
    return (f"predicted {s.images} image{'s' * (s.images != 1)}{videos} in {s.seconds:.1f} s "
            f"({s.per_second:.1f} images/s); wrote {len(s.written)} files to {out}{skipped}")
