"""Reading image files, once for everything: training data, evaluation and prediction decode alike.

People bring grayscale scans, RGBA screenshots, 16-bit TIFFs, palette PNGs and phone photos stored
sideways with an EXIF orientation tag; the model wants (H, W, 3) uint8 RGB, upright. Every reader in
seglab comes through here, so a file gives the same pixels whether it is trained on or predicted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from seglab.errors import SeglabError, first_line

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")

EXIF_ORIENTATION = 0x0112  # the tag; its values 1..8 are how the stored pixels must turn to stand upright

# PIL modes whose pixels np.asarray gives as numbers to convert ourselves; others go through convert("RGB").
_NUMERIC_MODES = {"L", "LA", "RGB", "RGBA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


def to_rgb(image: np.ndarray | Image.Image) -> np.ndarray:
    """(H, W, 3) uint8 RGB from any layout and bit depth.

    Arrays are taken as RGB(A) (not OpenCV's BGR). Grey is repeated to three channels, alpha is dropped,
    16-bit (and 32-bit integer) values keep their high byte, floats are read as 0..1 if no value exceeds 1,
    else as 0..255.
    """
    if isinstance(image, Image.Image):
        if image.mode == "P" and "transparency" in image.info:
            image = image.convert("RGBA")  # PIL warns when a palette image with transparency skips this step
        image = np.array(image if image.mode in _NUMERIC_MODES else image.convert("RGB"))  # a writable copy
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


def orientation(img: Image.Image) -> int:
    """The EXIF orientation (1..8, 1 = upright as stored) of an opened file, from its header alone.

    A PNG's eXIf chunk counts where the PNG spec puts it, before the pixel data: Pillow would decode the
    whole file to look for a later one, and masks are opened only for this tag.
    """
    if img.format == "PNG" and "exif" not in img.info:
        return 1
    value = img.getexif().get(EXIF_ORIENTATION, 1)
    return value if value in range(1, 9) else 1


def upright(a: np.ndarray, orientation: int) -> np.ndarray:
    """Turn (H, W, ...) pixels as stored into the upright view that EXIF ``orientation`` describes (the
    same pixels as ``PIL.ImageOps.exif_transpose``), for images and label masks alike."""
    turned = {
        1: lambda: a,
        2: lambda: a[:, ::-1],  # mirrored left-right
        3: lambda: a[::-1, ::-1],  # rotated 180
        4: lambda: a[::-1],  # mirrored top-bottom
        5: lambda: a.swapaxes(0, 1),  # transposed
        6: lambda: np.rot90(a, -1),  # stored rotated 90 counter-clockwise: turn clockwise
        7: lambda: a.swapaxes(0, 1)[::-1, ::-1],  # transverse
        8: lambda: np.rot90(a, 1),  # stored rotated 90 clockwise: turn counter-clockwise
    }[orientation]()
    return np.ascontiguousarray(turned)


def file_orientation(path: Path) -> int:
    """The EXIF orientation of a file without decoding its pixels (1 when it has none or is unreadable:
    the decoder that follows reports unreadable files)."""
    try:
        with Image.open(path) as img:
            return orientation(img)
    except Exception:  # noqa: BLE001 - PIL raises many types; the pixel decoder names the problem
        return 1


def read_image(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an image file, upright as image viewers show it.

    One EXIF rule for every file: its pixels turn as its own orientation tag says, and label masks follow
    the same rule (``upright`` with the mask's own tag). Why upright: annotation tools (browser-based
    ones, LabelMe) draw on the upright view and save masks without a tag, so a phone photo stored sideways
    lines up with its mask only once turned, and prediction sees the scene the way up the model learned.
    A mask drawn on the unturned pixels of a photo tagged 90 degrees fails the mask-size check instead.

    Raises SeglabError naming the file when it is missing, not an image or truncated.
    """
    try:
        with Image.open(path) as img:
            turn = orientation(img)
            img.load()  # decodes everything now, so a truncated file fails here, not half-way through
            return upright(to_rgb(img), turn)
    except FileNotFoundError:
        raise SeglabError(f"{path}: cannot read image (no such file)") from None
    except Exception as e:  # noqa: BLE001 - PIL raises many types; each means "not a usable image"
        reason = "not an image format PIL knows" if type(e).__name__ == "UnidentifiedImageError" \
            else f"truncated or corrupt: {first_line(e, 120)}"
        raise SeglabError(f"{path}: cannot read image ({reason})") from None
