"""Losses and the learning-rate schedule, on tiny hand-made tensors."""

import itertools
import math

import numpy as np
import pytest
import torch

from seglab.constants import IGNORE_INDEX
from seglab.errors import SeglabError
from seglab.training.losses import build_loss, median_frequency_weights
from seglab.training.schedule import lr_factor


@pytest.mark.parametrize("name,lovasz", [("ce", 0), ("dice", 0), ("dice_ce", 0), ("focal", 0), ("dice_ce", 0.5)])
def test_losses_ignore_void(name, lovasz):
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    target = torch.randint(0, 3, (2, 4, 4))
    loss_fn = build_loss(name, lovasz_weight=lovasz)
    base = loss_fn(logits, target)
    # changing logits only where the label is void must not change the loss
    target[:, :2] = IGNORE_INDEX
    changed = logits.detach().clone()
    changed[:, :, :2] += 5.0
    a, b = loss_fn(logits, target), loss_fn(changed, target)
    assert torch.isfinite(base) and a.item() == pytest.approx(b.item(), abs=1e-6)
    a.backward()
    assert logits.grad[:, :, :2].abs().sum() == 0  # no gradient from void pixels


def test_weighted_ce_and_mixing():
    logits = torch.zeros(1, 2, 1, 2)
    target = torch.tensor([[[0, 1]]])
    plain = build_loss("ce")(logits, target)
    assert plain.item() == pytest.approx(math.log(2))
    mix = build_loss("dice_ce", ce_weight=0.0, dice_weight=1.0)(logits, target)
    dice = build_loss("dice")(logits, target)
    assert mix.item() == pytest.approx(dice.item())
    weighted = build_loss("ce", class_weights=[1.0, 3.0])
    assert weighted.weight.tolist() == [1.0, 3.0]
    with pytest.raises(SeglabError, match="class_weights"):
        build_loss("focal", class_weights=[1.0, 1.0])


@pytest.mark.parametrize("absent", [False, True])
def test_dice_and_dice_ce_match_smp_and_torch_in_value_and_gradient(absent):
    """seglab's Dice skips smp's one-hot target for speed; smp's DiceLoss and torch's weighted CE are the
    reference it must equal, in the loss and in its gradient, with void pixels and a class absent."""
    import segmentation_models_pytorch as smp

    torch.manual_seed(1)
    logits = (3 * torch.randn(3, 4, 9, 13)).requires_grad_(True)
    target = torch.randint(0, 4, (3, 9, 13))
    target[torch.rand(target.shape) < 0.3] = IGNORE_INDEX
    if absent:
        target[target == 2] = 0
    weights = [1.0, 2.0, 0.5, 1.5]
    smp_dice = smp.losses.DiceLoss("multiclass", ignore_index=IGNORE_INDEX)
    torch_ce = torch.nn.CrossEntropyLoss(weight=torch.tensor(weights), ignore_index=IGNORE_INDEX)
    cases = [(build_loss("dice"), lambda x: smp_dice(x, target)),
             (build_loss("dice_ce", weights, ce_weight=0.7, dice_weight=1.3),
              lambda x: 0.7 * torch_ce(x, target) + 1.3 * smp_dice(x, target))]
    for ours, reference in cases:
        mine, ref = ours(logits, target), reference(logits)
        (g_mine,), (g_ref,) = torch.autograd.grad(mine, logits), torch.autograd.grad(ref, logits)
        assert mine.item() == pytest.approx(ref.item(), rel=1e-5)
        assert g_ref.abs().max() > 0 and torch.allclose(g_mine, g_ref, rtol=1e-4, atol=1e-9)


def test_lovasz_term_adds_to_the_loss_and_vanishes_on_a_perfect_prediction():
    torch.manual_seed(0)
    target = torch.randint(0, 3, (2, 8, 8))
    logits = torch.randn(2, 3, 8, 8)
    ce, both = build_loss("ce")(logits, target), build_loss("ce", lovasz_weight=2.0)(logits, target)
    assert both.item() > ce.item()  # a random prediction has IoUs well under 1, so the term is positive
    perfect = 50.0 * torch.nn.functional.one_hot(target, 3).permute(0, 3, 1, 2).float()
    assert build_loss("ce", lovasz_weight=2.0)(perfect, target).item() == pytest.approx(0.0, abs=1e-4)


def test_median_frequency_matches_segnet_definition():
    # image 1: class0 3 px, class1 1 px; image 2: class0 2 px, class2 2 px (one void)
    masks = [np.array([0, 0, 0, 1]), np.array([0, 0, 2, 2, IGNORE_INDEX])]
    w = median_frequency_weights(masks, 4)
    freq = [5 / 8, 1 / 4, 2 / 4]  # pixels of c / pixels of images that contain c
    med = np.median(freq)
    assert w == pytest.approx([med / freq[0], med / freq[1], med / freq[2], 0.0])


def test_schedules_span_the_run_once():
    assert lr_factor("none", 0.7) == 1.0
    assert lr_factor("cosine", 0.0) == pytest.approx(1.0)
    assert lr_factor("cosine", 0.5) == pytest.approx(0.5)
    assert lr_factor("cosine", 1.0) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor("poly", 1.0) == pytest.approx(0.0)
    # warm-up rises linearly, then the cosine starts at 1 and ends at 0
    assert lr_factor("cosine", 0.05, warmup=0.1) < lr_factor("cosine", 0.09, warmup=0.1) < 1.0
    assert lr_factor("cosine", 0.1, warmup=0.1) == pytest.approx(1.0)
    assert lr_factor("cosine", 1.0, warmup=0.1) == pytest.approx(0.0, abs=1e-12)
    values = [lr_factor("cosine", p / 100) for p in range(101)]
    assert all(a >= b for a, b in itertools.pairwise(values))  # monotone: one half-period, not restarted


def test_budget_stops_at_batch_and_at_epoch_end():
    from types import SimpleNamespace

    from seglab.training.schedule import ScheduleCallback

    cb = ScheduleCallback("cosine", budget_s=10.0)
    trainer = SimpleNamespace(should_stop=False)
    cb.elapsed_before = 9.0  # resumed run: 9 of its 10 seconds already spent
    cb.on_train_epoch_end(trainer, None)
    assert not trainer.should_stop
    assert cb.progress(trainer) == pytest.approx(0.9, abs=0.01)
    cb.elapsed_before = 10.5
    cb.on_train_epoch_end(trainer, None)
    assert trainer.should_stop
    assert cb.state_dict()["elapsed"] >= 10.5  # saved in checkpoints, so a resumed run keeps its budget
