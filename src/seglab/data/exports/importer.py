"""Turn a parsed export into seglab's folder layout on disk, or into an in-memory DataSource.

``import_export`` writes ``images/<split>/``, ``masks/<split>/`` (single-channel PNGs), ``classes.yaml`` and,
when it made the split, ``splits.json``, all into a hidden folder beside DST renamed into place at the end:
an import that fails leaves nothing, and DST is either absent or complete.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from PIL import Image

from seglab.constants import IGNORE_INDEX
from seglab.data.classes import ClassSet, default_colors, identity_lut
from seglab.data.exports.common import Export, Item
from seglab.data.samples import DataSource, Sample
from seglab.data.splits import assign, parse_fractions, write_manifest
from seglab.errors import SeglabError


@dataclass
class ImportReport:
    dst: Path
    counts: dict[str, int]  # images written per split ("" for an unsplit folder)
    skipped: list[str] = field(default_factory=list)  # "file: why", one per item not imported
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = ", ".join(f"{k} {v}" for k, v in self.counts.items() if k) or "unsplit"
        return (f"imported {sum(self.counts.values())} images ({parts}) into {self.dst}; "
                f"skipped {len(self.skipped)}")


def _render_to(items: list[Item], folder: Path, skipped: list[str]) -> list[Item]:
    """Render each item's mask into ``folder/<name>.png`` as it goes (one mask in memory at a time, however
    large the export); the items rendered, in order. One that cannot be rendered is skipped with its
    reason."""
    done = []
    for it in items:
        try:
            mask = it.render()
        except SeglabError as err:
            skipped.append(f"{err}; skipped")
            continue
        Image.fromarray(mask).save(folder / f"{it.name}.png")
        done.append(it)
    return done


def _assign_splits(items: list[Item], split, seed: int) -> tuple[dict[str, str], list[float] | None]:
    """name -> split ("" = no split folders). ``split`` fractions re-split everything, whatever the export
    says; without it the export's own subsets are kept, and items of none go to train."""
    if split is not None:
        fractions = parse_fractions(split)
        made = assign([it.name for it in items], fractions, seed)
        return {n: s for s, names in made.items() for n in names}, fractions
    if not any(it.split for it in items):
        return {it.name: "" for it in items}, None
    return {it.name: it.split or "train" for it in items}, None


def _classes_yaml(export: Export) -> dict:
    colors = export.colors or default_colors(len(export.names))
    return {"names": list(export.names), "colors": [list(c) for c in colors], "ignore_index": IGNORE_INDEX}


def import_export(export: Export, dst: str | Path, split=None, seed: int = 0) -> ImportReport:
    """Write ``export`` as a seglab folder dataset at ``dst`` (absent or empty); see the module docstring."""
    dst = Path(dst).expanduser()
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise SeglabError(f"{dst}: already exists and is not empty; import into a new folder")
    if split is not None:
        parse_fractions(split)  # a bad --split fails before any work
    skipped = list(export.problems)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.importing-", dir=dst.parent))
    try:
        (tmp / "rendered").mkdir()
        rendered = _render_to(export.items, tmp / "rendered", skipped)
        if not rendered:
            raise SeglabError(f"{export.root}: nothing to import ({len(skipped)} items skipped"
                              f"{': ' + skipped[0] if skipped else ''})")
        where, fractions = _assign_splits(rendered, split, seed)
        counts: dict[str, int] = {}
        for it in rendered:
            sub = where[it.name]
            (tmp / "images" / sub).mkdir(parents=True, exist_ok=True)
            (tmp / "masks" / sub).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(it.image, tmp / "images" / sub / f"{it.name}{it.image.suffix.lower()}")
            os.replace(tmp / "rendered" / f"{it.name}.png", tmp / "masks" / sub / f"{it.name}.png")
            counts[sub] = counts.get(sub, 0) + 1
        (tmp / "rendered").rmdir()
        (tmp / "classes.yaml").write_text(yaml.safe_dump(_classes_yaml(export), sort_keys=False), encoding="utf-8")
        if fractions is not None:
            lists = {s: sorted(f"images/{s}/{it.name}{it.image.suffix.lower()}" for it in rendered
                               if where[it.name] == s) for s in ("train", "val", "test")}
            write_manifest(tmp, lists, fractions, seed)
        if dst.exists():
            dst.rmdir()
        os.replace(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ImportReport(dst, dict(sorted(counts.items())), skipped, list(export.warnings))


def rasterised_source(export: Export) -> DataSource:
    """The export as a DataSource whose masks are PNGs rasterised once into a temporary folder that lives as
    long as the process (the dataset reads masks from files). Items that cannot be rendered are problems,
    which ``open_data`` refuses and ``seglab data check`` lists."""
    problems = list(export.problems)
    tmp = Path(tempfile.mkdtemp(prefix="seglab-export-"))
    atexit.register(shutil.rmtree, tmp, True)
    rendered = _render_to(export.items, tmp, problems)
    splits: dict[str, list[Sample]] = {}
    for it in rendered:
        splits.setdefault(it.split or "train", []).append(Sample(it.image, tmp / f"{it.name}.png"))
    if not rendered and not problems:
        raise SeglabError(f"{export.root}: the {export.format} export holds no images")
    colors = export.colors or default_colors(len(export.names))
    classes = ClassSet(tuple(export.names), tuple(colors))
    return DataSource(export.root, export.format, splits, classes, identity_lut(len(export.names)), None, problems)
