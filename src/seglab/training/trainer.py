"""One place that builds Lightning Trainers: ``seglab train``, ``seglab study``, ``seglab evaluate``, the budget
calibration and ``seglab bench train`` all get theirs here, so the benchmark times what users run."""

from __future__ import annotations

import contextlib
import warnings

import lightning as L
import torch

from seglab.training.callbacks import CompileTraining
from seglab.training.checkpoint_io import AtomicCheckpointIO
from seglab.training.plan import RunPlan
from seglab.training.threads import ThreadTuner

# Library chatter that says nothing actionable to a seglab user.
_NOISE = (
    ".*does not have many workers.*",
    ".*smaller than the logging interval.*",
    ".*LeafSpec.*",
    ".*treespec.*",
    ".*Checkpoint directory .* exists and is not empty.*",
    ".*defined a `validation_step` but have no `val_dataloader`.*",  # the budget calibration trains only
    # distributed runs: seglab sums confusion matrices across processes itself (SegModule.reduced_metrics)
    ".*It is recommended to use `self.log\\(.*sync_dist=True.*",
    # mid-epoch resumes (validations, tuning rungs) are exact: callbacks.ExactResume restores the place in
    # the epoch's batches, which Lightning's own check cannot see
    ".*resuming from a checkpoint that ended before the epoch ended.*",
)


@contextlib.contextmanager
def quiet():
    with warnings.catch_warnings():
        for pattern in _NOISE:
            warnings.filterwarnings("ignore", pattern)
        yield


# Settings every seglab Trainer shares (a test pins them). No sanity validation: seglab validates the
# data before training and every run validates at least ``train.val_points`` times anyway.
# use_distributed_sampler off: the data module splits items between processes itself, so training keeps its
# (seed, epoch) order and evaluation scores every image exactly once (data/datamodule.py).
TRAINER_DEFAULTS = {"enable_model_summary": False, "num_sanity_val_steps": 0, "log_every_n_steps": 10,
                    "use_distributed_sampler": False}


def make_trainer(plan: RunPlan, **kwargs) -> L.Trainer:
    """A Trainer on the plan's device, in its precision, with its CPU threads and compilation, and seglab's progress output
    (a bar on a terminal, plain lines in a log); ``kwargs`` go to Lightning."""
    from seglab.training.progress import progress_callback

    kwargs = {**TRAINER_DEFAULTS, **kwargs}
    if kwargs.get("enable_progress_bar", True):
        kwargs["callbacks"] = [*kwargs.get("callbacks", []), progress_callback()]
    if plan.compile:
        kwargs["callbacks"] = [*kwargs.get("callbacks", []), CompileTraining()]
    if plan.accelerator == "cpu" and plan.threads == "auto":
        kwargs["callbacks"] = [*kwargs.get("callbacks", []), ThreadTuner()]
    elif plan.fixed_threads:
        torch.set_num_threads(plan.fixed_threads)
    kwargs.setdefault("plugins", [AtomicCheckpointIO()])
    if plan.device_ids and "devices" not in kwargs:
        kwargs["devices"] = plan.devices
    return L.Trainer(accelerator=plan.accelerator, precision=plan.precision, **kwargs)
