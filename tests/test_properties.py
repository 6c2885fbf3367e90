"""Property-based tests: what must hold for every input, not just the examples someone thought of.

Metrics: IoU stays in [0, 1], renaming classes permutes per-class scores and leaves the means alone, and the
numbers agree with torchmetrics on classes it defines. Geometry: padding, cropping, tiling and test-time
augmentation always give back a prediction of exactly the input's size.
"""

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torchmetrics.classification import MulticlassJaccardIndex

from seglab.constants import IGNORE_INDEX
from seglab.data.classes import ClassSet, default_colors
from seglab.data.transforms import EvalPreset, TrainPreset
from seglab.inference.predictor import Predictor, TorchBackend
from seglab.metrics import ConfusionMatrix
from seglab.models.tta import TTA_SCALES, tta_logits

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def label_pairs(draw):
    """(target, pred, num_classes): small label maps with some void pixels in the target."""
    n = draw(st.integers(1, 8))
    b, h, w = draw(st.integers(1, 3)), draw(st.integers(1, 12)), draw(st.integers(1, 12))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, n, (b, h, w), generator=g)
    target[torch.rand(b, h, w, generator=g) < draw(st.floats(0, 0.5))] = IGNORE_INDEX
    pred = torch.randint(0, n, (b, h, w), generator=g)
    return target, pred, n


def scored(target, pred, n) -> tuple[ConfusionMatrix, dict]:
    cm = ConfusionMatrix(n)
    cm.update(target, pred)
    return cm, cm.compute()


@FAST
@given(label_pairs())
def test_iou_dice_and_accuracy_stay_between_zero_and_one(pair):
    target, pred, n = pair
    cm, m = scored(target, pred, n)
    for key in ("per_class_iou", "per_class_dice", "per_class_accuracy"):
        assert all(v is None or 0 <= v <= 1 for v in m[key]), key
    for key in ("miou", "mean_dice", "pixel_accuracy", "fw_iou"):
        assert m[key] is None or 0 <= m[key] <= 1 + 1e-12, key
    assert int(cm.mat.sum()) == int((target != IGNORE_INDEX).sum())  # every scored pixel counted once
    if m["miou"] is not None:
        assert m["miou"] <= m["mean_dice"] + 1e-12  # IoU <= Dice for every class


@FAST
@given(label_pairs(), st.randoms(use_true_random=False))
def test_renaming_classes_permutes_scores_and_keeps_the_means(pair, rnd):
    target, pred, n = pair
    perm = list(range(n))
    rnd.shuffle(perm)
    lut = torch.tensor(perm + [0] * (256 - n))
    lut[IGNORE_INDEX] = IGNORE_INDEX
    ma, mb = scored(target, pred, n)[1], scored(lut[target], lut[pred], n)[1]
    for key in ("miou", "mean_dice", "pixel_accuracy", "mean_class_accuracy"):
        assert (ma[key] is None) == (mb[key] is None)
        if ma[key] is not None:
            assert abs(ma[key] - mb[key]) < 1e-9, key
    for c in range(n):
        assert ma["per_class_iou"][c] == mb["per_class_iou"][perm[c]]


@FAST
@given(label_pairs())
def test_per_class_iou_agrees_with_torchmetrics_where_defined(pair):
    target, pred, n = pair
    if n == 1:
        return  # torchmetrics needs two classes
    ours = scored(target, pred, n)[1]["per_class_iou"]
    reference = MulticlassJaccardIndex(num_classes=n, ignore_index=IGNORE_INDEX, average="none")
    reference.update(pred, target)
    theirs = reference.compute().tolist()
    for c in range(n):
        if ours[c] is not None:  # torchmetrics scores a class absent from both as 0; seglab leaves it out
            assert abs(ours[c] - theirs[c]) < 1e-6


class PixelNet(torch.nn.Module):
    num_classes = 3

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        assert x.shape[-2] % 32 == 0 and x.shape[-1] % 32 == 0, x.shape  # what every encoder needs
        return self.conv(x.float() / 255)


sizes = st.tuples(st.integers(1, 150), st.integers(1, 150))


@settings(max_examples=25, deadline=None)
@given(size=sizes, tile=st.sampled_from([32, 64, 96]), overlap=st.sampled_from([0, 32]),
       input_size=st.sampled_from([None, (32, 64), (64, 32)]), tta=st.sampled_from(list(TTA_SCALES)),
       channels=st.sampled_from([1, 3, 4]))
def test_prediction_always_has_the_input_size(size, tile, overlap, input_size, tta, channels):
    if overlap >= tile:
        overlap = 0
    classes = ClassSet(("a", "b", "c"), tuple(default_colors(3)))
    predictor = Predictor(TorchBackend(PixelNet(), "cpu", amp=False), classes, tile=tile, overlap=overlap,
                          batch_size=2, input_size=input_size, tta=tta)
    image = np.random.default_rng(0).integers(0, 256, (*size, channels) if channels > 1 else size, np.uint8)
    mask = predictor.predict(image)
    assert mask.shape == size and mask.dtype == np.uint8 and mask.max() < 3
    proba = predictor.predict_proba(image)
    assert proba.shape == (3, *size) and np.allclose(proba.sum(0), 1, atol=1e-4)


@settings(max_examples=30, deadline=None)
@given(size=sizes, tta=st.sampled_from(list(TTA_SCALES)))
def test_tta_output_matches_its_input(size, tta):
    h, w = -(-size[0] // 32) * 32, -(-size[1] // 32) * 32
    images = torch.randint(0, 256, (1, 3, h, w), dtype=torch.uint8)
    assert tta_logits(PixelNet(), images, tta).shape == (1, 3, h, w)


@settings(max_examples=30, deadline=None)
@given(size=sizes, crop=st.tuples(st.sampled_from([32, 64, 96]), st.sampled_from([32, 64, 96])),
       scale_crop=st.booleans(), seed=st.integers(0, 1000))
def test_train_crops_and_eval_padding_have_the_promised_sizes(size, crop, scale_crop, seed):
    image = np.random.default_rng(seed).integers(0, 256, (*size, 3), np.uint8)
    mask = np.random.default_rng(seed).integers(0, 3, size, np.uint8)
    img, msk = TrainPreset(crop, scale_crop=scale_crop, hflip=True, color_jitter=False, seed=seed)(image, mask)
    assert img.shape[:2] == crop and msk.shape == crop
    img, msk = EvalPreset(None)(image, mask)  # padded to multiples of 32, label padding never scored
    assert img.shape[0] % 32 == 0 and img.shape[1] % 32 == 0 and msk.shape == img.shape[:2]
    assert (msk[: size[0], : size[1]] == mask).all() and (msk[size[0]:] == IGNORE_INDEX).all() \
        and (msk[:, size[1]:] == IGNORE_INDEX).all()
