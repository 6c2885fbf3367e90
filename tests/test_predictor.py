"""The Predictor's two strategies and its precision: which one an input size picks, what each feeds the
model, and that a loaded run predicts in the precision it was trained in."""

from __future__ import annotations

import pytest
import torch
from test_inference import rgb, save_run

from seglab.data.classes import ClassSet, default_colors
from seglab.device import resolve_precision
from seglab.errors import SeglabError
from seglab.inference import Predictor, TorchBackend, load
from seglab.inference.resize import ResizeToScale
from seglab.inference.tiling import NativeTiles

CLASSES = ClassSet(("a", "b", "c"), tuple(default_colors(3)))


class Recorder(torch.nn.Module):
    """Three classes from the colour channels; remembers the (H, W) of every batch it is given."""

    def __init__(self):
        super().__init__()
        self.sizes: list[tuple[int, int]] = []

    def forward(self, x):
        self.sizes.append(tuple(x.shape[-2:]))
        return x.float() / 255


def test_input_size_picks_resize_else_native_tiles():
    model = Recorder()
    backend = TorchBackend(model, "cpu", amp=False)
    native, resized = Predictor(backend, CLASSES), Predictor(backend, CLASSES, input_size=(64, 96))
    assert isinstance(native.strategy, NativeTiles) and native.input_size is None
    assert isinstance(resized.strategy, ResizeToScale) and resized.input_size == (64, 96)

    image = rgb(150, 200)
    assert native.predict(image).shape == resized.predict(image).shape == (150, 200)
    assert model.sizes == [(160, 224), (64, 96)]  # padded to multiples of 32; resized to the training scale

    model.sizes.clear()
    Predictor(backend, CLASSES, tile=64, overlap=32).predict(image)
    assert set(model.sizes) == {(64, 64)}  # larger than a tile: tiled


def test_static_export_size_wins_over_the_training_scale():
    backend = TorchBackend(Recorder(), "cpu", amp=False)
    backend.fixed_size = (32, 64)  # what a static ONNX export reports
    assert Predictor(backend, CLASSES, input_size=(64, 96)).input_size == (32, 64)
    assert isinstance(Predictor(backend, CLASSES).strategy, NativeTiles)  # native: padded and tiled to 32x64


@pytest.mark.parametrize("options, message", [
    ({"tile": 100, "overlap": 0}, "tile=100: need a positive multiple of 32"),
    ({"tile": 64, "overlap": 64}, "overlap=64: .*0 <= overlap < tile"),
    ({"tile": 64, "overlap": -32}, "overlap=-32"),
    ({"batch_size": 0}, "batch_size=0"),
    ({"tta": "rotate"}, "tta='rotate'"),
])
def test_bad_options_are_one_line_errors_naming_the_option(options, message):
    with pytest.raises(SeglabError, match=message) as err:
        Predictor(TorchBackend(Recorder(), "cpu", amp=False), CLASSES, **options)
    assert "\n" not in str(err.value)


def test_tta_can_change_after_loading_and_is_checked():
    predictor = Predictor(TorchBackend(Recorder(), "cpu", amp=False), CLASSES)
    predictor.tta = "flip"
    assert predictor.tta == "flip" and predictor.forward.tta == "flip"
    with pytest.raises(SeglabError, match="tta='sideways'"):
        predictor.tta = "sideways"


def run_with_precision(folder, precision: str):
    """A saved run whose config says it trained in ``precision``."""
    run = save_run(folder)
    ckpt = run / "checkpoints" / "best.ckpt"
    state = torch.load(ckpt, weights_only=True)
    state["hyper_parameters"]["config"]["train"]["precision"] = precision
    torch.save(state, ckpt)
    return run


def conv_output_dtypes(predictor: Predictor) -> set[torch.dtype]:
    """The dtypes the model's convolutions compute in during one prediction."""
    seen = set()
    hooks = [m.register_forward_hook(lambda m, i, o: seen.add(o.dtype))
             for m in predictor.backend.model.modules() if isinstance(m, torch.nn.Conv2d)]
    predictor.predict(rgb(64, 96))
    for h in hooks:
        h.remove()
    return seen


@pytest.mark.parametrize("precision, dtype", [("32", torch.float32), ("bf16-mixed", torch.bfloat16)])
def test_a_run_predicts_in_its_own_precision(tmp_path, precision, dtype):
    predictor = load(run_with_precision(tmp_path / "run", precision), device="cpu")
    assert predictor.backend.precision == precision and predictor.backend.amp == (precision != "32")
    assert conv_output_dtypes(predictor) == {dtype}


def test_amp_flags_override_the_runs_precision(tmp_path):
    bf16_run = run_with_precision(tmp_path / "bf16", "bf16-mixed")
    assert conv_output_dtypes(load(bf16_run, device="cpu", amp=False)) == {torch.float32}
    fp32_run = run_with_precision(tmp_path / "fp32", "32")
    assert conv_output_dtypes(load(fp32_run, device="cpu", amp=True)) == {torch.bfloat16}  # the CPU's type


def test_precision_resolves_as_training_does():
    assert resolve_precision("auto", "cpu", None) == resolve_precision("auto", "cpu")
    assert resolve_precision("bf16-mixed", "cpu", False) == "32"
    assert resolve_precision("16-mixed", "cpu", None) == "bf16-mixed"  # CPUs autocast in bf16 only
    assert resolve_precision("32", "cpu", True) == "bf16-mixed"
    assert resolve_precision("32", "cpu", None) == "32"
