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


def test_compile_auto_compiles_fp32_cpu_training_only_and_the_plan_keeps_the_choice():
    from seglab.training.plan import compiles

    assert compiles("auto", "cpu", "32") and not compiles("auto", "cpu", "bf16-mixed")
    assert not compiles("auto", "cuda", "32")  # unmeasured on GPUs: off
    assert compiles(True, "cuda", "bf16-mixed") and not compiles(False, "cpu", "32")
    cfg = load_config(None, {"train.compile": "auto", "train.precision": "32", "train.accelerator": "cpu"})
    plan = resolve_plan(cfg)
    assert plan.compile is True
    cfg.plan = plan.to_config()
    assert from_dict(cfg.to_dict()).plan.compile is True
    assert plan_for(from_dict(cfg.to_dict())).compile is False  # scoring runs the network as it is
    assert resolve_plan(load_config(None, {"train.compile": "false"})).compile is False


@pytest.mark.slow
def test_compiled_training_matches_eager_and_checkpoints_the_plain_network(tmp_path, tiny_camvid):
    """train.compile: the steps run through torch.compile, validation eagerly; the result is the eager run's
    (to rounding), the checkpoint's keys are the network's own, and run.json keeps the compile step's time."""
    from seglab.config import from_dict
    from seglab.runs import RunDir
    from seglab.training.run import train

    def run(name, compile_):
        train(from_dict({"name": name, "out_dir": str(tmp_path), "data": {"root": str(tiny_camvid),
                         "size": "64x96", "batch_size": 2}, "model": {"spec": "scratch:simplesegnet"},
                         "train": {"steps": 4, "val_points": 2, "threads": 1, "optimizer": "adamw",
                                   "loss": "dice_ce", "compile": compile_}}))
        return RunDir(tmp_path / name)

    from torch._dynamo.utils import counters

    eager = run("eager", False)
    counters.clear()
    compiled = run("compiled", True)
    assert compiled.read_config().plan.compile is True and eager.read_config().plan.compile is False
    assert compiled.read_info()["compile"]["first_step_seconds"] > 0
    assert counters["stats"]["unique_graphs"] == 1  # the training step's; validation ran the eager network
    assert "compile" not in eager.read_info()
    a, b = (torch.load(r.checkpoints / "last.ckpt", weights_only=True)["state_dict"] for r in (eager, compiled))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-3, atol=1e-4)
    rows = [r.read_epochs() for r in (eager, compiled)]
    assert [x["step"] for x in rows[1]] == [x["step"] for x in rows[0]] == [2, 4]
    assert rows[1][-1]["val_loss"] == pytest.approx(rows[0][-1]["val_loss"], rel=1e-3)
