"""``seglab data check PATH``: read every file once and report counts, sizes, label values and problems.

Unlike the dataset, which stops at the first bad file, the check collects every problem, so one run
tells the user everything to fix.
"""

from __future__ import annotations

import textwrap
from collections import Counter

import numpy as np

from seglab.constants import IGNORE_INDEX
from seglab.data.dataset import color_lookup, invalid_label_message, read_pair
from seglab.data.memory import BYTES_PER_PIXEL, default_verdict
from seglab.data.sources import SPLITS, DataSource
from seglab.errors import SeglabError


def _check_split(src: DataSource, samples, lookup, problems: list[str]) -> dict:
    """Sizes, raw label histogram and class shares of one split; bad files are appended to problems."""
    sizes: Counter = Counter()
    raw_hist = np.zeros(256, np.int64)
    for sample in samples:
        try:
            image, raw = read_pair(sample, lookup)
        except SeglabError as err:
            problems.append(str(err))
            continue
        sizes[image.shape[:2]] += 1
        if raw is None:
            continue
        counts = np.bincount(raw.ravel(), minlength=256)
        values = np.flatnonzero(counts)
        bad = values[(values > 255) | (src.lut[np.minimum(values, 255)] < 0)]
        if bad.size:
            problems.append(invalid_label_message(sample.mask, bad, src.lut))
        else:
            raw_hist += counts
    # Class pixels follow from the raw histogram through the LUT: no second pass over the masks.
    is_class = (src.lut >= 0) & (src.lut != IGNORE_INDEX)
    class_pixels = np.bincount(src.lut[is_class], raw_hist[is_class], minlength=src.classes.num_classes)
    void = raw_hist[src.lut == IGNORE_INDEX].sum()
    total = max(raw_hist.sum(), 1)
    return {
        "pairs": len(samples),
        "sizes": sizes,
        "raw_values": {int(v): int(raw_hist[v]) for v in np.flatnonzero(raw_hist)},
        "class_shares": {n: float(c) / total for n, c in zip(src.classes.names, class_pixels, strict=True)},
        "void_share": float(void) / total,
    }


def check_source(src: DataSource) -> dict:
    """Read every pair of every split; returns counts, sizes (Counter of (h, w)), raw label histograms,
    class pixel shares after the LUT (void share separate) and all problems as "file: what is wrong"."""
    lookup = color_lookup(src.color_table) if src.color_table else None
    problems = list(src.problems)
    splits = {}
    for name, samples in src.splits.items():
        if not samples:
            problems.append(f"{src.root / name}: split has no image/label pairs")
        aliased = name == "test" and samples is src.splits.get("val") and "val" in splits
        splits[name] = splits["val"] if aliased else _check_split(src, samples, lookup, problems)  # read once
    missing = [s for s in SPLITS if not src.splits.get(s)]
    if missing:
        where = ("images/{train,val,test}/ and masks/{train,val,test}/" if src.layout == "folder"
                 else "its split folders")
        problems.append(f"{src.root}: no {' or '.join(missing)} split; seglab trains on train, chooses on val and "
                        f"scores on test: put each split in {where}")
    warnings = value_warnings(src, splits)
    if src.splits.get("test") and src.splits["test"] is src.splits.get("val"):
        warnings.append(f"no labelled test split (the {src.layout} test labels are not public): test is the val "
                        "split, so a run's test scores are val scores, as the published results are")
    return {"root": str(src.root), "layout": src.layout, "classes": list(src.classes.names),
            "splits": splits, "problems": problems, "warnings": warnings}


def value_warnings(src: DataSource, splits: dict) -> list[str]:
    """Label values that suggest a missing value mapping: most pixels void (e.g. binary masks stored as 0/255,
    where 255 reads as void unless classes.yaml says `values: [0, 255]`), or classes that never occur."""
    warnings = []
    raw = Counter()
    for s in splits.values():
        raw.update(s["raw_values"])
    total = sum(raw.values())
    void = sum(c for v, c in raw.items() if src.lut[v] == IGNORE_INDEX)
    if total and void / total >= 0.5:
        values = sorted(v for v, c in raw.items() if c)
        warnings.append(f"{100 * void / total:.0f}% of all labelled pixels are void (raw values present "
                        f"{', '.join(map(str, values[:8]))}{' ...' if len(values) > 8 else ''}): if a void value "
                        f"marks a class (binary masks are often 0/255), declare each class's mask value in "
                        f"classes.yaml, e.g. `values: [0, 255]`")
    train = splits.get("train")
    if train and sum(train["raw_values"].values()):
        absent = [n for n, share in train["class_shares"].items() if share == 0]
        if absent:
            warnings.append(f"class{'es' if len(absent) > 1 else ''} {', '.join(absent)} never occur"
                            f"{'s' if len(absent) == 1 else ''} in the train masks: check the class list "
                            "(or classes.yaml's values:)")
    return warnings


def format_check(report: dict, max_problems: int = 50) -> str:
    """Plain-text report for the CLI: one table of splits, one of class shares, then the problems."""
    splits = report["splits"]
    lines = [f"{report['root']}: {report['layout']} layout, {len(report['classes'])} classes", ""]
    lines.append(f"{'split':<8}{'pairs':>7}  sizes (h x w)")
    for name, s in splits.items():
        sizes = ", ".join(f"{h}x{w} ({n})" for (h, w), n in s["sizes"].most_common())
        lines.append(f"{name:<8}{s['pairs']:>7}  {sizes or '-'}")
    pixels = sum(h * w * n for s in splits.values() for (h, w), n in s["sizes"].items())
    lines += [default_verdict(pixels * BYTES_PER_PIXEL), ""]
    for name, s in splits.items():
        total = max(sum(s["raw_values"].values()), 1)
        values = ", ".join(f"{v}={100 * c / total:.1f}%" for v, c in s["raw_values"].items())
        lines += textwrap.wrap(f"raw label values in {name}: {values or '-'}", 110, subsequent_indent="  ")
    lines += ["", f"{'class':<20}" + "".join(f"{n:>9}" for n in splits)]
    for cls in [*report["classes"], "void"]:
        shares = [s["void_share"] if cls == "void" else s["class_shares"][cls] for s in splits.values()]
        lines.append(f"{cls:<20}" + "".join(f"{100 * v:>8.1f}%" for v in shares))
    lines += [f"warning: {w}" for w in report.get("warnings", [])]
    problems = report["problems"]
    lines += ["", f"{len(problems)} problem(s)" if problems else "no problems found"]
    lines += [f"  {p}" for p in problems[:max_problems]]
    if len(problems) > max_problems:
        lines.append(f"  ... and {len(problems) - max_problems} more")
    return "\n".join(lines)
