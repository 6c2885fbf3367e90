"""The one scoring path: per-image matrices at the labels' native size, shared views for several TTA modes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seglab.errors import SeglabError
from seglab.metrics import ConfusionMatrix
from seglab.scoring import check_classes, check_split, confusions, score_split, to_label_size, upsample_rows


class Half(torch.nn.Module):
    """A fixed 'model' that predicts at half the input's resolution (as FPN predicts at a quarter)."""

    def __init__(self, classes: int = 3):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, classes, 3, padding=1)
        torch.manual_seed(0)
        torch.nn.init.normal_(self.conv.weight)

    def forward(self, x):
        return torch.nn.functional.avg_pool2d(self.conv(x.float() / 255), 2)


def batches(n: int = 3, size=(32, 48), seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, *size), generator=gen, dtype=torch.uint8)
    labels = torch.randint(0, 3, (n, *size), generator=gen)
    labels[:, :4] = 255  # void rows: never scored
    return [(images[:2], labels[:2]), (images[2:], labels[2:])]


def test_matrices_are_per_image_at_native_size_and_sum_to_the_split():
    model = Half().eval()
    mats = score_split(model, batches(), 3)["none"]
    assert mats.shape == (3, 3, 3) and mats.dtype == np.int64
    assert mats.sum() == 3 * 28 * 48  # every labelled pixel of every image, void left out
    cm = ConfusionMatrix(3)
    for images, labels in batches():
        logits = to_label_size(model(images), labels.shape[-2:])  # upsampled to the labels, labels untouched
        cm.update(labels, logits.argmax(1))
    assert np.array_equal(mats.sum(0), cm.mat.numpy())


def test_several_modes_share_views_and_agree_with_each_mode_alone():
    model = Half().eval()
    modes = ["none", "flip", "flip+scales:1,1.5"]
    together = score_split(model, batches(), 3, modes)
    for mode in modes:
        alone = score_split(model, batches(), 3, [mode])[mode]
        agree = np.trace(alone.sum(0)) / alone.sum()
        assert abs(np.trace(together[mode].sum(0)) / together[mode].sum() - agree) < 1e-3, mode
    assert not np.array_equal(together["none"], together["flip"])  # the views do change predictions


def test_predictions_at_another_size_than_the_labels_are_refused():
    with pytest.raises(SeglabError, match="native size"):
        confusions(np.zeros((1, 4, 4), np.uint8), np.zeros((1, 8, 8), np.uint8), 3)


def test_banded_upsampling_is_the_same_rule():
    z = torch.randn(3, 9, 13)
    whole = to_label_size(z[None], (40, 51))[0]
    bands = torch.cat([b for _, b in upsample_rows(z, 40, 51, rows=7)], dim=1)
    assert torch.allclose(whole, bands, atol=1e-5)


class Source:
    root, splits = "data/x", {"train": [1], "val": [2]}

    class classes:
        names = ("a", "b")


def test_class_and_split_checks_are_one_line_errors():
    check_classes(Source, ["a", "b"])
    check_split(Source, "val")
    with pytest.raises(SeglabError, match=r"data/x: its classes \['a', 'b'\] differ from the 3 classes"):
        check_classes(Source, ["a", "b", "c"])
    with pytest.raises(SeglabError, match="split='test': data/x has splits train, val"):
        check_split(Source, "test")
