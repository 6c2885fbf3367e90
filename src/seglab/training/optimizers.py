"""Optimizers by name (``train.optimizer``), built from the train config and the trainable parameters."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from seglab.config.schema import TrainConfig


def _sgd(params, t: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)


def _adam(cls):
    # fused: one kernel per step instead of a loop over tensors (CPU and CUDA)
    return lambda params, t: cls(params, lr=t.lr, weight_decay=t.weight_decay, fused=True)


OPTIMIZERS = {"adam": _adam(torch.optim.Adam), "adamw": _adam(torch.optim.AdamW), "sgd": _sgd}


def build_optimizer(params, t: TrainConfig) -> torch.optim.Optimizer:
    return OPTIMIZERS[t.optimizer]([p for p in params if p.requires_grad], t)
