"""The keys the notebooks' own recipes need: vertical flips, rotation, brightness and contrast ranges, the size
of the from-scratch models, and a schedule that moves once per epoch. Each is checked on its own, small."""

import csv
import math

import numpy as np
import pytest
import torch
from fakes import assert_one_line_error, make_run, run_cli
from torch import nn

from seglab.config import RunConfig, load_config
from seglab.config.checks import ConfigError
from seglab.config.schema import DataConfig, factor_range
from seglab.constants import IGNORE_INDEX
from seglab.data.datamodule import train_preset
from seglab.data.transforms import TrainPreset
from seglab.errors import SeglabError
from seglab.models import build_model
from seglab.training.schedule import ScheduleCallback, lr_factor

OFF = {"scale_crop": False, "hflip": False, "color_jitter": False}


def _pair(h=64, w=96):
    """An image whose every pixel says where it is, and a mask of 4 horizontal bands (labels 0..3)."""
    rng = np.random.default_rng(0)
    image = rng.integers(20, 236, (h, w, 3), dtype=np.uint8)
    mask = (np.arange(h)[:, None] * 4 // h).repeat(w, 1).astype(np.uint8)
    return image, mask


# --- augmentation keys ---------------------------------------------------------------------------------


def test_vflip_flips_image_and_mask_together_half_the_time():
    image, mask = _pair()
    flipped = 0
    for seed in range(24):
        img, msk = TrainPreset((64, 96), vflip=True, seed=seed, **OFF)(image, mask)
        if np.array_equal(msk, mask):
            assert np.array_equal(img, image)
        else:
            assert np.array_equal(msk, mask[::-1]) and np.array_equal(img, image[::-1])
            flipped += 1
    assert 4 <= flipped <= 20  # p = 0.5
    assert np.array_equal(TrainPreset((64, 96), seed=0, **OFF)(image, mask)[1], mask)  # off by default


def test_rotation_keeps_labels_nearest_fills_void_and_stays_within_its_angle():
    image, mask = _pair()
    image[:] = 200  # uniform: what the rotation uncovers is the only black
    for seed in range(8):
        img, msk = TrainPreset((64, 96), rotate=10, seed=seed, **OFF)(image, mask)
        assert img.shape == image.shape and msk.shape == mask.shape
        assert set(np.unique(msk)) <= {0, 1, 2, 3, IGNORE_INDEX}  # nearest: no blended label
        uncovered = msk == IGNORE_INDEX
        assert uncovered.any()  # at 1-10 degrees every corner uncovers something
        assert (img[uncovered] < 100).all()  # black where the mask is void
        # at most 10 degrees: a corner triangle of 10 degrees covers at most tan(10°) of the border
        assert uncovered.mean() < 0.5 * (math.tan(math.radians(10)) * (64 / 96 + 96 / 64)) + 0.02
    # band boundaries tilt but stay: the middle of the image keeps its label
    assert msk[32, 48] == mask[32, 48]


def test_rotation_angle_is_drawn_from_the_whole_range():
    image, mask = _pair()
    signs = set()
    for seed in range(12):
        _, msk = TrainPreset((64, 96), rotate=10, seed=seed, **OFF)(image, mask)
        void_top_left = msk[0, :8].tolist().count(IGNORE_INDEX) > msk[0, -8:].tolist().count(IGNORE_INDEX)
        signs.add(void_top_left)
    assert signs == {True, False}  # both directions


def test_brightness_scales_images_only_by_its_factor():
    image, mask = _pair()
    img, msk = TrainPreset((64, 96), brightness=(1.2, 1.2), seed=0, **OFF)(image, mask)
    np.testing.assert_array_equal(msk, mask)
    expected = np.clip(image.astype(np.float64) * 1.2, 0, 255)
    assert np.abs(img.astype(np.float64) - expected).max() <= 1
    for seed in range(10):
        img, msk = TrainPreset((64, 96), brightness=(0.8, 1.2), seed=seed, **OFF)(image, mask)
        np.testing.assert_array_equal(msk, mask)
        unclipped = (image > 10) & (image < 200)
        ratio = img[unclipped].astype(np.float64) / image[unclipped]
        assert 0.8 - 0.02 <= np.median(ratio) <= 1.2 + 0.02


def test_contrast_blends_with_the_mean_grey_images_only():
    image, mask = _pair()
    img, msk = TrainPreset((64, 96), contrast=(0.5, 0.5), seed=0, **OFF)(image, mask)
    np.testing.assert_array_equal(msk, mask)
    f = image.astype(np.float64)
    grey = (0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]).mean()
    expected = np.clip((f - grey) * 0.5 + grey, 0, 255)
    assert np.abs(img.astype(np.float64) - expected).max() <= 2
    assert img.std() < image.std()
    for seed in range(6):
        img, msk = TrainPreset((64, 96), contrast=(0.8, 1.2), seed=seed, **OFF)(image, mask)
        np.testing.assert_array_equal(msk, mask)
        assert 0.8 - 0.03 <= img.astype(np.float64).std() / f.std() <= 1.2 + 0.03


