"""What every benchmark report carries: the machine it ran on, step-time summaries, the JSON and a table.

Timings from a shared machine are only meaningful with the load they were taken under, so the machine
record includes the load average at the start and the end of the run.
"""

from __future__ import annotations

import os
import shlex
import statistics
import sys
from pathlib import Path

import torch

from seglab.environment import cpu_model, environment
from seglab.runs import write_json


def machine_info() -> dict:
    """Hardware, versions and current load; ``threads`` is torch's intra-op thread count right now."""
    from seglab.device import cpu_has_fast_bf16

    env = environment()
    return {**env, "cpu": cpu_model(), "logical_cpus": os.cpu_count(), "threads": torch.get_num_threads(),
            "cpu_bf16_units": cpu_has_fast_bf16(), "load_average_start": _load()}


def _load() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def command_line() -> str | None:
    """The ``seglab bench ...`` command this process runs, as typed (None when called from Python)."""
    return " ".join(["seglab", *map(shlex.quote, sys.argv[1:])]) if sys.argv[1:2] == ["bench"] else None


def finish(report: dict, out: Path | None, show=None) -> dict:
    """Stamp the end-of-run load, write ``out`` (if given) and hand the report to ``show`` (a benchmark's
    printer, if given); returns the report."""
    report["machine"]["load_average_end"] = _load()
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        write_json(Path(out), report)
    if show is not None:
        show(report)
    return report


def summarise(seconds: list[float], items_per_step: int) -> dict:
    """Median step time (robust to the odd slow step on a busy machine) and the throughput it implies."""
    median = statistics.median(seconds)
    return {"timed_steps": len(seconds), "step_s_median": round(median, 4),
            "step_s_min": round(min(seconds), 4), "step_s_max": round(max(seconds), 4),
            "per_s": items_per_step / median}


def print_table(title: str, columns: list[str], rows: list[list], footer: str = "") -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(Console().width, 120))  # logs and pipes get the whole table, not 80 columns
    table = Table(title=title, caption=footer or None)
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if i == 0 else "right", no_wrap=i == 0)
    for row in rows:
        table.add_row(*(_fmt(v) for v in row))
    console.print(table)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
    return "-" if v is None else str(v)
