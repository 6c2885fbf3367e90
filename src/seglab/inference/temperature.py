"""The temperature a model's probabilities are calibrated with: where a Predictor finds it, and why it has none.

A network's softmax is often over-confident. ``seglab evaluate`` fits one temperature T on val (never on
test) and records it in run.json as ``calibration.temperature``; an export carries it in its metadata
(inference/metadata.py). Calibrated probabilities are softmax(logits / T): for a plain forward pass their
argmax, the mask, is the same as without T, only the confidence changes. T belongs to the checkpoint it was
fitted for and to the logits evaluation scores (the run's input size and test-time augmentation).

When a model has no temperature, asking for calibrated probabilities is an error that says how to get one,
rather than silently returning T = 1 probabilities labelled as calibrated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from seglab.errors import BadValue, SeglabError


@dataclass(frozen=True)
class Temperature:
    """A model's fitted temperature (``value``, None when it has none), where it came from, and, when it has
    none, the one-line message that says how to get one."""

    value: float | None = None
    source: str = ""  # e.g. "runs/x/run.json (fitted on val for best.ckpt)" or "model.onnx's metadata"
    missing: str = "this model has no fitted temperature; `seglab evaluate RUN` fits one on val"

    def require(self) -> float:
        """The temperature, or SeglabError with ``missing`` when there is none."""
        if self.value is None:
            raise SeglabError(self.missing)
        return self.value


def as_temperature(value: Temperature | float | None) -> Temperature:
    """A Temperature from what a caller gives a Predictor: one already made, a number, or None."""
    if isinstance(value, Temperature):
        return value
    if value is not None and not usable(value):
        raise BadValue("temperature", value, "must be a positive number")
    return Temperature(None if value is None else float(value), "given" if value is not None else "")


def usable(value) -> bool:
    """Whether ``value`` can be a temperature: a finite positive number (not a hand-edited string)."""
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def _unusable(value, where: str) -> Temperature:
    """No temperature, because the one stored is not a number: only ``calibrated`` requests fail on it, so a
    bad run.json never stops plain prediction."""
    return Temperature(None, missing=f"{where}: temperature {value!r} is not a positive number; fit it again "
                                     "with `seglab evaluate RUN`")


def run_temperature(trained, target: str | Path) -> Temperature:
    """The temperature run.json records for ``trained`` (a TrainedModel read from ``target``).

    None, with the reason, when the checkpoint lies outside a run folder, when the run trained on val (which
    leaves no held-out split to fit on) or has ``eval.temperature`` off, when it has not been evaluated since
    calibration existed (or evaluation could not fit one: metrics.json says why), or when the temperature
    belongs to other weights: another checkpoint of the run (best.ckpt, not last.ckpt), or this one before it
    changed (evaluate's ``key``: name, size and modification time)."""
    from seglab.runs import checkpoint_key

    fit = f"fit one on val with `seglab evaluate {target}`, then predict again"
    if trained.run is None:
        return Temperature(None, missing=f"{target}: a checkpoint outside a run folder has no run.json to hold a "
                                         f"fitted temperature; predict from its run folder after `seglab "
                                         f"evaluate RUN` has fitted one on val")
    if "val" in trained.config.data.trains_on():
        return Temperature(None, missing=f"{target}: the model trained on val, so no temperature was fitted (it "
                                         "is fitted on val, never on test); train with val held out to "
                                         "calibrate it")
    if not trained.config.eval.temperature:
        return Temperature(None, missing=f"{target}: the run has eval.temperature off, so evaluation fits no "
                                         "temperature; train with eval.temperature on to calibrate it")
    info, calibration = trained.run.info, trained.run.read_info().get("calibration")
    if not isinstance(calibration, dict) or calibration.get("temperature") is None:
        why = ((trained.run.read_metrics() or {}).get("calibration") or {}).get("why_none")
        if why:
            return Temperature(None, missing=f"{target}: no fitted temperature in {info.name}: evaluation could "
                                             f"not fit one ({why})")
        return Temperature(None, missing=f"{target}: no fitted temperature in {info.name} "
                                         f"(calibration.temperature); {fit}")
    value = calibration["temperature"]
    if not usable(value):
        return _unusable(value, str(info))
    fitted_for = Path(str(calibration.get("checkpoint") or trained.checkpoint.name)).name
    if fitted_for != trained.checkpoint.name:
        return Temperature(None, missing=f"{target}: the temperature in {info.name} was fitted for {fitted_for}, "
                                         f"not {trained.checkpoint.name}; {fit}")
    key = calibration.get("key")
    if key is not None and key != checkpoint_key(trained.checkpoint):
        return Temperature(None, missing=f"{target}: the temperature in {info.name} was fitted for earlier "
                                         f"weights of {fitted_for} (the file changed since, or was copied "
                                         f"without its modification time); {fit}")
    on = calibration.get("fitted_on") or "val"
    return Temperature(float(value), f"{info} (fitted on {on} for {trained.checkpoint.name})")


def stored_temperature(meta: dict, where: str | Path) -> Temperature:
    """The temperature an export's metadata carries (key "temperature"; see inference/metadata.py)."""
    value = meta.get("temperature")
    if value is None:
        return Temperature(None, missing=f"{where}: this export carries no temperature; export it again from "
                                         "its run after `seglab evaluate RUN` has fitted one on val")
    if not usable(value):
        return _unusable(value, f"{where}'s metadata")
    return Temperature(float(value), f"{where}'s metadata")
