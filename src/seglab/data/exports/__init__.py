"""Annotation-tool exports (COCO, CVAT segmentation masks, Label Studio): read them as layouts, or import
them once into seglab's folder layout (``seglab data import``), which is the recommended path: training
then reads PNG masks instead of rasterising polygons.
"""

from __future__ import annotations

from pathlib import Path

from seglab.data.exports.common import Export, Item
from seglab.data.exports.importer import ImportReport, import_export, rasterised_source
from seglab.errors import SeglabError

FORMATS = ("coco", "cvat-mask", "labelstudio")
CROWD = ("void", "label")


def read_export(fmt: str, src: str | Path, crowd: str = "void") -> Export:
    """Parse an export folder (or a Label Studio JSON file) of format ``fmt``; nothing is rasterised yet."""
    src = Path(src).expanduser()
    if not src.exists():
        raise SeglabError(f"{src}: export not found")
    if crowd not in CROWD:
        raise SeglabError(f"crowd '{crowd}': choose void or label")
    if fmt == "coco":
        from seglab.data.exports.coco import read_coco
        return read_coco(src, crowd)
    if fmt == "cvat-mask":
        from seglab.data.exports.cvat import read_cvat_mask
        return read_cvat_mask(src)
    if fmt == "labelstudio":
        from seglab.data.exports.labelstudio import read_labelstudio
        return read_labelstudio(src)
    raise SeglabError(f"unknown export format '{fmt}'; choose {', '.join(FORMATS)}")


def detect_export(root: Path) -> str | None:
    """The export format a folder unambiguously holds, from its file names (and, for Label Studio, a glance
    at the start of its only JSON file), or None."""
    from seglab.data.exports.coco import coco_files

    if (root / "labelmap.txt").is_file() and (root / "SegmentationClass").is_dir():
        return "cvat-mask"
    if coco_files(root):
        return "coco"
    found = list(root.glob("*.json"))
    if len(found) == 1:
        with open(found[0], "rb") as f:
            head = f.read(4096).lstrip()
        if head.startswith(b"[") and b'"annotations"' in head:
            return "labelstudio"
    return None


def open_export(root: Path, fmt: str, classes_file: Path | None = None):
    """An export read directly as a layout: rasterised once on open (see ``rasterised_source``)."""
    if classes_file is not None:
        raise SeglabError(f"{classes_file}: classes_file does not apply to the {fmt} layout (its classes come "
                          "from the export); import it with `seglab data import` to edit classes.yaml")
    return rasterised_source(read_export(fmt, root))


def _layout(fmt: str):
    def read(root: Path, classes_file: Path | None = None):
        return open_export(root, fmt, classes_file)
    return read


# layout name -> reader, as data/sources.py's LAYOUTS lists them
EXPORT_LAYOUTS = {fmt: _layout(fmt) for fmt in FORMATS}

__all__ = ["CROWD", "EXPORT_LAYOUTS", "FORMATS", "Export", "ImportReport", "Item", "detect_export", "import_export", "open_export",
           "read_export"]
