"""Changes to a training setup that might make its steps faster, and whether they measurably do.

Each variant is the benchmarked config with a few settings changed (or the built module changed, for what
is no setting: ``torch.compile``). They take turns with the unchanged setup in every round, so a change of
machine load hits all alike, and a variant helps only when its median gain over the rounds clears
``MIN_GAIN`` in at least ``MIN_ROUNDS`` rounds: on a shared machine, smaller differences are noise.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from seglab.config import expand_dotted, from_dict, merge

MIN_GAIN, MIN_ROUNDS = 0.05, 3


@dataclass
class Variant:
    """``overrides``: dotted config keys to change; ``prepare``: a change to the built SegModule."""

    name: str
    overrides: dict = field(default_factory=dict)
    prepare: Callable | None = None

    def config(self, cfg):
        return from_dict(merge(cfg.to_dict(), expand_dotted(self.overrides)))


def _compile(module) -> None:
    module.model = torch.compile(module.model)


def variants(cpus: int) -> dict[str, Variant]:
    """The candidates, by name: thread counts (against ``train.threads: auto``), memory layout, compilation."""
    made = [Variant(f"threads={n}", {"train.threads": n}) for n in sorted({1, cpus})]
    made += [Variant("channels_last=false", {"train.channels_last": False}),
             Variant("torch.compile", prepare=_compile)]
    return {v.name: v for v in made}


def gain(baseline_rounds: list[list[float]], variant_rounds: list[list[float]]) -> dict:
    """Median over rounds of (baseline median step time / variant median step time) - 1, and whether it
    helps (gain > MIN_GAIN over at least MIN_ROUNDS rounds)."""
    ratios = [statistics.median(b) / statistics.median(v)
              for b, v in zip(baseline_rounds, variant_rounds, strict=True) if b and v]
    if not ratios:
        return {"gain": None, "gain_per_round": [], "helps": False}
    g = statistics.median(ratios) - 1
    return {"gain": round(g, 4), "gain_per_round": [round(r - 1, 4) for r in ratios],
            "helps": len(ratios) >= MIN_ROUNDS and g > MIN_GAIN}


def adamw_step_s(params: list[torch.Tensor], repeats: int = 5) -> dict[str, float]:
    """Seconds per AdamW step over ``params`` (gradients set) for each implementation: fused (seglab's),
    foreach and the per-tensor loop. The step is a small part of a CPU training step either way."""
    params = [p.detach().clone().requires_grad_(True) for p in params]
    for p in params:
        p.grad = torch.randn_like(p)
    out = {}
    for name, kwargs in (("fused", {"fused": True}), ("foreach", {"foreach": True}), ("for_loop", {"foreach": False})):
        opt = torch.optim.AdamW(params, lr=1e-4, **kwargs)
        opt.step()  # allocates the state
        t0 = time.perf_counter()
        for _ in range(repeats):
            opt.step()
        out[name] = round((time.perf_counter() - t0) / repeats, 5)
    return out