def test_brightness_comes_before_contrast():
    image, mask = _pair()
    both = TrainPreset((64, 96), brightness=(1.2, 1.2), contrast=(0.5, 0.5), seed=0, **OFF)(image, mask)[0]
    first = TrainPreset((64, 96), brightness=(1.2, 1.2), seed=0, **OFF)(image, mask)[0]
    then = TrainPreset((64, 96), contrast=(0.5, 0.5), seed=0, **OFF)(first, mask)[0]
    np.testing.assert_array_equal(both, then)


def test_config_keys_reach_the_training_transform():
    cfg = load_config(overrides={"data.vflip": True, "data.rotate": 10, "data.brightness": "0.8,1.2",
                                 "data.contrast": 0.2}).data
    assert cfg.brightness == [0.8, 1.2] and factor_range(cfg.brightness) == (0.8, 1.2)
    assert factor_range(cfg.contrast) == pytest.approx((0.8, 1.2)) and factor_range(None) is None
    names = [type(t).__name__ for t in train_preset(cfg, (64, 96), seed=0).pipeline.transforms]
    assert names == ["Resize", "RandomScale", "PadIfNeeded", "RandomCrop", "HorizontalFlip", "VerticalFlip",
                     "Rotate", "ColorJitter", "ColorJitter"]
    default = [type(t).__name__ for t in train_preset(DataConfig(), (64, 96), seed=0).pipeline.transforms]
    assert "VerticalFlip" not in default and "Rotate" not in default and "ColorJitter" not in default


@pytest.mark.parametrize("key, value, fragment", [
    ("data.rotate", -5, "0 (off) to 180"),
    ("data.rotate", 200, "0 (off) to 180"),
    ("data.rotate", "x", "bad value"),
    ("data.vflip", "sometimes", "true or false"),
    ("data.brightness", [1.2, 0.8], "0 <= low <= high"),
    ("data.brightness", [-0.1, 1.0], "0 <= low <= high"),
    ("data.brightness", 1.5, "one number b <= 1"),
    ("data.contrast", [0.5, 0.6, 0.7], "low,high"),
    ("data.contrast", "x", "bad value"),
    ("train.scheduler_interval", "batch", "choose one of step, epoch"),
])
def test_bad_values_are_one_line_errors_naming_the_key(key, value, fragment):
    from seglab.training.plan import check_names

    with pytest.raises(ConfigError) as info:
        check_names(load_config(overrides={key: value}))
    assert info.value.key == key and fragment in str(info.value) and "\n" not in str(info.value)


def test_bad_augmentation_value_exits_2_from_the_cli(capsys, tiny_camvid, tmp_path):
    r = run_cli(capsys, "train", "--data", tiny_camvid, "--out", tmp_path, "--set", "data.rotate=-5")
    assert_one_line_error(r, "data.rotate")
    r = run_cli(capsys, "train", "--data", tiny_camvid, "--out", tmp_path, "--set", "data.brightness=1.2,0.8")
    assert_one_line_error(r, "data.brightness")


# --- from-scratch model sizes ----------------------------------------------------------------------------


