"""Files in and out of prediction: input lists, index PNGs, probabilities, overlays, legends, video frames.

Image files are decoded by ``seglab.imageio`` (re-exported here as ``read_image``), the reader training
uses too, so a file gives the same upright RGB pixels whether it is trained on or predicted.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw

from seglab.errors import SeglabError
from seglab.imageio import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, read_image  # noqa: F401 - read here by the CLI


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS


@dataclass
class Inputs:
    """What a list of paths holds: media files to predict, and the paths left out with the reason."""

    files: list[tuple[Path, Path]]  # (file, its output name relative to --out, without extension)
    skipped: list[tuple[Path, str]]  # asked for but unusable (missing path, empty folder)
    ignored: list[tuple[Path, str]]  # other files found inside folders (notes, annotations)


def list_inputs(paths: Iterable[str | Path]) -> Inputs:
    """Image and video files under ``paths``; folders are searched recursively and keep their subfolders
    in the output names, so ``a/x.png`` and ``b/x.png`` do not overwrite each other.

    Files given by name are always tried (the reader decides); inside folders, files with other extensions
    are ignored (and listed) and hidden files are passed over. Raises SeglabError when nothing is left.
    """
    media = IMAGE_EXTENSIONS + VIDEO_EXTENSIONS
    result, empty = Inputs([], [], []), []
    for p in map(Path, paths):
        if p.is_file():
            result.files.append((p, Path(p.stem)))
        elif p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and not _hidden(f.relative_to(p)))
            kept = [(f, f.relative_to(p).with_suffix("")) for f in found if f.suffix.lower() in media]
            result.ignored += [(f, f"not an image or video (extension '{f.suffix}')") for f in found
                               if f.suffix.lower() not in media]
            result.files += kept
            if not kept:
                empty.append(p)
        else:
            result.skipped.append((p, "no such file or folder"))
    if not result.files:
        where = ", ".join(str(p) for p in empty) or ", ".join(str(p) for p, _ in result.skipped) or "(none given)"
        raise SeglabError(f"{where}: no images or videos to predict (looked for {' '.join(media)})")
    result.skipped += [(p, "folder holds no images or videos") for p in empty]
    return result


def _hidden(rel: Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)


def write_index_png(path: Path, mask: np.ndarray, palette: np.ndarray) -> None:
    """Save an (H, W) label mask as a palette ('P' mode) PNG: pixel values are class indices, and any viewer
    shows the class colours."""
    img = Image.fromarray(mask.astype(np.uint8), mode="P")
    img.putpalette(palette.astype(np.uint8).ravel().tolist())  # (256, 3) -> 768 values
    img.save(path, optimize=False)


def write_grey_png(path: Path, mask: np.ndarray) -> None:
    """Save an (H, W) uint8 mask as a greyscale PNG, values as they are (e.g. 0 and 255 for binary masks)."""
    Image.fromarray(np.ascontiguousarray(mask, dtype=np.uint8)).save(path)  # 2-D uint8: mode L


def write_probabilities(path: Path, probs: np.ndarray, class_names: list[str], temperature: float = 1.0) -> None:
    """Save (C, H, W) probabilities by ``path``'s suffix: ``.npy`` the float32 array alone (as it always was);
    ``.npz`` compressed and self-describing, for keeping many: "probabilities" in float16 (half the bytes
    before compression, within 5e-4 of the float32 values), "class_names" (C,) and "temperature", the T the
    logits were divided by (1.0: plain softmax)."""
    if path.suffix == ".npy":
        np.save(path, probs.astype(np.float32, copy=False))
        return
    np.savez_compressed(path, probabilities=probs.astype(np.float16), class_names=np.asarray(class_names, dtype=str),
                        temperature=np.float64(temperature))


def write_rgb(path: Path, image: np.ndarray) -> None:
    Image.fromarray(image).save(path)


def overlay(image: np.ndarray, mask: np.ndarray, palette: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """(H, W, 3) uint8: the image blended with the class colours, ``alpha`` = weight of the colours."""
    colors = palette[mask].astype(np.float32)  # (H, W, 3)
    return (image.astype(np.float32) * (1 - alpha) + colors * alpha + 0.5).astype(np.uint8)


def legend(names: list[str], colors: list[tuple[int, int, int]], row: int = 20) -> np.ndarray:
    """(rows*row, width, 3) uint8 image: one colour swatch and class name per row, to read overlays by."""
    width = 2 * row + 8 * max(len(n) for n in names) + 8
    img = Image.new("RGB", (width, row * len(names)), "white")
    draw = ImageDraw.Draw(img)
    for i, (name, color) in enumerate(zip(names, colors)):
        y = i * row
        draw.rectangle([2, y + 2, row * 1.5, y + row - 3], fill=tuple(int(c) for c in color), outline="black")
        draw.text((row * 1.5 + 6, y + row // 2 - 6), f"{i} {name}", fill="black")
    return np.asarray(img)


# ---------------------------------------------------------------------------------------------------
# Video


@dataclass
class VideoInfo:
    fps: float
    size: tuple[int, int]  # (H, W)
    frames: int  # as the container reports it; may be 0 or approximate


def open_video(path: Path) -> tuple[cv2.VideoCapture, VideoInfo]:
    """An opened capture and its facts; SeglabError naming the file when it cannot be read."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise SeglabError(f"{path}: cannot open video (not a video, or a codec OpenCV lacks)")
    h, w = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
    if h <= 0 or w <= 0:
        cap.release()
        raise SeglabError(f"{path}: cannot read video frames")
    fps = cap.get(cv2.CAP_PROP_FPS)
    return cap, VideoInfo(fps if fps and fps > 0 else 25.0, (h, w), int(cap.get(cv2.CAP_PROP_FRAME_COUNT)))


def read_frames(cap: cv2.VideoCapture, batch: int, path: Path) -> Iterator[list[np.ndarray]]:
    """Lists of up to ``batch`` (H, W, 3) RGB frames, until the video ends; releases the capture. A decoder
    error is a SeglabError naming ``path`` and the frame, so the video is reported and skipped."""
    try:
        frames, done = [], 0
        while True:
            try:
                ok, frame = cap.read()
            except (cv2.error, OSError) as e:
                raise SeglabError(f"{path}: cannot decode frame {done + len(frames) + 1} ({e})") from None
            if not ok:
                break
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
            if len(frames) == batch:
                yield frames
                frames, done = [], done + batch
        if frames:
            yield frames
    finally:
        cap.release()


def check_complete(path: Path, info: VideoInfo, decoded: int) -> None:
    """SeglabError when clearly fewer frames decoded than the container lists (a truncated or corrupt file);
    a frame or 1% short is let pass, as some containers only estimate their count."""
    if info.frames - decoded > max(1, info.frames // 100):
        raise SeglabError(f"{path}: decoded {decoded} of the {info.frames} frames it lists (truncated or corrupt)")


def video_writer(path: Path, info: VideoInfo) -> cv2.VideoWriter:
    """An MPEG-4 (``.mp4``) or Motion-JPEG (``.avi``) writer: both ship with opencv-python-headless."""
    fourcc = "MJPG" if path.suffix.lower() == ".avi" else "mp4v"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), info.fps, (info.size[1], info.size[0]))
    if not writer.isOpened():
        raise SeglabError(f"{path}: cannot write video with codec {fourcc}")
    return writer


def write_frame(writer: cv2.VideoWriter, frame: np.ndarray) -> None:
    writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
