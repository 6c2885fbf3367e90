"""The Python API (seglab.train / evaluate / study / load): the CLI's keys with the CLI's checks and error
lines, DataFrames and Jupyter views of runs and studies, and an interrupted cell's run resumed."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest
import yaml
from fakes import make_camvid, run_cli

import seglab
from seglab.config import ConfigError
from seglab.errors import BadValue, Interrupted, SeglabError

TINY = {"model": "scratch:simplesegnet", "size": "64x96", "batch": 2, "epochs": 1}


def cli_error(capsys, *args) -> str:
    """The one 'error: ...' line `seglab train ARGS` prints, without its prefix."""
    r = run_cli(capsys, "train", *args)
    assert r.code == 2, r.err
    lines = [ln for ln in r.err.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in r.err, r.err
    return lines[0].removeprefix("error: ")


@pytest.mark.parametrize(("api", "cli"), [
    ({"set": {"train.lrr": 1e-3}}, ["--set", "train.lrr=1e-3"]),
    ({"epochs": "three"}, ["--set", "train.epochs=three"]),
    ({"train": {"epochs": "three"}}, ["--set", "train.epochs=three"]),
    ({"loss": "hinge"}, ["--set", "train.loss=hinge"]),
    ({"size": "100x100"}, ["--set", "data.size=100x100"]),
    ({"data": {"sizee": "64x96"}}, ["--set", "data.sizee=64x96"]),
    ({"set": ["train.lr"]}, ["--set", "train.lr"]),
    ({"set": ["train.lr=nan"]}, ["--set", "train.lr=nan"]),
    ({"**": {"train.optimizer": "sgdd"}}, ["--set", "train.optimizer=sgdd"]),
    ({"preset": "camvid-cpu-60m", "config": "x.yaml"}, ["--preset", "camvid-cpu-60m", "--config", "x.yaml"]),
])
def test_bad_keys_raise_the_line_the_cli_prints(capsys, api, cli):
    keys = {**api.pop("**", {}), **api}
    with pytest.raises(SeglabError) as caught:
        seglab.train(**keys)
    assert str(caught.value) == cli_error(capsys, *cli)
    assert "\n" not in str(caught.value)


def test_a_bad_argument_names_the_keyword_where_the_cli_names_its_option(capsys):
    with pytest.raises(BadValue) as caught:
        seglab.train(preset="no-such-preset")
    assert str(caught.value) == f"preset='no-such-preset': {caught.value.problem}"
    assert cli_error(capsys, "--preset", "no-such-preset") == \
        f"Invalid value for '--preset': no-such-preset: {caught.value.problem}"


def test_a_bad_value_is_a_config_error_naming_its_key():
    with pytest.raises(ConfigError) as caught:
        seglab.train(lr="fast")
    assert caught.value.key == "train.lr"
    assert str(caught.value).startswith("config key 'train.lr': bad value 'fast'")


def test_an_unknown_keyword_names_the_option_it_resembles():
    with pytest.raises(SeglabError, match=r"unknown keyword 'epoch' \(did you mean 'epochs'\?\)"):
        seglab.train(epoch=1)


def test_resume_takes_no_other_keys(tmp_path):
    with pytest.raises(SeglabError, match="leave out epochs"):
        seglab.train(resume=tmp_path, epochs=2)


def test_keywords_build_the_config_the_cli_builds(tmp_path):
    """Options by name, sections, set= and a dotted keyword make the config `seglab train` makes of the
    same options and --set."""
    from seglab.api.calls import config_keys
    from seglab.experiment import build_config

    options, overrides = config_keys(data=str(tmp_path), model="unet:resnet18", epochs=2, batch=4,
                                     train={"lr": 0.01, "seed": 3}, set={"train.weight_decay": 1e-4},
                                     **{"data.size": "64x96"})
    cfg = build_config(None, None, options, overrides)
    reference = build_config(None, None, {"data.root": str(tmp_path), "model.spec": "unet:resnet18",
                                          "train.epochs": "2", "data.batch_size": "4"},
                             dict(map(__import__("seglab.config", fromlist=["x"]).parse_override,
                                      ["train.lr=0.01", "train.seed=3", "train.weight_decay=1e-4",
                                       "data.size=64x96"])))
    assert cfg == reference
    assert (cfg.data.size, cfg.train.lr, cfg.train.epochs, cfg.data.batch_size) == ((64, 96), 0.01, 2, 4)


def test_set_overrides_the_options_as_on_the_command_line():
    from seglab.api.calls import config_keys
    from seglab.experiment import build_config

    cfg = build_config(None, None, *config_keys(epochs=2, set=["train.epochs=5"]))
    assert cfg.train.epochs == 5


def test_the_front_door_stays_light_and_its_module_names_stay_callable():
    import subprocess
    import sys

    code = ("import sys, seglab; seglab.train; seglab.Run; seglab.Study\n"
            "print('torch' in sys.modules, 'pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
    import seglab.evaluate
    import seglab.study.runner  # importing the modules keeps them callable

    assert callable(seglab.evaluate) and callable(seglab.study)
    assert seglab.evaluate.evaluate.__module__ == "seglab.evaluate"  # still the module


def test_progress_is_a_bar_in_a_jupyter_kernel(monkeypatch):
    import sys
    import types

    from seglab.training import progress

    assert progress.plain_output()  # pytest's captured stdout is no terminal
    kernel_shell = types.SimpleNamespace(kernel=object())
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: kernel_shell))
    assert progress.in_notebook() and not progress.plain_output()
    assert isinstance(progress.progress_callback(), progress.RunProgressBar)


def test_errors_show_as_one_line_in_ipython(capsys):
    pytest.importorskip("IPython")
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        result = shell.run_cell("import seglab\nseglab.train(set={'train.lrr': 1})")
        assert isinstance(result.error_in_exec, SeglabError)
        out = capsys.readouterr()
        text = re.sub(r"\x1b\[[0-9;]*m", "", out.out + out.err).strip()
        assert [ln for ln in text.splitlines() if ln] == [  # IPython's exception-only view, no traceback
            "An exception has occurred, use %tb to see the full traceback.",
            "SeglabError: unknown config key 'train.lrr' (did you mean 'train.lr'?)"]
    finally:
        shell.set_custom_exc((), None)
        InteractiveShell.clear_instance()


# --- a real tiny run ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    data = make_camvid(root / "camvid", n_per_split=4)
    run = seglab.train(data=str(data), out=str(root / "runs"), name="tiny", **TINY)
    return run, data


def test_train_returns_the_finished_run(trained):
    run, _ = trained
    assert isinstance(run, seglab.Run) and run.status == "finished" and run.name == "tiny"
    assert run.config.model.spec == "scratch:simplesegnet" and run.config.data.size == (64, 96)
    with pytest.raises(SeglabError, match="run already exists"):  # as `seglab train` refuses it
        seglab.train(data=str(trained[1]), out=str(run.path.parent), name="tiny", **TINY)


def test_run_tables_are_dataframes(trained):
    run, _ = trained
    m = run.metrics
    assert list(m.index) == ["test"]
    headline = ["miou", "pixel_accuracy", "mean_dice", "boundary_iou", "ece", "ece_calibrated", "loss"]
    assert list(m.columns) == [c for k in headline for c in (k, f"{k}_low", f"{k}_high")] + [
        "temperature", "mean_class_accuracy", "fw_iou", "num_images"]
    for k in headline:  # every headline figure with its interval, as metrics.json holds it
        assert m.loc["test", f"{k}_low"] <= m.loc["test", k] <= m.loc["test", f"{k}_high"], k
    assert m.loc["test", "num_images"] == 4
    assert m.loc["test", "miou"] == pytest.approx(run.scores("test")["miou"])
    pc = run.per_class
    assert pc.shape == (11, 4) and list(pc.columns) == ["iou", "dice", "accuracy", "boundary_iou"]
    assert pc.index[0] == "sky"
    curves = run.curves
    assert {"step", "epoch", "train_loss", "val_miou", "lr"} <= set(curves.columns) and len(curves) >= 1
    assert curves["step"].is_monotonic_increasing


def test_run_html_shows_the_tables_and_figures(trained):
    run, _ = trained
    page = run._repr_html_()
    miou = run.metrics.loc["test", "miou"]
    assert f"{100 * miou:.1f}" in page
    assert "Per-class test scores" in page and "pedestrian" in page
    assert page.count("<img") == 2 and "data:image/png;base64," in page


def test_evaluate_returns_metrics_and_adds_the_split_to_the_run(trained):
    run, _ = trained
    val = seglab.evaluate(run, split="val")
    assert isinstance(val, seglab.Metrics) and isinstance(val, dict) and val["split"] == "val"
    assert list(val.summary.index) == ["val"] and val.per_class.shape == (11, 4)
    assert val.summary.loc["val", "miou_low"] <= val["miou"] <= val.summary.loc["val", "miou_high"]
    assert val.confusion.shape == (11, 11) and val.confusion.to_numpy().sum() > 0
    assert "val" in run.metrics.index
    assert f"{100 * val['miou']:.1f}" in val._repr_html_()
    with pytest.raises(BadValue, match="eval_size='100x100'"):
        seglab.evaluate(run, eval_size="100x100")


def test_load_takes_a_run(trained):
    import numpy as np

    run, _ = trained
    mask = seglab.load(run).predict(np.zeros((64, 96, 3), np.uint8))
    assert mask.shape == (64, 96)


def test_check_data_reports_what_the_command_prints(trained, capsys):
    _, data = trained
    report = seglab.check_data(data)
    assert report.problems == [] and report.shares.shape == (12, 3)
    r = run_cli(capsys, "data", "check", data)
    assert r.out.strip() == str(report).strip()


# --- interrupt and resume -----------------------------------------------------------------------------------


def test_an_interrupted_cell_leaves_a_run_that_resume_continues(tmp_path, monkeypatch):
    import lightning as L

    from seglab.training import run as training_run

    data = make_camvid(tmp_path / "camvid", n_per_split=4)
    starts: list[int] = []

    class StopAt(L.Callback):
        def on_train_start(self, trainer, pl_module):
            starts.append(trainer.global_step)

        def on_train_batch_end(self, trainer, *args):
            if len(starts) == 1 and trainer.global_step == 5:  # the first session only: a cell interrupted
                raise KeyboardInterrupt

    make = training_run.make_trainer
    monkeypatch.setattr(training_run, "make_trainer",
                        lambda plan, **kw: make(plan, **{**kw, "callbacks": [*kw["callbacks"], StopAt()]}))
    handler = signal.getsignal(signal.SIGINT)
    keys = {**TINY, "batch": 1, "steps": 8, "set": {"train.val_points": 4}}
    with pytest.raises(Interrupted) as caught:
        seglab.train(data=str(data), out=str(tmp_path / "runs"), name="cut", **keys)
    path = tmp_path / "runs" / "cut"
    assert str(caught.value) == f"interrupted; the run folder is kept: continue it with seglab.train(resume={str(path)!r})"
    assert signal.getsignal(signal.SIGINT) == handler  # the next cell can be interrupted again
    cut = seglab.Run(path)
    assert cut.status == "interrupted" and cut.metrics.empty
    assert list(cut.curves["step"]) == [2, 4]  # a validation every 2 steps
    from seglab.runs import load_checkpoint

    saved = load_checkpoint(cut.path / "checkpoints" / "last.ckpt")["global_step"]
    assert 0 < saved < 5

    run = seglab.train(resume=cut)
    assert starts == [0, saved]  # the second session went on from the first one's last checkpoint
    assert run.status == "finished" and run.info["steps"] == 8
    assert list(run.curves["step"]) == [2, 4, 6, 8]
    assert not run.metrics.empty


# --- a study ------------------------------------------------------------------------------------------------


def test_study_errors_are_the_commands(capsys, tmp_path):
    with pytest.raises(BadValue) as caught:
        seglab.study("quick", executor="nowhere", out=tmp_path)
    assert str(caught.value) == "executor='nowhere': choose one of here, local, slurm"
    r = run_cli(capsys, "study", "quick", "--executor", "nowhere", "--out", tmp_path)
    assert r.code == 2 and "'--executor': nowhere: choose one of here, local, slurm" in r.err
    with pytest.raises(SeglabError) as caught:
        seglab.study("no-such-study", out=tmp_path)
    assert f"error: {caught.value}" in run_cli(capsys, "study", "no-such-study", "--out", tmp_path).err


def test_study_returns_its_table_runs_and_report(tmp_path):
    data = make_camvid(tmp_path / "camvid", n_per_split=4)
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "s", "defaults": {"data": {"size": "64x96", "batch_size": 2},
                                  "model": {"spec": "scratch:simplesegnet"}, "train": {"steps": 2}},
        "runs": [{"name": "a", "group": "g", "baseline": True},
                 {"name": "b", "group": "g", "train": {"optimizer": "adamw", "scheduler": "cosine"}}]}))
    study = seglab.study(str(spec), data=str(data), out=tmp_path / "studies")
    assert isinstance(study, seglab.Study) and study.name == "s" and study.failed == []
    table = study.table
    assert list(table.index) == ["a", "b"] and bool(table.loc["a", "baseline"])
    assert {"test_miou", "val_miou", "delta", "delta_low", "p_holm", "steps"} <= set(table.columns)
    assert table.loc["a", "steps"] == 2 and table.loc["b", "delta"] == pytest.approx(
        table.loc["b", "test_miou"] - table.loc["a", "test_miou"])
    assert set(study.runs) == {"a", "b"} and study.runs["a"].status == "finished"
    assert study.per_class.shape == (11, 2)
    assert study.report_path == tmp_path / "studies" / "s" / "report.html" and study.report_path.is_file()
    page = study._repr_html_()
    assert "<h2" in page and "Comparison" in page and "data:image/png;base64," in page
    assert f"{100 * table.loc['a', 'test_miou']:.1f}" in page
    assert Path(study.report()).is_file()
