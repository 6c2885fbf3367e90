"""Where a training step's time goes: torch.profiler over a few steps, every op's own time in one category.

A step far below the matmul peak is explained by its categories: dense convolutions and matmuls are the
only ops that can run near the peak; depthwise convolutions do few FLOPs per byte, normalisation and
elementwise ops none that the FLOP counter counts. The achieved GFLOP/s of the dense part says how close
the part that could be matmul-bound comes. Times are self times (an op's time minus its children's);
``framework`` is what no aten op accounts for: Python inside scopes, Lightning, autograd's bookkeeping and
the profiler itself. Lightning runs forward and backward inside ``optimizer.step(closure)``, so the optimizer
is recognised by its own kernels (fused AdamW: one op per step), not by that scope.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass

import lightning as L
import torch
from torch.profiler import ProfilerActivity, profile, record_function

LOSS_SCOPE = "seglab.loss"
CATEGORIES = ("dense_conv_matmul", "depthwise_conv", "normalisation", "elementwise_and_copies", "loss",
              "optimizer", "data_loading", "framework")
_CONV = {"aten::convolution", "aten::_convolution", "aten::conv2d", "aten::mkldnn_convolution",
         "aten::convolution_backward", "aten::_conv_depthwise2d", "aten::_slow_conv2d_forward",
         "aten::_slow_conv2d_backward", "aten::mkldnn_convolution_backward"}
_MATMUL = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::matmul", "aten::linear"}
_NORM = ("batch_norm", "group_norm", "layer_norm", "instance_norm")
_LOSS = ("log_softmax", "nll_loss", "cross_entropy")  # their backward ops run outside the forward's scope
_OPTIMIZER = ("adam", "sgd", "_foreach_")


@dataclass
class OpTime:
    """One profiled op call: its name, self time, input shapes and the names of the ops it ran inside."""

    name: str
    self_us: float
    shapes: list
    ancestors: list[str]


def _depthwise(name: str, shapes: list) -> bool:
    """A convolution whose weight is (C, 1, kh, kw) with C > 1: one filter per channel."""
    index = 2 if "backward" in name else 1  # backward: (grad_out, input, weight, ...)
    weight = shapes[index] if len(shapes) > index else []
    return len(weight) == 4 and weight[1] == 1 and weight[0] > 1


def category(op: OpTime) -> str:
    """The category of one op call (data loading, optimizer and loss by the scope it ran in)."""
    scopes = [op.name, *op.ancestors]  # a scope's own time (Python inside it) counts like its ops'
    if any("DataLoader" in a for a in scopes):
        return "data_loading"
    if any(a.startswith("Optimizer.zero_grad") for a in scopes) or any(k in op.name for k in _OPTIMIZER):
        return "optimizer"
    if LOSS_SCOPE in scopes or any(k in op.name for k in _LOSS):
        return "loss"
    if not op.name.startswith("aten::"):
        return "framework"
    if op.name in _CONV:
        return "depthwise_conv" if _depthwise(op.name, op.shapes) else "dense_conv_matmul"
    if op.name in _MATMUL:
        return "dense_conv_matmul"
    if any(k in op.name for k in _NORM):
        return "normalisation"
    return "elementwise_and_copies"


def summarise(ops: list[OpTime], wall_s: float, steps: int, dense_flops: float, grouped_flops: float,
              top: int = 12) -> dict:
    """Seconds per step and share of the step per category, the top ops by self time, and the GFLOP/s the
    dense and the depthwise convolutions achieve (``*_flops``: their FLOPs in one step)."""
    per_cat: dict[str, float] = defaultdict(float)
    per_op: dict[tuple[str, str], list] = defaultdict(lambda: [0.0, 0])  # (op, category): seconds, calls
    for op in ops:
        cat = category(op)
        per_cat[cat] += op.self_us / 1e6
        entry = per_op[op.name, cat]
        entry[0] += op.self_us / 1e6
        entry[1] += 1
    step_s = wall_s / steps
    seconds = {c: per_cat[c] / steps for c in CATEGORIES}
    seconds["framework"] += max(step_s - sum(seconds.values()), 0.0)  # time no event covers
    ranked = sorted(per_op.items(), key=lambda kv: -kv[1][0])[:top]
    return {
        "steps": steps, "step_s": round(step_s, 4),
        "category_s_per_step": {c: round(s, 4) for c, s in seconds.items()},
        "category_share": {c: round(s / step_s, 4) for c, s in seconds.items()},
        "top_ops": [{"op": name, "self_s_per_step": round(s / steps, 4), "calls_per_step": calls / steps,
                     "share": round(s / steps / step_s, 4), "category": cat}
                    for (name, cat), (s, calls) in ranked],
        "dense_gflop_per_s": _rate(dense_flops, seconds["dense_conv_matmul"]),
        "depthwise_gflop_per_s": _rate(grouped_flops, seconds["depthwise_conv"]),
    }


def _rate(flops: float, seconds: float) -> float | None:
    return round(flops / seconds / 1e9, 1) if seconds > 0 else None


def _ancestors(event) -> list[str]:
    names, parent = [], event.cpu_parent
    while parent is not None:
        names.append(parent.name)
        parent = parent.cpu_parent
    return names


class ProfileSteps(L.Callback):
    """Profiles ``steps`` training steps after ``skip`` untraced ones, each from the end of the step before
    to its own end (so its batch's loading counts); ``ops`` and ``wall_s`` hold the result."""

    def __init__(self, steps: int, skip: int = 1):
        self.steps, self.skip = steps, skip
        self.ops: list[OpTime] = []
        self.wall_s = 0.0
        self._seen, self._prof, self._t0 = 0, None, 0.0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._seen += 1
        if self._seen == self.skip:
            self._prof = profile(activities=[ProfilerActivity.CPU], record_shapes=True)
            self._prof.__enter__()
            self._t0 = time.perf_counter()
        elif self._prof is not None and self._seen == self.skip + self.steps:
            self.wall_s = time.perf_counter() - self._t0
            self._prof.__exit__(None, None, None)
            self.ops = [OpTime(e.name, e.self_cpu_time_total, e.input_shapes or [], _ancestors(e))
                        for e in self._prof.events() if e.self_cpu_time_total > 0]
            self._prof = None


class ScopedLoss(torch.nn.Module):
    """The module's loss inside a named profiler scope, so that its forward ops count as loss."""

    def __init__(self, loss: torch.nn.Module):
        super().__init__()
        self.loss = loss

    def forward(self, *args):
        with record_function(LOSS_SCOPE):
            return self.loss(*args)
