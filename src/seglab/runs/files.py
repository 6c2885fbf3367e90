"""How every record on disk is read and written: readers that take a missing or half-written file for
"nothing yet" (a run killed mid-way is normal), and writers that replace a file atomically, so a kill or
a full disk never leaves a truncated record behind. Run folders, study folders, reports, benchmarks and
checkpoints all go through here.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from seglab.errors import SeglabError, first_line


def read_json(path: Path) -> dict:
    """A JSON record as a dict; {} when it is missing or unreadable."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def read_metrics_csv(path: Path) -> list[dict]:
    """Rows of a metrics.csv with numbers parsed (empty cells become None)."""
    if not Path(path).exists():
        return []
    with Path(path).open() as f:
        return [{k: (float(v) if v not in ("", None) else None) for k, v in r.items()} for r in csv.DictReader(f)]


def write_json(path: Path, data: dict) -> None:
    """Write atomically, so an interrupted write never leaves a truncated file behind."""
    write_text(path, json.dumps(data, indent=2) + "\n")


def write_text(path: Path, text: str) -> None:
    """A UTF-8 text file (config, report), written atomically like write_json."""
    data = text.encode("utf-8")
    write_atomically(path, lambda f: f.write(data))


def write_atomically(path: Path, write) -> None:
    """``write(file)`` into a temporary file, flushed to disk, then renamed over ``path`` (atomic on one
    filesystem): a kill or a full disk mid-write leaves the earlier ``path`` whole, and a full disk is one
    line. Records, reports and checkpoints all go through here."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise SeglabError(f"{path}: could not write it ({first_line(e)}); "
                          f"{'the earlier file is left as it was' if path.exists() else 'nothing was written'}") \
            from None


def load_checkpoint(path: Path) -> dict:
    """Load a checkpoint without running code from it (weights_only), so untrusted files are safe."""
    import torch  # here: the records above are read by commands that never load a model

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure means the file is not a usable checkpoint
        raise SeglabError(f"{path}: not a readable seglab checkpoint ({type(e).__name__}: "
                          f"{first_line(e, 200)})") from None
    if "hyper_parameters" not in ckpt or "config" not in ckpt.get("hyper_parameters", {}):
        raise SeglabError(f"{path}: not a seglab checkpoint (no seglab config inside)")
    return ckpt
