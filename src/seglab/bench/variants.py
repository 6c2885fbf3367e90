"""Changes to a training setup that might make its steps faster, and whether they measurably do.

Each variant is the benchmarked config with a few settings changed. They take turns with the unchanged setup in
every round, so a change of machine load hits all alike, and a variant helps only when its median gain over the
rounds clears ``MIN_GAIN`` in at least ``MIN_ROUNDS`` rounds: on a shared machine, smaller differences are noise.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

import segmentation_models_pytorch as smp
import torch

from seglab.config import expand_dotted, from_dict, merge
from seglab.constants import IGNORE_INDEX
from seglab.training.losses import DiceCE

MIN_GAIN, MIN_ROUNDS = 0.05, 3


@dataclass
class Variant:
    """``overrides``: dotted config keys to change."""

    name: str
    overrides: dict = field(default_factory=dict)

    def config(self, cfg):
        return from_dict(merge(cfg.to_dict(), expand_dotted(self.overrides)))


def variants(cpus: int, compiled: bool | None = None) -> dict[str, Variant]:
    """The candidates, by name: thread counts (against ``train.threads: auto``), memory layout, compilation
    switched to the other side of what the benchmarked setup does here (``compiled``; None: both)."""
    made = [Variant(f"threads={n}", {"train.threads": n}) for n in sorted({1, cpus})]
    made.append(Variant("channels_last=false", {"train.channels_last": False}))
    made += [Variant(f"compile={str(on).lower()}", {"train.compile": on})
             for on in (True, False) if compiled is None or on != compiled]
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


def loss_step_s(criterion: torch.nn.Module, num_classes: int, batch: int, size: tuple[int, int],
                repeats: int = 3) -> dict[str, float]:
    """Seconds of forward + backward of the run's loss on random full-resolution logits and labels (a tenth
    void), and, for Dice + CE, of the same loss built from smp's ``DiceLoss`` and torch's cross-entropy:
    the reference seglab's one-hot-free Dice is held to in value and gradient (tests/test_training_parts.py)."""
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(batch, num_classes, *size, generator=gen)
    target = torch.randint(0, num_classes, (batch, *size), generator=gen)
    target[torch.rand(target.shape, generator=gen) < 0.1] = IGNORE_INDEX
    losses = {"seglab": criterion}
    if isinstance(criterion, DiceCE):
        dice = smp.losses.DiceLoss("multiclass", ignore_index=IGNORE_INDEX)
        losses["smp_dice_and_torch_ce"] = lambda x, y: (criterion.ce_weight * criterion.ce(x, y)
                                                        + criterion.dice_weight * dice(x, y))
    out = {}
    for name, loss in losses.items():
        times = []
        for _ in range(repeats + 1):  # the first allocates
            x = logits.clone().requires_grad_(True)
            t0 = time.perf_counter()
            loss(x, target).backward()
            times.append(time.perf_counter() - t0)
        out[name] = round(statistics.median(times[1:]), 4)
    return out
