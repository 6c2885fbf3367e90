"""CVAT's "Segmentation mask 1.1" export: ``labelmap.txt`` (``name:r,g,b:parts:actions`` per line,
``background`` first), colour PNGs in ``SegmentationClass/``, images in ``JPEGImages/`` and the image
lists ``ImageSets/Segmentation/<split>.txt`` (``default.txt`` when the task had no subsets).

Class i is line i of the label map; a pixel of a colour the map does not list makes that mask unusable
(it would otherwise be guessed), so the image is skipped with the colour named.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from seglab.data.exports.common import Export, Item, check_size, split_from_name, unique_names
from seglab.errors import SeglabError, read_user_text
from seglab.imageio import IMAGE_EXTENSIONS


def read_labelmap(path: Path) -> tuple[list[str], list[tuple[int, int, int]]]:
    if not path.is_file():
        raise SeglabError(f"{path}: label map not found; export the task as 'Segmentation mask 1.1', which "
                          "writes labelmap.txt beside SegmentationClass/")
    names, colors = [], []
    for n, line in enumerate(read_user_text(path).splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split(":")
        try:
            rgb = tuple(int(v) for v in parts[1].split(","))
        except (IndexError, ValueError):
            rgb = ()
        if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb) or not parts[0].strip():
            raise SeglabError(f"{path}:{n}: expected 'name:r,g,b:parts:actions', found {line!r}")
        names.append(parts[0].strip())
        colors.append(rgb)
    if not names:
        raise SeglabError(f"{path}: the label map lists no labels")
    if len(set(colors)) != len(colors):
        raise SeglabError(f"{path}: two labels share a colour, so the masks cannot be decoded")
    if len(names) > 255:
        raise SeglabError(f"{path}: {len(names)} labels; at most 255 are supported (255 means void)")
    return names, colors


def _renderer(mask_path: Path, image: Path, colors: list[tuple[int, int, int]]):
    keys = np.array([(r << 16) | (g << 8) | b for r, g, b in colors], np.int64)

    def render() -> np.ndarray:
        try:
            with Image.open(mask_path) as im:
                mode = im.mode
                rgb = np.asarray(im.convert("RGB"), np.int64) if mode != "L" else None
                gray = np.asarray(im) if mode == "L" else None
        except (OSError, SyntaxError) as err:
            raise SeglabError(f"{mask_path}: cannot read mask ({err})") from None
        if gray is not None:  # a 1-channel mask holds the label's index itself
            if gray.max(initial=0) >= len(colors):
                raise SeglabError(f"{mask_path}: label index {gray.max()} but labelmap.txt lists {len(colors)}")
            out = gray.astype(np.uint8)
        else:
            packed = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
            order = np.argsort(keys)
            idx = np.minimum(np.searchsorted(keys[order], packed), len(keys) - 1)
            known = keys[order][idx] == packed
            if not known.all():
                bad = int(packed[~known][0])
                raise SeglabError(f"{mask_path}: colour {(bad >> 16, (bad >> 8) & 255, bad & 255)} is not in "
                                  "labelmap.txt")
            out = order[idx].astype(np.uint8)
        check_size(image, *out.shape, str(mask_path))
        return out

    return render


def read_cvat_mask(root: Path) -> Export:
    names, colors = read_labelmap(root / "labelmap.txt")
    masks_dir, images_dir = root / "SegmentationClass", root / "JPEGImages"
    lists = sorted((root / "ImageSets" / "Segmentation").glob("*.txt"))
    listed: dict[str, str | None] = {}
    for f in lists:
        for line in read_user_text(f).splitlines():
            if line.strip():
                listed.setdefault(line.strip(), split_from_name(f.stem))
    masks = {p.relative_to(masks_dir).with_suffix("").as_posix(): p for p in sorted(masks_dir.rglob("*.png"))}
    images = {p.relative_to(images_dir).with_suffix("").as_posix(): p for p in sorted(images_dir.rglob("*"))
              if p.suffix.lower() in IMAGE_EXTENSIONS}
    problems, items = [], []
    for key in listed or masks:
        if key not in masks:
            problems.append(f"{masks_dir / key}.png: listed in ImageSets/Segmentation but no mask; skipped")
        elif key not in images:
            problems.append(f"{masks[key]}: no image {key}.* in {images_dir}; skipped")
        else:
            items.append(Item(Path(key).name, images[key], listed.get(key), _renderer(masks[key], images[key],
                                                                                      colors)))
    if not items and not problems:
        raise SeglabError(f"{root}: the CVAT export holds no masks (SegmentationClass/ is empty or missing)")
    return Export(root, "cvat-mask", names, colors, unique_names(items, problems), problems)
