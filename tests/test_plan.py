"""The run plan: resolved once from config and machine, saved with the run, read back where the machine allows."""

from __future__ import annotations

import pytest
import torch

from seglab.config import from_dict, load_config
from seglab.device import cpu_has_fast_bf16, resolve_device, resolve_precision
from seglab.errors import SeglabError
from seglab.training.plan import plan_for, resolve_plan


def test_a_plan_resolves_this_machine_and_round_trips_through_config_yaml():
    cfg = load_config(None, {"train.steps": 100, "train.threads": 1})
    plan = resolve_plan(cfg, train_images=367)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert plan.accelerator == expected and plan.processes >= 1
    assert plan.precision == resolve_precision("auto", expected)
    assert plan.val_every == 10  # 100 steps, about ten validations
    cfg.plan = plan.to_config({"steps": 100})
    back = from_dict(cfg.to_dict())
    assert back.plan == cfg.plan and back.plan.calibration == {"steps": 100}
    assert load_config().plan.accelerator is None  # a new config has no plan until a run resolves one


def test_scoring_reads_the_saved_plan_and_re_resolves_what_this_machine_lacks():
    cfg = load_config(None, {"train.precision": "auto"})
    cfg.plan.accelerator, cfg.plan.precision = "cpu", "32"
    assert plan_for(cfg).precision == "32"  # the run's own arithmetic, whatever auto would pick here
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the fallback below is not reachable")
    cfg.plan.accelerator, cfg.plan.precision = "cuda", "16-mixed"
    plan = plan_for(cfg)  # trained on a GPU, scored here on the CPU, in the precision auto picks for it
    assert plan.accelerator == "cpu" and plan.precision == ("bf16-mixed" if cpu_has_fast_bf16() else "32")


@pytest.mark.parametrize("name,match", [("cuda:7", "CUDA"), ("tpu", "use auto, cpu, cuda, cuda:N, mps")])
def test_one_device_vocabulary(name, match):
    if torch.cuda.device_count() > 7:
        pytest.skip("this machine has a card 7")
    with pytest.raises(SeglabError, match=match):
        resolve_device(name)
    assert resolve_device("cpu").type == "cpu" and resolve_device("auto").type in ("cpu", "cuda")


def test_a_device_the_machine_lacks_is_named_by_its_config_key():
    if torch.cuda.device_count() > 7:
        pytest.skip("this machine has a card 7")
    with pytest.raises(SeglabError, match="train.accelerator=cuda:7: this machine has"):
        resolve_plan(load_config(None, {"train.accelerator": "cuda:7"}))


def test_one_precision_rule():
    assert resolve_precision("bf16-mixed", "cpu", amp=False) == "32"
    assert resolve_precision("16-mixed", "cpu") == "bf16-mixed"  # CPUs autocast in bf16 only
    assert resolve_precision("32", "cpu", amp=True) == "bf16-mixed"
    assert resolve_precision("32", "cpu") == "32"
