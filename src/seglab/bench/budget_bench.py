"""Can machine load change what a training budget buys? ``seglab bench budget`` measures it.

    seglab bench budget --data ../shared/camvid --model fpn:efficientnet-lite0 --budget 4m --out budget.json

The same run's budget is converted into steps again and again, taking turns: alone, then beside a
competing CPU-bound process (matrix products on every core, as a second training would run). For each
condition the report gives the steps seglab's calibration buys (single-thread CPU time per step) and, for
contrast, what a wall-clock budget would have bought at the run's thread count. Turns, not one block
each, so a change in background load during the benchmark hits both conditions.
"""

from __future__ import annotations

import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

from seglab.bench.report import finish, machine_info, print_table
from seglab.config import load_config
from seglab.training.budget import calibrate, run_threads, wall_seconds_per_step
from seglab.training.run import build_module, prepare_data
from seglab.training.threads import usable_cpus

# A CPU-bound neighbour: multi-threaded matrix products, like another training on the same machine.
COMPETITOR = ("import torch\ntorch.set_num_threads({threads})\nx = torch.randn(768, 768)\n"
              "while True:\n    x = torch.tanh(x @ x)\n")
WALL_STEPS = 4  # timed steps at the run's thread count, for the wall-clock contrast


def start_competitor() -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", COMPETITOR.format(threads=usable_cpus())],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(3)  # let it import torch and occupy the cores before anything is timed
    return proc


def measure(cfg, module, dm, budget_s: float) -> dict:
    cal = calibrate(cfg, module, dm)
    threads = run_threads(cfg)
    wall_per_step = wall_seconds_per_step(cfg, module, dm, WALL_STEPS)
    return {"steps": cal.steps, "cpu_s_per_step_1thread": round(cal.seconds_per_step, 4),
            "wall_s_per_step": round(wall_per_step, 4), "threads": threads,
            "wall_budget_steps": max(1, math.floor(budget_s / wall_per_step))}


def run_budget_bench(data: str, spec: str, size: tuple[int, int], batch: int, budget: str, rounds: int = 2,
                     out: Path | None = None, show: bool = True) -> dict:
    cfg = load_config(overrides={"data.root": data, "model.spec": spec, "model.weights": "none",
                                 "data.size": list(size), "data.batch_size": batch, "train.budget": str(budget)})
    budget_s = cfg.train.budget  # seconds, parsed where the option was read
    machine = machine_info()
    dm, class_weights = prepare_data(cfg)
    module = build_module(cfg, dm, class_weights)
    turns: dict[str, list[dict]] = {"alone": [], "loaded": []}
    for _ in range(rounds):
        turns["alone"].append(measure(cfg, module, dm, budget_s))
        proc = start_competitor()
        try:
            turns["loaded"].append(measure(cfg, module, dm, budget_s))
        finally:
            proc.kill()
            proc.wait()

    def median(cond: str, key: str) -> float:
        return statistics.median(t[key] for t in turns[cond])

    report = {
        "benchmark": "budget",
        "setup": {"data": str(dm.source.root), "model": spec, "size": list(size), "batch": batch, "budget": budget,
                  "rounds": rounds, "competitor": f"{usable_cpus()}-thread float32 matrix products"},
        "alone": {"turns": turns["alone"], "steps_median": median("alone", "steps"),
                  "wall_budget_steps_median": median("alone", "wall_budget_steps")},
        "loaded": {"turns": turns["loaded"], "steps_median": median("loaded", "steps"),
                   "wall_budget_steps_median": median("loaded", "wall_budget_steps")},
        # What load did to each kind of budget: 0 would be perfect load-independence.
        "steps_change": round(median("loaded", "steps") / median("alone", "steps") - 1, 4),
        "wall_budget_steps_change": round(median("loaded", "wall_budget_steps")
                                          / median("alone", "wall_budget_steps") - 1, 4),
        "machine": machine,
    }
    finish(report, out)
    if show:
        rows = [[cond, t["steps"], t["cpu_s_per_step_1thread"], t["wall_s_per_step"], t["wall_budget_steps"]]
                for cond in ("alone", "loaded") for t in turns[cond]]
        print_table(f"budget {budget}: {spec} {size[0]}x{size[1]} batch {batch}",
                    ["condition", "steps (seglab)", "1-thread CPU s/step", "wall s/step", "steps (wall budget)"],
                    rows, footer=f"load changed seglab's steps by {100 * report['steps_change']:+.1f}%, a "
                                 f"wall-clock budget's by {100 * report['wall_budget_steps_change']:+.1f}%")
    return report
