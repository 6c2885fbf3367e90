"""Files in and out of prediction: any image as RGB uint8, index PNGs, overlays, legends, video frames.

People bring grayscale scans, RGBA screenshots, 16-bit TIFFs and palette PNGs; the model wants (H, W, 3)
uint8 RGB. Everything is converted here, once, so the predictor only ever sees one layout.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageOps

from seglab.errors import SeglabError, first_line

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")

# PIL modes whose pixels np.asarray gives as numbers to convert ourselves; others go through convert("RGB").
_NUMERIC_MODES = {"L", "LA", "RGB", "RGBA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS


def to_rgb(image: np.ndarray | Image.Image) -> np.ndarray:
    """(H, W, 3) uint8 RGB from any layout and bit depth.

    Arrays are taken as RGB(A) (not OpenCV's BGR). Grey is repeated to three channels, alpha is dropped,
    16-bit (and 32-bit integer) values keep their high byte, floats are read as 0..1 if no value exceeds 1,
    else as 0..255.
    """
    if isinstance(image, Image.Image):
        if image.mode == "P" and "transparency" in image.info:
            image = image.convert("RGBA")  # PIL warns when a palette image with transparency skips this step
        image = np.asarray(image if image.mode in _NUMERIC_MODES else image.convert("RGB"))
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim == 2:
        a = a[..., None].repeat(3, axis=2)  # (H, W) -> (H, W, 3)
    elif a.ndim == 3 and a.shape[2] == 2:
        a = a[..., :1].repeat(3, axis=2)  # grey + alpha -> (H, W, 3)
    elif a.ndim == 3 and a.shape[2] == 4:
        a = a[..., :3]
    if a.ndim != 3 or a.shape[2] != 3 or 0 in a.shape:
        raise ValueError(f"expected an (H, W), (H, W, 3) or (H, W, 4) image, got shape {a.shape}")
    return np.ascontiguousarray(_to_uint8(a))


def _to_uint8(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.uint8:
        return a
    if a.dtype == bool:
        return a.astype(np.uint8) * 255
    if np.issubdtype(a.dtype, np.integer):
        return (np.clip(a, 0, 65535).astype(np.uint32) >> 8).astype(np.uint8)  # 16-bit: keep the high byte
    a = a.astype(np.float32)
    scale = 255.0 if np.nanmax(a) <= 1.0 else 1.0
    return np.clip(np.nan_to_num(a) * scale + 0.5, 0, 255).astype(np.uint8)


def read_image(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an image file, turned upright by its EXIF orientation (as viewers show it).

    Raises SeglabError naming the file when it is not an image or is truncated.
    """
    try:
        with Image.open(path) as img:
            img.load()  # decodes everything now, so a truncated file fails here, not half-way through
            return to_rgb(ImageOps.exif_transpose(img))
    except FileNotFoundError:
        raise SeglabError(f"{path}: no such file") from None
    except Exception as e:  # noqa: BLE001 - PIL raises many types; each means "not a usable image"
        reason = "not an image PIL can read" if type(e).__name__ == "UnidentifiedImageError" \
            else f"unreadable image ({first_line(e, 120) if str(e) else type(e).__name__})"
        raise SeglabError(f"{path}: {reason}") from None


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


def read_frames(cap: cv2.VideoCapture, batch: int) -> Iterator[list[np.ndarray]]:
    """Lists of up to ``batch`` (H, W, 3) RGB frames, until the video ends; releases the capture."""
    try:
        frames = []
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
            if len(frames) == batch:
                yield frames
                frames = []
        if frames:
            yield frames
    finally:
        cap.release()


def video_writer(path: Path, info: VideoInfo) -> cv2.VideoWriter:
    """An MPEG-4 (``.mp4``) or Motion-JPEG (``.avi``) writer: both ship with opencv-python-headless."""
    fourcc = "MJPG" if path.suffix.lower() == ".avi" else "mp4v"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), info.fps, (info.size[1], info.size[0]))
    if not writer.isOpened():
        raise SeglabError(f"{path}: cannot write video with codec {fourcc}")
    return writer


def write_frame(writer: cv2.VideoWriter, frame: np.ndarray) -> None:
    writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
