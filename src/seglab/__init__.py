"""seglab: reproducible semantic-segmentation studies with correct metrics.

The Python API, for scripts and notebooks (``seglab.api`` holds it; every name is imported on first use, so
``import seglab`` stays free of torch):

    run = seglab.train(data="../shared/camvid", model="unet:resnet18", epochs=1)   # -> Run
    run.metrics, run.curves, run.per_class                                         # pandas DataFrames
    seglab.evaluate(run, split="val")                                              # -> Metrics
    study = seglab.study("seed001", data="../shared/camvid")                      # -> Study
    search = seglab.tune("quick-cnn", data="../shared/camvid")                    # -> Tune
    seglab.load(run).predict(image)                                                # -> (H, W) mask

``seglab.evaluate``, ``seglab.study`` and ``seglab.tune`` are also the names of modules (the scoring code, the
study and tune packages): importing them makes those modules callable, so either way ``seglab.evaluate(...)``,
``seglab.study(...)`` and ``seglab.tune(...)`` call the API.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING

from seglab.constants import VERSION as __version__

if TYPE_CHECKING:  # for type checkers and editors; at run time they are imported on first use
    from seglab.api import DataCheck, Metrics, Run, Study, Tune, check_data, train

__all__ = ["DataCheck", "Metrics", "Run", "Study", "Tune", "__version__", "check_data", "evaluate", "load", "study",
           "train", "tune"]

_API = ("train", "check_data", "Run", "Study", "Tune", "Metrics", "DataCheck")  # seglab.api's names, imported on first use
_CALLABLE_MODULES = ("evaluate", "study", "tune")  # modules of the package that are also API calls


def load(target, **kwargs):
    """A Predictor for a run folder (or a ``Run``), .ckpt, save_pretrained folder or .onnx file; see
    seglab.inference.load."""
    from seglab.inference import load as _load  # lazy: `import seglab` stays free of torch

    return _load(getattr(target, "path", target), **kwargs)


class _CallableModule(types.ModuleType):
    """``seglab.evaluate`` / ``seglab.study`` as modules that, called, run the API call of the same name."""

    def __call__(self, *args, **kwargs):
        from seglab import api

        return getattr(api, self.__name__.rsplit(".", 1)[1])(*args, **kwargs)


class _FrontDoor(types.ModuleType):
    def __setattr__(self, name, value):
        # the import system sets seglab.evaluate = <module> once it is imported: make that module callable
        if name in _CALLABLE_MODULES and type(value) is types.ModuleType:
            value.__class__ = _CallableModule
        super().__setattr__(name, value)


def __getattr__(name: str):
    if name in _API:
        from seglab import api

        return getattr(api, name)
    if name in _CALLABLE_MODULES:
        return importlib.import_module(f"seglab.{name}")  # callable once imported (see _FrontDoor)
    raise AttributeError(f"module 'seglab' has no attribute {name!r}")


sys.modules[__name__].__class__ = _FrontDoor
