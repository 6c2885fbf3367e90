"""One place that builds Lightning Trainers, so training and evaluation share device and precision logic."""

from __future__ import annotations

import contextlib
import warnings

import lightning as L
import torch

from seglab.training.device import resolve_accelerator, resolve_precision
from seglab.training.threads import ThreadTuner

# Library chatter that says nothing actionable to a seglab user.
_NOISE = (
    ".*does not have many workers.*",
    ".*smaller than the logging interval.*",
    ".*LeafSpec.*",
    ".*treespec.*",
    ".*Checkpoint directory .* exists and is not empty.*",
)


@contextlib.contextmanager
def quiet():
    with warnings.catch_warnings():
        for pattern in _NOISE:
            warnings.filterwarnings("ignore", pattern)
        yield


def make_trainer(train_cfg, **kwargs) -> L.Trainer:
    """A Trainer on the configured (or auto-detected) device, precision and CPU threads;
    ``kwargs`` go to Lightning."""
    kwargs.setdefault("enable_model_summary", False)
    accelerator = resolve_accelerator(train_cfg.accelerator)
    if accelerator == "cpu" and train_cfg.threads == "auto":
        kwargs["callbacks"] = [*kwargs.get("callbacks", []), ThreadTuner()]
    elif accelerator == "cpu" and train_cfg.threads:
        torch.set_num_threads(int(train_cfg.threads))
    return L.Trainer(accelerator=accelerator, precision=resolve_precision(train_cfg.precision,
                     train_cfg.accelerator), **kwargs)
