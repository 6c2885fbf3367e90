"""Deterministic splits for data that comes without them, kept in a manifest beside the data.

``splits.json`` lists the files of each split with the seed and fractions that made it. It is written once
and read back by every later run, on every machine, so a split never depends on the order a file system
lists files in, nor on a library's random generator: the order is each file's SHA-1 with the seed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from seglab.errors import SeglabError, read_user_text

MANIFEST = "splits.json"
SPLIT_NAMES = ("train", "val", "test")


def parse_fractions(value) -> list[float]:
    """'0.8,0.1,0.1' or [0.8, 0.1, 0.1] (train, val[, test]) -> three fractions that add up to 1."""
    parts = value.split(",") if isinstance(value, str) else list(value)
    try:
        fractions = [float(v) for v in parts]
    except (TypeError, ValueError):
        fractions = []
    if len(fractions) == 2:
        fractions.append(0.0)
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6 or fractions[0] <= 0:
        raise SeglabError(f"split {value!r}: give the train, val and test fractions, e.g. 0.8,0.1,0.1 "
                          "(they must add up to 1, train above 0)")
    return fractions


def assign(names: list[str], fractions: list[float], seed: int) -> dict[str, list[str]]:
    """The same names, fractions and seed give the same split anywhere. Every split with a fraction above 0
    gets at least one file when there are enough; train takes what rounding leaves."""
    order = sorted(names, key=lambda n: (hashlib.sha1(f"{seed}:{n}".encode()).hexdigest(), n))
    n = len(order)
    counts = [0, round(n * fractions[1]), round(n * fractions[2])]
    for k in (1, 2):
        if fractions[k] > 0 and counts[k] == 0 and n - sum(counts) > 1:
            counts[k] = 1
    counts[0] = n - counts[1] - counts[2]
    out, start = {}, 0
    for name, count in zip(SPLIT_NAMES, counts, strict=True):
        out[name] = sorted(order[start:start + count])
        start += count
    return out


def write_manifest(folder: Path, splits: dict[str, list[str]], fractions: list[float], seed: int) -> Path:
    path = folder / MANIFEST
    body = {"seed": seed, "fractions": fractions, "splits": splits}
    path.write_text(json.dumps(body, indent=1) + "\n", encoding="utf-8")
    return path


def read_manifest(path: Path) -> dict:
    try:
        body = json.loads(read_user_text(path))
    except json.JSONDecodeError as err:
        body = f"line {err.lineno}"
    if not isinstance(body, dict) or not isinstance(body.get("splits"), dict) \
            or not all(isinstance(v, list) for v in body["splits"].values()) \
            or set(body["splits"]) - set(SPLIT_NAMES):
        raise SeglabError(f"{path}: not a split manifest (expected seed, fractions and splits: {{train: [...], "
                          "val: [...], test: [...]}}); delete it to split again")
    return body


def manifest_record(path: Path) -> dict:
    """What run.json keeps of the split a run used: where, how it was made, and a print of its lists."""
    body = read_manifest(path)
    digest = hashlib.sha1(json.dumps(body["splits"], sort_keys=True).encode()).hexdigest()[:16]
    return {"file": str(path), "seed": body.get("seed"), "fractions": body.get("fractions"), "sha1": digest,
            "counts": {k: len(v) for k, v in body["splits"].items()}}


def split_source(source, fractions=None, seed: int = 0):
    """Split a DataSource that has only training data (a folder without split folders, an export without
    subsets) by the manifest beside it, made from ``fractions``/``seed`` when absent. A manifest made with
    other fractions or another seed than asked for is refused rather than silently reused or replaced."""
    path = source.root / MANIFEST
    if set(source.splits) - {"train"} or (fractions is None and not path.is_file()):
        source.split_manifest = manifest_record(path) if path.is_file() else None
        return source
    samples = {s.image.relative_to(source.root).as_posix() if s.image.is_relative_to(source.root)
               else s.image.name: s for s in source.splits.get("train", [])}
    if path.is_file():
        body = read_manifest(path)
        if fractions is not None and ([float(f) for f in body.get("fractions") or []] != list(fractions)
                                      or body.get("seed") != seed):
            raise SeglabError(f"{path}: made with fractions {body.get('fractions')} and seed {body.get('seed')}, "
                              f"but data.split asks for {list(fractions)} with seed {seed}; delete it to split "
                              "again, or ask for what it holds")
    else:
        body = {"splits": assign(sorted(samples), list(fractions), seed)}
        try:
            write_manifest(source.root, body["splits"], list(fractions), seed)
        except OSError as err:
            raise SeglabError(f"{path}: cannot write the split manifest ({err}); the data folder must be "
                              "writable once to record its split") from None
    listed = {n for files in body["splits"].values() for n in files}
    source.problems += [f"{path}: lists {n}, which is not in the data; delete it to split again"
                        for n in sorted(listed - samples.keys())]
    source.problems += [f"{n}: not in {path}; delete the manifest to split again" for n in sorted(samples.keys() - listed)]
    source.splits = {k: [samples[n] for n in files if n in samples] for k, files in body["splits"].items()}
    source.split_manifest = manifest_record(path)
    return source