class _NotebookConvBlock(nn.Sequential):  # the second notebook's CustomUNet (001 L1250-1311), as written
    def __init__(self, c_in, c_out):
        super().__init__(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(),
                         nn.Conv2d(c_out, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU())


def _notebook_unet_params(n_classes=32) -> int:
    blocks = [_NotebookConvBlock(a, b) for a, b in [(3, 64), (64, 128), (128, 256), (256, 512), (512, 1024)]]
    for c_in, c_out in [(1024, 512), (512, 256), (256, 128), (128, 64)]:
        blocks += [nn.ConvTranspose2d(c_in, c_out, 2, stride=2), _NotebookConvBlock(c_in, c_out)]
    blocks.append(nn.Conv2d(64, n_classes, 1))
    return sum(p.numel() for b in blocks for p in b.parameters())


def _notebook_vit_params(n_classes=32, dim=384, depth=4, mlp=1536, patches=196) -> int:
    # SimpleSegmenter (001 L1322-1403): patch conv, position embedding, 4 pre-norm blocks, LayerNorm + Linear
    block = nn.ModuleList([nn.LayerNorm(dim), nn.Linear(dim, 3 * dim), nn.Linear(dim, dim), nn.LayerNorm(dim),
                           nn.Linear(dim, mlp), nn.Linear(mlp, dim)])
    head = nn.ModuleList([nn.Conv2d(3, dim, 16, stride=16), nn.LayerNorm(dim), nn.Linear(dim, n_classes)])
    count = lambda m: sum(p.numel() for p in m.parameters())
    return count(head) + depth * count(block) + patches * dim


def _params(spec, n=32):
    with torch.device("meta"):
        return sum(p.numel() for p in build_model(spec, n, "none").parameters())


def test_the_notebooks_scratch_models_are_reachable_at_their_sizes():
    unet, vit = _params("scratch:unet:64"), _params("scratch:vit:384")
    assert unet == pytest.approx(_notebook_unet_params(), rel=1e-3)  # ~31.0 M (seglab's convs before BN: no bias)
    assert 30.9e6 < unet < 31.1e6
    assert vit == _notebook_vit_params() and 7.4e6 < vit < 7.55e6  # ~7.5 M
    model = build_model("scratch:vit:384", 32, "none")
    assert model.net.blocks[0].attn.num_heads == 6 and len(model.net.blocks) == 4 and model.net.patch_size == 16
    assert [d[0].out_channels for d in build_model("scratch:unet:64", 32, "none").net.downs] == [64, 128, 256, 512]
    # the defaults are unchanged: the sizes only move when the spec says so
    assert _params("scratch:unet") == _params("scratch:unet:32") < 8e6
    assert _params("scratch:vit") == _params("scratch:vit:192") < 2.1e6
    assert _params("scratch:simplesegnet", 6) == _params("scratch:simplesegnet:32", 6)
    assert _params("scratch:simplesegnet:64", 6) > _params("scratch:simplesegnet", 6)


@pytest.mark.parametrize("spec, fragment", [
    ("scratch:unet:12", "multiple of 8 from 8 to 256"),
    ("scratch:unet:512", "multiple of 8 from 8 to 256"),
    ("scratch:vit:100", "multiple of 64 from 64 to 1024"),
    ("scratch:simplesegnet:wide", "multiple of 8"),
])
def test_bad_scratch_sizes(spec, fragment):
    with pytest.raises(SeglabError, match=fragment) as info:
        build_model(spec, 11, "none")
    assert "\n" not in str(info.value)


def test_a_sized_scratch_model_rebuilds_from_its_checkpoint_and_pretrained_folder(tmp_path):
    from seglab.data.classes import CAMVID11
    from seglab.inference.export import load_pretrained, save_pretrained
    from seglab.runs import read_trained

    cfg = RunConfig()
    cfg.model.spec, cfg.model.weights = "scratch:unet:16", "none"
    run = make_run(tmp_path / "r", cfg.to_dict())
    trained = read_trained(run)
    model = trained.build()
    assert trained.config.model.spec == "scratch:unet:16" and model.spec == "scratch:unet:16"
    assert model.net.downs[0][0].out_channels == 16
    x = torch.rand(1, 3, 32, 48) * 255
    vit = build_model("scratch:vit:128", 11, "none").eval()
    again = load_pretrained(save_pretrained(vit, CAMVID11, tmp_path / "hub"))[0]
    assert again.spec == "scratch:vit:128" and again.net.blocks[0].attn.num_heads == 2
    torch.testing.assert_close(again(x), vit(x))


# --- a schedule that moves once per epoch ----------------------------------------------------------------


class _Trainer:
    def __init__(self, epoch, step, per_epoch=10, epochs=5):
        self.current_epoch, self.global_step = epoch, step
        self.num_training_batches, self.estimated_stepping_batches = per_epoch, per_epoch * epochs


def test_per_epoch_schedule_holds_cosine_annealing_lrs_values():
    """CosineAnnealingLR(T_max=5) stepped after every epoch, as the notebook did, lr 5e-4."""
    opt = torch.optim.AdamW([nn.Parameter(torch.zeros(1))], lr=5e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=5)
    torch_lrs = []
    for _ in range(5):
        torch_lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    per_epoch, per_step = ScheduleCallback("cosine", interval="epoch"), ScheduleCallback("cosine")
    for epoch, lr in enumerate(torch_lrs):
        for step in range(epoch * 10, epoch * 10 + 10):
            assert 5e-4 * lr_factor("cosine", per_epoch.progress(_Trainer(epoch, step))) == pytest.approx(lr)
        assert per_step.progress(_Trainer(epoch, epoch * 10 + 9)) > per_epoch.progress(_Trainer(epoch, epoch * 10 + 9))


def test_per_epoch_schedule_needs_a_known_length():
    with pytest.raises(ConfigError, match="train.scheduler_interval"):
        load_config(overrides={"train.scheduler_interval": "epoch", "train.budget": "1m", "train.budget_clock": "wall"})
    load_config(overrides={"train.scheduler_interval": "epoch", "train.budget": "1m"})  # a compute budget: steps


def test_per_epoch_schedule_in_a_real_run(capsys, tiny_camvid, tmp_path):
    r = run_cli(capsys, "train", "--model", "scratch:simplesegnet", "--size", "64x96", "--batch", "2",
                "--epochs", "2", "--data", tiny_camvid, "--out", tmp_path, "--name", "r", "--scheduler", "cosine",
                "--set", "train.scheduler_interval=epoch", "--set", "data.vflip=true", "--set", "data.rotate=10",
                "--set", "data.brightness=0.8,1.2", "--set", "data.contrast=0.8,1.2")
    assert r.code == 0, r.err[-3000:]
    with (tmp_path / "r" / "metrics.csv").open() as f:
        lrs = [float(row["lr"]) for row in csv.DictReader(f)]
    assert lrs == pytest.approx([1e-3, 5e-4])  # epoch 2 of 2 at cos(pi/2): half the base rate
