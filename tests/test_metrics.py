"""The confusion matrix is the source of every reported number: check it against torchmetrics and by hand."""

import math

import pytest
import torch
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score, MulticlassJaccardIndex

from seglab.constants import IGNORE_INDEX
from seglab.metrics import ConfusionMatrix


def random_batches(num_classes, n=4, seed=0, void_share=0.1):
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        target = torch.randint(0, num_classes, (2, 24, 32), generator=g)
        target[torch.rand(target.shape, generator=g) < void_share] = IGNORE_INDEX
        # predictions correlated with the target, so scores are far from 0 and from 1
        pred = torch.where(torch.rand(target.shape, generator=g) < 0.6, target.clamp(max=num_classes - 1),
                           torch.randint(0, num_classes, target.shape, generator=g))
        yield target, pred


@pytest.mark.parametrize("num_classes,seed", [(2, 0), (6, 1), (11, 2), (32, 3)])
def test_agrees_with_torchmetrics(num_classes, seed):
    kw = {"num_classes": num_classes, "ignore_index": IGNORE_INDEX, "average": "macro"}
    tm = {"miou": MulticlassJaccardIndex(**kw), "mean_class_accuracy": MulticlassAccuracy(**kw),
          "mean_dice": MulticlassF1Score(**kw),
          "pixel_accuracy": MulticlassAccuracy(num_classes=num_classes, ignore_index=IGNORE_INDEX, average="micro")}
    cm = ConfusionMatrix(num_classes)
    for target, pred in random_batches(num_classes, seed=seed):
        cm.update(target, pred)
        for metric in tm.values():
            metric.update(pred, target)
    ours = cm.compute()
    for key, metric in tm.items():
        assert ours[key] == pytest.approx(float(metric.compute()), abs=1e-6), key
    per_class = MulticlassJaccardIndex(num_classes=num_classes, ignore_index=IGNORE_INDEX, average="none")
    for target, pred in random_batches(num_classes, seed=seed):
        per_class.update(pred, target)
    assert ours["per_class_iou"] == pytest.approx(per_class.compute().tolist(), abs=1e-6)


def test_accumulates_over_split_not_per_batch():
    """Batch-averaged IoU (the notebooks' way) differs from split IoU; we must give the split IoU."""
    cm = ConfusionMatrix(2)
    cm.update(torch.tensor([[0, 0, 0, 1]]), torch.tensor([[0, 0, 0, 0]]))  # class 1 IoU 0
    cm.update(torch.tensor([[1]]), torch.tensor([[1]]))  # class 1 IoU 1 in this batch
    m = cm.compute()
    # class 0: tp 3, fp 1, fn 0 -> 3/4; class 1: tp 1, fn 1 -> 1/2
    assert m["per_class_iou"] == pytest.approx([0.75, 0.5])
    assert m["miou"] == pytest.approx(0.625)
    assert m["pixel_accuracy"] == pytest.approx(4 / 5)


def test_hand_computed_three_classes():
    target = torch.tensor([[0, 0, 1], [1, 2, IGNORE_INDEX]])
    pred = torch.tensor([[0, 1, 1], [1, 0, 2]])
    cm = ConfusionMatrix(3, ["a", "b", "c"])
    cm.update(target, pred)
    m = cm.compute()
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]  # rows true, cols predicted; void dropped
    assert m["per_class_iou"] == pytest.approx([1 / 3, 2 / 3, 0.0])
    assert m["per_class_dice"] == pytest.approx([2 * 1 / 4, 2 * 2 / 5, 0.0])
    assert m["pixel_accuracy"] == pytest.approx(3 / 5)
    assert m["mean_class_accuracy"] == pytest.approx((1 / 2 + 1 + 0) / 3)
    freq = [2 / 5, 2 / 5, 1 / 5]
    assert m["fw_iou"] == pytest.approx(sum(f * i for f, i in zip(freq, [1 / 3, 2 / 3, 0.0])))
    assert m["class_names"] == ["a", "b", "c"]


def test_absent_class_is_null_and_left_out_of_means():
    cm = ConfusionMatrix(3)
    cm.update(torch.tensor([0, 0, 1]), torch.tensor([0, 0, 1]))  # class 2 neither labelled nor predicted
    m = cm.compute()
    assert m["per_class_iou"][2] is None and m["per_class_dice"][2] is None
    assert m["miou"] == 1.0 and m["mean_dice"] == 1.0  # not 2/3: absent classes are not scored


def test_class_predicted_but_absent_counts_as_zero():
    cm = ConfusionMatrix(3)
    cm.update(torch.tensor([0, 0, 1]), torch.tensor([0, 2, 1]))
    m = cm.compute()
    assert m["per_class_iou"][2] == 0.0
    assert m["miou"] == pytest.approx((0.5 + 1 + 0) / 3)


def test_all_void_image_scores_nothing():
    cm = ConfusionMatrix(4)
    cm.update(torch.full((8, 8), IGNORE_INDEX), torch.zeros(8, 8, dtype=torch.long))
    m = cm.compute()
    assert m["miou"] is None and m["pixel_accuracy"] is None and m["fw_iou"] is None
    assert all(v is None for v in m["per_class_iou"])
    assert sum(map(sum, m["confusion_matrix"])) == 0


def test_perfect_prediction():
    target = torch.randint(0, 5, (3, 16, 16))
    cm = ConfusionMatrix(5)
    cm.update(target, target)
    m = cm.compute()
    for key in ("miou", "pixel_accuracy", "mean_dice", "mean_class_accuracy", "fw_iou"):
        assert m[key] == pytest.approx(1.0), key
    assert not any(math.isnan(v) for v in m["per_class_iou"])


def test_reset_and_merge():
    cm, other = ConfusionMatrix(2), ConfusionMatrix(2)
    cm.update(torch.tensor([0, 1]), torch.tensor([0, 1]))
    other.update(torch.tensor([1]), torch.tensor([0]))
    cm.merge(other.mat)
    assert cm.mat.tolist() == [[1, 0], [1, 1]]
    cm.reset()
    assert cm.mat.sum() == 0
