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

from seglab.errors import SeglabError


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
    return Temperature(check_value(value, "temperature"), "given" if value is not None else "")


def check_value(value, where: str) -> float | None:
    """``value`` as a float when it is a usable temperature (a finite positive number), None when None;
    SeglabError naming ``where`` otherwise (a hand-edited run.json, a foreign export)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise SeglabError(f"{where}: temperature {value!r} is not a positive number; fit it again with "
                          "`seglab evaluate RUN`")
    return float(value)


def run_temperature(trained, target: str | Path) -> Temperature:
    """The temperature run.json records for ``trained`` (a TrainedModel read from ``target``).

    None, with the reason, when the checkpoint lies outside a run folder, when the run has not been
    evaluated since calibration existed, when it trained on val (which leaves no held-out split to fit on),
    or when the temperature was fitted for another checkpoint of the run (best.ckpt, not last.ckpt)."""
    fit = f"fit one on val with `seglab evaluate {target}`, then predict again"
    if trained.run is None:
        return Temperature(None, missing=f"{target}: a checkpoint outside a run folder has no run.json to hold a "
                                         f"fitted temperature; predict from its run folder after `seglab "
                                         f"evaluate RUN` has fitted one on val")
    info, calibration = trained.run.info, trained.run.read_info().get("calibration")
    if "val" in trained.config.data.trains_on():
        return Temperature(None, missing=f"{target}: the model trained on val, so no temperature was fitted (it "
                                         "is fitted on val, never on test); train with val held out to "
                                         "calibrate it")
    if not isinstance(calibration, dict) or calibration.get("temperature") is None:
        return Temperature(None, missing=f"{target}: no fitted temperature in {info.name} "
                                         f"(calibration.temperature); {fit}")
    value = check_value(calibration["temperature"], str(info))
    fitted_for = calibration.get("checkpoint")
    if fitted_for and Path(str(fitted_for)).name != trained.checkpoint.name:
        return Temperature(None, missing=f"{target}: the temperature in {info.name} was fitted for "
                                         f"{Path(str(fitted_for)).name}, not {trained.checkpoint.name}; {fit}")
    on = calibration.get("fitted_on") or "val"
    return Temperature(value, f"{info} (fitted on {on} for {trained.checkpoint.name})")


def stored_temperature(meta: dict, where: str | Path) -> Temperature:
    """The temperature an export's metadata carries (key "temperature"; see inference/metadata.py)."""
    value = check_value(meta.get("temperature"), f"{where}'s metadata")
    if value is None:
        return Temperature(None, missing=f"{where}: this export carries no temperature; export it again from "
                                         "its run after `seglab evaluate RUN` has fitted one on val")
    return Temperature(value, f"{where}'s metadata")
