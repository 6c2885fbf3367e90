"""Prediction, export and hand-off of a trained model: a tiny untrained SimpleSegNet saved as a Lightning
checkpoint stands in for a trained run, so everything runs offline on the CPU in seconds."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from fakes import make_run, make_video, run_cli
from PIL import Image

from seglab.config import DataConfig, ModelConfig, RunConfig
from seglab.data.classes import CAMVID11
from seglab.errors import SeglabError
from seglab.imageio import read_image, to_rgb
from seglab.inference import Predictor, TorchBackend, export_onnx, load, save_pretrained, verify_onnx
from seglab.inference.io import open_video
from seglab.runs import read_trained

SPEC = "scratch:simplesegnet"
NAMES, COLORS = list(CAMVID11.names), [list(c) for c in CAMVID11.colors]


def save_run(run: Path, names: list[str] = NAMES, colors: list[list[int]] = COLORS, state_dict=None,
             spec: str = SPEC, eval_size="native") -> Path:
    """A seglab run folder with a Lightning-format best.ckpt and config.yaml; by default a model that
    predicts at native resolution (padding and tiling), ``eval_size=None`` for one at its training size."""
    config = RunConfig(model=ModelConfig(spec=spec, weights="none"),
                       data=DataConfig(size=(64, 96), eval_size=eval_size)).to_dict()
    return make_run(run, config, names=names, colors=colors, state_dict=state_dict)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return save_run(tmp_path_factory.mktemp("inference") / "run")


@pytest.fixture(scope="module")
def predictor(run) -> Predictor:
    return load(run, device="cpu", amp=False)  # fp32: exact comparisons with references below


def rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth random (H, W, 3) uint8 image: blobs, not per-pixel noise, so predictions form regions."""
    low = np.random.default_rng(seed).integers(0, 256, (max(h // 8, 2), max(w // 8, 2), 3), dtype=np.uint8)
    return cv2.resize(low, (w, h), interpolation=cv2.INTER_LINEAR)


def rgb_file(path: Path, h: int = 37, w: int = 53, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb(h, w, seed)).save(path)
    return path


def cli(args: list[str]) -> tuple[int, str]:
    """The real ``seglab`` entry point: its exit code and all it printed (stdout, then stderr)."""
    result = run_cli(None, *args)
    return result.code, result.out + result.err


def error_line(output: str) -> str:
    lines = [ln for ln in output.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, output
    return lines[0]


# ---------------------------------------------------------------------------------------------------
# Loading


def test_checkpoint_loads_as_run_folder_and_as_file(run, predictor):
    trained = read_trained(run)
    assert trained.checkpoint == run / "checkpoints" / "best.ckpt" and list(trained.classes.names) == NAMES
    assert trained.config.model.spec == SPEC and not trained.build().training
    image = rgb(64, 96)
    from_file = load(run / "checkpoints" / "best.ckpt", device="cpu", amp=False).predict(image)
    np.testing.assert_array_equal(predictor.predict(image), from_file)
    assert predictor.classes.names == CAMVID11.names and predictor.num_classes == 11


def test_malicious_checkpoint_is_refused_without_running_code(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))  # unpickling would create the marker file

    ckpt = tmp_path / "evil" / "checkpoints" / "best.ckpt"
    ckpt.parent.mkdir(parents=True)
    torch.save({"state_dict": {}, "hyper_parameters": {"config": Payload()}}, ckpt)
    with pytest.raises(SeglabError) as err:
        load(ckpt)
    assert str(ckpt) in str(err.value) and "\n" not in str(err.value)
    assert not marker.exists()
    code, out = cli(["predict", tmp_path / "evil", rgb_file(tmp_path / "x.png")])
    assert code == 2 and "best.ckpt" in error_line(out) and not marker.exists()
    torch.load(ckpt, weights_only=False)  # the payload is live: an unsafe load does run it
    assert marker.exists()


@pytest.mark.parametrize("classes,spec", [(5, SPEC), (11, "scratch:unet")], ids=["class-count", "model"])
def test_checkpoint_of_another_model_or_class_count_is_refused(tmp_path, run, classes, spec):
    weights = torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)["state_dict"]  # 11 classes
    bad = save_run(tmp_path / "other", NAMES[:classes], COLORS[:classes], state_dict=weights, spec=spec)
    with pytest.raises(SeglabError, match=f"best.ckpt: weights do not fit model {spec}") as err:
        load(bad)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", ["garbage.ckpt", "garbage.onnx"])
def test_files_that_are_not_models_are_one_line_errors(tmp_path, name):
    (tmp_path / name).write_bytes(b"\x00 not a model " * 10)
    with pytest.raises(SeglabError, match=f"{name}: not a") as err:
        load(tmp_path / name)
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------------------------------------------
# Images of any size and layout


BASE = rgb(37, 53)


@pytest.mark.parametrize("image,same_as", [
    (BASE, BASE),  # odd sizes
    (BASE[..., 0], np.repeat(BASE[..., :1], 3, axis=2)),  # grey (H, W)
    (np.dstack([BASE, np.full((37, 53), 7, np.uint8)]), BASE),  # RGBA: alpha dropped
    (BASE.astype(np.uint16) * 257, BASE),  # 16-bit
    (BASE.astype(np.float32) / 255, BASE),  # float 0..1
    (Image.fromarray(BASE), BASE),  # PIL image
    (Image.fromarray(BASE).quantize(64), Image.fromarray(BASE).quantize(64).convert("RGB")),  # palette
], ids=["rgb", "grey", "rgba", "16bit", "float", "pil", "palette"])
def test_mask_has_the_input_size_for_any_layout(predictor, image, same_as):
    mask = predictor.predict(image)
    assert mask.shape == (37, 53) and mask.dtype == np.uint8 and mask.max() < predictor.num_classes
    np.testing.assert_array_equal(mask, predictor.predict(np.asarray(same_as)))


def test_tiny_and_thin_images(predictor):
    for h, w in [(1, 1), (5, 300), (300, 7)]:
        assert predictor.predict(rgb(h, w)).shape == (h, w)


def test_bf16_autocast_on_cpu(predictor):
    bf16 = Predictor(TorchBackend(predictor.backend.model, "cpu", amp=True), predictor.classes)
    probs = bf16.predict_proba(BASE)
    assert probs.dtype == np.float32 and np.allclose(probs.sum(0), 1, atol=1e-3)
    assert (probs.argmax(0) == predictor.predict(BASE)).mean() > 0.95  # bf16 moves near-ties only


def test_layouts_convert_to_the_same_rgb():
    base = rgb(20, 30)
    np.testing.assert_array_equal(to_rgb(base.astype(np.uint16) * 257), base)  # 16-bit keeps the high byte
    np.testing.assert_array_equal(to_rgb(np.dstack([base, base[..., :1]])), base)  # alpha dropped
    np.testing.assert_array_equal(to_rgb(base[..., 0]), np.repeat(base[..., :1], 3, axis=2))  # grey
    np.testing.assert_array_equal(to_rgb(base.astype(np.float64) / 255), base)


@pytest.mark.parametrize("name,write", [
    ("grey.png", lambda p, a: Image.fromarray(a[..., 0]).save(p)),
    ("rgba.png", lambda p, a: Image.fromarray(np.dstack([a, a[..., :1]])).save(p)),
    ("grey16.png", lambda p, a: Image.fromarray(a[..., 0].astype(np.uint16) * 257).save(p)),
    ("rgb16.tif", lambda p, a: cv2.imwrite(str(p), a[..., ::-1].astype(np.uint16) * 257)),
    ("rgb16.png", lambda p, a: cv2.imwrite(str(p), a[..., ::-1].astype(np.uint16) * 257)),
    ("photo.bmp", lambda p, a: Image.fromarray(a).save(p)),
    ("photo.webp", lambda p, a: Image.fromarray(a).save(p, lossless=True)),
])
def test_read_image_gives_rgb_uint8(tmp_path, name, write):
    a = rgb(21, 34)
    write(tmp_path / name, a)
    got = read_image(tmp_path / name)
    assert got.shape == (21, 34, 3) and got.dtype == np.uint8
    expected = a if not name.startswith("grey") else np.repeat(a[..., :1], 3, axis=2)
    np.testing.assert_array_equal(got, expected)


def test_outputs_named_after_the_input_with_the_class_palette(tmp_path, run, predictor):
    photo = rgb_file(tmp_path / "in" / "photo.jpg")
    out = tmp_path / "out"
    code, output = cli(["predict", run, photo, "--out", out, "--overlay", "--legend", "--alpha", "0.4", "--no-amp"])
    assert code == 0, output
    assert sorted(p.name for p in out.iterdir()) == ["legend.png", "photo.png", "photo_overlay.png"]
    mask_img = Image.open(out / "photo.png")
    assert mask_img.mode == "P" and mask_img.size == (53, 37)
    assert mask_img.getpalette()[: 3 * 11] == [v for c in COLORS for v in c]
    np.testing.assert_array_equal(np.asarray(mask_img), predictor.predict(read_image(photo)))
    assert Image.open(out / "photo_overlay.png").size == (53, 37)
    assert Image.open(out / "legend.png").height == 11 * 20
    assert "predicted 1 image in" in output and "images/s" in output


def test_npy_probabilities_sum_to_one(tmp_path, run, predictor):
    photo = rgb_file(tmp_path / "photo.png", 40, 70)
    code, output = cli(["predict", run, photo, "--out", tmp_path / "out", "--format", "npy", "--no-amp"])
    assert code == 0, output
    probs = np.load(tmp_path / "out" / "photo.npy")
    assert probs.shape == (11, 40, 70) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-5)
    np.testing.assert_array_equal(probs.argmax(0), predictor.predict(read_image(photo)))


def test_folder_with_bad_files_writes_the_good_ones(tmp_path, run):
    src = tmp_path / "photos"
    good = [rgb_file(src / "a.png"), rgb_file(src / "sub" / "b.jpg", seed=1),
            rgb_file(src / "sub" / "deeper" / "c.bmp", 64, 64, seed=2)]
    (src / "notes.txt").write_text("not an image")
    (src / "sub" / "fake.png").write_text("not an image either")
    data = (src / "a.png").read_bytes()
    (src / "sub" / "truncated.png").write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    code, output = cli(["predict", run, src, "--out", out, "--batch", "2"])
    assert code == 1, output  # some inputs skipped, the rest written
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    assert written == ["a.png", "sub/b.png", "sub/deeper/c.png"]
    assert Image.open(out / "sub" / "deeper" / "c.png").size == (64, 64)
    assert f"skipped {src / 'sub' / 'fake.png'}: cannot read image (not an image" in output
    assert f"skipped {src / 'sub' / 'truncated.png'}: cannot read image (truncated" in output
    assert f"ignored {src / 'notes.txt'}" in output
    assert written == sorted(str(p.relative_to(src).with_suffix(".png")) for p in good)  # each good one, once
    assert "predicted 3 images" in output


def test_empty_folder_is_one_line_error(tmp_path, run):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    code, output = cli(["predict", run, tmp_path / "empty"])
    assert code == 2 and "empty: no images or videos to predict" in error_line(output)


def test_missing_run_is_one_line_error(tmp_path):
    code, output = cli(["predict", tmp_path / "nope", rgb_file(tmp_path / "x.png")])
    assert code == 2 and "nope: no such run folder or checkpoint file" in error_line(output)


# ---------------------------------------------------------------------------------------------------
# Tiling and batching


class Spy:
    """Wraps a backend and records the shape of every batch it runs."""

    def __init__(self, backend):
        self.backend, self.shapes = backend, []
        self.fixed_size, self.max_batch = backend.fixed_size, backend.max_batch

    def __call__(self, images):
        self.shapes.append(tuple(images.shape))
        return self.backend(images)


def test_tiling_matches_whole_image_and_bounds_the_tiles(predictor):
    image = rgb(230, 300, seed=3)
    spy = Spy(predictor.backend)
    tiled = Predictor(spy, predictor.classes, tile=128, overlap=64, batch_size=3)
    whole = predictor.predict_proba(image)  # one tile
    got = tiled.predict(image)
    assert got.shape == (230, 300)
    # The overlap covers SimpleSegNet's receptive field, so the tiles reproduce the whole-image result.
    assert (got == whole.argmax(0)).mean() >= 0.999
    np.testing.assert_allclose(tiled.predict_proba(image), whole, atol=1e-4)
    assert max(s[0] for s in spy.shapes) <= 3 and {s[2:] for s in spy.shapes} == {(128, 128)}


def test_same_size_images_share_a_batch(predictor):
    spy = Spy(predictor.backend)
    batched = Predictor(spy, predictor.classes, batch_size=4)
    images = [rgb(40, 60, seed=i) for i in range(5)] + [rgb(33, 33)]
    masks = batched.predict_batch(images)
    assert [m.shape for m in masks] == [(40, 60)] * 5 + [(33, 33)]
    assert sorted(s[0] for s in spy.shapes) == [1, 1, 4]  # 4 + 1 of the first size, 1 of the second
    for image, mask in zip(images, masks):
        np.testing.assert_array_equal(mask, predictor.predict(image))


# ---------------------------------------------------------------------------------------------------
# Video


def test_video_round_trip(tmp_path, run):
    clip = make_video(tmp_path / "clip.mp4", [rgb(48, 64, seed=i) for i in range(5)])
    code, output = cli(["predict", run, clip, "--out", tmp_path / "out", "--batch", "2"])
    assert code == 0, output
    cap, info = open_video(tmp_path / "out" / "clip_overlay.mp4")
    frames = sum(1 for _ in iter(lambda: cap.read()[0], False))
    assert frames == 5 and info.size == (48, 64)
    assert re.search(rf"{re.escape(str(clip))}: 5 frames, [0-9.]+ FPS sustained after the first batch "
                     r"\(decode [0-9.]+, model [0-9.]+, encode [0-9.]+ FPS\)", output), output
    assert re.search(r"1 video \(5 frames\) at [0-9.]+ FPS sustained in", output), output


def test_unopenable_video_is_one_line_error(tmp_path, run):
    bad = tmp_path / "broken.mp4"
    bad.write_text("not a video")
    with pytest.raises(SeglabError, match="broken.mp4: cannot open video") as err:
        open_video(bad)
    assert "\n" not in str(err.value)
    code, output = cli(["predict", run, bad, rgb_file(tmp_path / "ok.png"), "--out", tmp_path / "out"])
    assert code == 1 and f"skipped {bad}: cannot open video" in output
    assert (tmp_path / "out" / "ok.png").exists()


# ---------------------------------------------------------------------------------------------------
# Export and hand-off


def test_onnx_dynamic_export_agrees_with_torch(tmp_path, run, predictor):
    code, output = cli(["export", run, "--format", "onnx", "--dynamic", "--size", "64x96",
                        "--out", tmp_path / "model.onnx"])
    assert code == 0, output
    assert "of pixels as PyTorch fp32" in output and "synthetic" in output  # the run's data is not here
    model = predictor.backend.model
    report = verify_onnx(model, tmp_path / "model.onnx", [(96, 128), (160, 64)], batch=2)
    assert report["pixel_agreement"] >= 0.995 and report["max_abs_diff"] < 1e-3
    onnx_predictor = load(tmp_path / "model.onnx")
    assert onnx_predictor.classes == predictor.classes  # names and colours travel in the ONNX metadata
    for h, w in [(37, 53), (130, 97)]:
        image = rgb(h, w, seed=h)
        assert (onnx_predictor.predict(image) == predictor.predict(image)).mean() >= 0.995
    photo = rgb_file(tmp_path / "photo.png")
    code, output = cli(["predict", tmp_path / "model.onnx", photo, "--out", tmp_path / "out"])
    assert code == 0 and (tmp_path / "out" / "photo.png").exists()


def test_onnx_static_export_pads_and_tiles(tmp_path, predictor):
    path = export_onnx(predictor.backend.model, predictor.classes, tmp_path / "static.onnx", dynamic=False,
                       size=(64, 64))
    static = load(path)  # the default overlap (128) shrinks to fit the 64-pixel tiles
    assert static.backend.fixed_size == (64, 64) and static.batch_size == 1
    for h, w in [(37, 53), (150, 100)]:  # smaller than the fixed size: padded; larger: tiled
        image = rgb(h, w, seed=w)
        assert (static.predict(image) == predictor.predict(image)).mean() >= 0.99


def test_save_pretrained_scratch_model(tmp_path, run, predictor):
    code, output = cli(["export", run, "--format", "pretrained", "--out", tmp_path / "hub"])
    assert code == 0 and "100.00% of pixels agree" in output, output
    assert sorted(p.name for p in (tmp_path / "hub").iterdir()) == ["model.safetensors", "seglab.json"]
    meta = json.loads((tmp_path / "hub" / "seglab.json").read_text())
    assert meta["spec"] == SPEC and meta["class_names"] == NAMES and meta["class_colors"] == COLORS
    assert meta["mean"] == pytest.approx([0.485, 0.456, 0.406]) and meta["std"] == pytest.approx([0.229, 0.224, 0.225])
    image = rgb(45, 61)
    np.testing.assert_array_equal(load(tmp_path / "hub", amp=False).predict(image), predictor.predict(image))


def test_save_pretrained_smp_model_loads_with_smp_alone(tmp_path):
    import segmentation_models_pytorch as smp

    from seglab.models import build_model

    torch.manual_seed(0)
    model = build_model("unet:resnet18", 3, weights="none").eval()
    classes = type(CAMVID11)(("road", "car", "sky"), ((128, 64, 128), (64, 0, 128), (128, 128, 128)))
    folder = save_pretrained(model, classes, tmp_path / "unet")
    assert {"config.json", "model.safetensors", "seglab.json"} <= {p.name for p in folder.iterdir()}
    assert json.loads((folder / "config.json").read_text())["encoder_weights"] is None  # nothing to download
    image = torch.from_numpy(rgb(32, 64)).permute(2, 0, 1)[None]  # (1, 3, H, W)
    with torch.inference_mode():
        expected = model(image)
        plain = smp.from_pretrained(str(folder)).eval()  # no seglab involved: normalise by hand
        mean, std = (torch.tensor(json.loads((folder / "seglab.json").read_text())[k]).view(1, 3, 1, 1) * 255
                     for k in ("mean", "std"))
        torch.testing.assert_close(plain((image.float() - mean) / std), expected, atol=1e-4, rtol=1e-4)
    reloaded = load(folder, device="cpu", amp=False)
    assert reloaded.classes == classes
    np.testing.assert_array_equal(reloaded.predict(rgb(32, 64)), expected.argmax(1)[0].numpy())


def test_pretrained_folder_with_other_class_count_is_refused(tmp_path, predictor):
    folder = save_pretrained(predictor.backend.model, predictor.classes, tmp_path / "hub")
    meta = json.loads((folder / "seglab.json").read_text())
    meta.update(class_names=NAMES[:3], class_colors=COLORS[:3])
    (folder / "seglab.json").write_text(json.dumps(meta))
    with pytest.raises(SeglabError, match="model.safetensors: weights do not fit scratch:simplesegnet with 3") as e:
        load(folder)
    assert "\n" not in str(e.value)


def test_predicts_at_the_scale_the_model_was_trained_at(tmp_path):
    """A model trained on images resized to 64x96 sees every input resized to 64x96; the mask comes back
    at the input's size. The scale travels with exports."""
    run = save_run(tmp_path / "scaled", eval_size=None)
    predictor = load(run, device="cpu", amp=False)
    assert predictor.input_size == (64, 96)
    image = rgb(150, 200)
    mask = predictor.predict(image)
    assert mask.shape == (150, 200)
    model = predictor.backend.model.eval()
    small = torch.from_numpy(cv2.resize(image, (96, 64), interpolation=cv2.INTER_AREA)).permute(2, 0, 1)[None]
    with torch.no_grad():
        logits = torch.nn.functional.interpolate(model(small), size=(150, 200), mode="bilinear")
    assert (logits.argmax(1)[0].numpy() == mask).mean() > 0.999
    assert load(run, device="cpu", input_size="native").input_size is None  # override
    folder = save_pretrained(model, predictor.classes, tmp_path / "pre", predictor.input_size)
    assert load(folder, device="cpu").input_size == (64, 96)
    onnx_path = export_onnx(model, predictor.classes, tmp_path / "m.onnx", input_size=(64, 96))
    assert load(onnx_path, device="cpu").input_size == (64, 96)


def test_default_precision_follows_training(run):
    """Without --amp/--no-amp, prediction uses the arithmetic `precision: auto` trains and evaluates with."""
    from seglab.device import resolve_precision

    default = load(run, device="cpu")
    assert default.backend.amp == (resolve_precision("auto", "cpu") != "32")
    exported_from = load(run, device="cpu", amp=False)
    assert not exported_from.backend.amp
    for predictor in (default, exported_from):  # autocast computes in bf16; the weights stay fp32 either way
        weights = [w for w in predictor.backend.model.net.state_dict().values() if w.is_floating_point()]
        assert weights and all(w.dtype == torch.float32 for w in weights)



def test_banded_upsampling_equals_interpolate():
    """Training-scale prediction upsamples in row bands (bounded memory for huge images) with the very
    numbers F.interpolate would give for the whole image."""
    from seglab.scoring import upsample_rows

    z = torch.randn(5, 12, 17)
    whole = torch.nn.functional.interpolate(z[None], size=(100, 131), mode="bilinear", align_corners=False)[0]
    bands = list(upsample_rows(z, 100, 131, rows=7))
    assert [y for y, _ in bands] == list(range(0, 100, 7))
    torch.testing.assert_close(torch.cat([b for _, b in bands], dim=1), whole, atol=1e-5, rtol=1e-5)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_device_without_cuda_is_one_line(capsys, run):
    from fakes import assert_one_line_error, run_cli

    assert_one_line_error(run_cli(capsys, "predict", run, run, "--device", "cuda"), "'--device': cuda",
                          "no CUDA device")


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04truncated"], ids=["zero-byte", "truncated"])
def test_broken_best_checkpoint_is_one_line_everywhere(capsys, tmp_path, run, content):
    import shutil

    from fakes import assert_one_line_error, run_cli

    broken = tmp_path / "broken"
    shutil.copytree(run, broken)
    (broken / "checkpoints" / "best.ckpt").write_bytes(content)
    image = tmp_path / "x.png"
    cv2.imwrite(str(image), np.zeros((64, 96, 3), np.uint8))
    for args in (["evaluate", broken], ["predict", broken, image, "--out", tmp_path / "p"],
                 ["export", broken, "--out", tmp_path / "e"]):
        assert_one_line_error(run_cli(capsys, *args), "best.ckpt")


@pytest.mark.parametrize("opset,fragments", [(3, ["'--opset': 3", "7 to 23"]), (99, ["'--opset': 99"])])
def test_bad_opset_is_one_line(capsys, tmp_path, run, opset, fragments):
    from fakes import assert_one_line_error, run_cli

    r = run_cli(capsys, "export", run, "--opset", str(opset), "--out", tmp_path / "m.onnx")
    assert_one_line_error(r, *fragments)


def test_predict_out_naming_a_file_is_one_line(capsys, tmp_path, run):
    from fakes import assert_one_line_error, run_cli

    taken = tmp_path / "taken.png"
    taken.write_bytes(b"keep me")
    image = tmp_path / "x.png"
    cv2.imwrite(str(image), np.zeros((64, 96, 3), np.uint8))
    assert_one_line_error(run_cli(capsys, "predict", run, image, "--out", taken), "--out", "is a file")
    assert taken.read_bytes() == b"keep me"
