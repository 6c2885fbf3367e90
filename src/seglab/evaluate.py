"""Score a trained model on a split with the one confusion matrix, and write ``metrics.json``.

    seglab evaluate runs/<run> --split test
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from seglab.config import ConfigError, validate
from seglab.data.datamodule import SegDataModule
from seglab.data.open import open_data
from seglab.errors import BadValue
from seglab.metrics import ConfusionMatrix
from seglab.naming import safe_name
from seglab.runs import read_trained, write_json
from seglab.scoring import check_classes, check_split, score_split
from seglab.training.module import SegModule
from seglab.training.plan import check_names, plan_for

log = logging.getLogger("seglab")


def open_scoring_data(trained, data_root: str | None = None):
    """The dataset the model is scored on (``data_root``, else the one it trained on), refused in one line
    when its classes are not the model's."""
    if data_root:
        trained.config.data.root = data_root
    source = open_data(trained.config.data)
    check_classes(source, trained.classes.names)
    return source


def evaluate(target: str | Path, split: str = "test", data_root: str | None = None, batch_size: int | None = None,
             eval_size: tuple[int, int] | str | None = None, tta: str | None = None,
             datamodule: SegDataModule | None = None, quiet: bool = False) -> dict:
    """Metrics of the run's final checkpoint (or the given checkpoint) on ``split``, written to the run folder."""
    trained = read_trained(target)
    ckpt, run, cfg = trained.checkpoint, trained.run, trained.config
    # Scoring other settings than the run's own is a variant: it goes to its own file, never over the run's.
    variant = ""
    if eval_size and eval_size != cfg.data.eval_size:
        cfg.data.eval_size = eval_size
        variant += "~" + ("x".join(map(str, eval_size)) if isinstance(eval_size, tuple) else str(eval_size))
    if tta and tta != cfg.data.tta:
        cfg.data.tta = tta
        variant += "~tta-" + safe_name(tta, colon="=", keep=",")  # flip+scales:1,1.5 -> flip+scales=1,1.5
    try:
        validate(cfg)  # the settings given here go through the config's own checks
        check_names(cfg)
    except ConfigError as e:
        param = {"data.tta": "tta", "data.eval_size": "eval_size"}.get(e.key)
        if param is None:
            raise
        raise BadValue(param, tta if param == "tta" else eval_size, e.problem) from None
    dm = datamodule
    if dm is None:
        dm = SegDataModule(open_scoring_data(trained, data_root), cfg.data, eval_batch_size=batch_size)
    check_split(dm.source, split)
    dm.test_split = split
    dm.trainer = None  # scored whole by this process, even when the data module served a distributed fit
    dm.setup("test")

    plan = plan_for(cfg)
    if plan.fixed_threads:
        torch.set_num_threads(plan.fixed_threads)
    device = torch.device(plan.device)
    module = SegModule.from_trained(trained).to(device)
    t0 = time.monotonic()
    batches = dm.test_dataloader()
    per_image = score_split(module, batches if quiet else _progress(batches, split), len(trained.classes.names),
                            [cfg.data.tta], device, plan.autocast_dtype)[cfg.data.tta]
    cm = ConfusionMatrix(len(trained.classes.names), list(trained.classes.names))
    cm.mat = torch.from_numpy(per_image.sum(0))  # (C, C) zeros for a split of no image
    metrics = cm.compute()
    images = [s.image.name for s in dm.source.split(split)]
    fingerprint = dm.source.fingerprint()
    trained_on = run.read_info().get("data_fingerprint") if run else None
    other = trained_on is not None and trained_on != fingerprint
    size = cfg.data.eval_input_size()
    metrics.update(split=split, num_images=len(per_image), checkpoint=str(ckpt), model=cfg.model.spec,
                   eval_size=list(size) if size else "native", tta=cfg.data.tta,
                   data={"root": str(dm.source.root), "fingerprint": fingerprint, "trained_on": trained_on},
                   seconds=round(time.monotonic() - t0, 2))
    # Scores on other data than the run trained on go to their own files: the run's results stay as they are.
    tag = (f"@{safe_name(dm.source.root.name)}-{fingerprint[:8]}" if other else "") + variant
    if run is None:  # a checkpoint outside a run folder: metrics beside it
        out = ckpt.with_name("metrics.json" if split == "test" else f"metrics_{split}.json")
        write_json(out, metrics)
    else:
        out = run.write_metrics(metrics, split, tag)
        if len(images) == len(per_image):
            run.write_per_image(per_image, images, split, tag)
    if other:
        log.warning("%s: evaluating on other data than the run trained on (%s, fingerprint %s, trained on %s); "
                    "wrote %s", target, dm.source.root, fingerprint, trained_on, out.name)
    if not quiet:
        print_metrics(metrics)
        Console().print(f"wrote {out}")
    return metrics


def _progress(batches, split: str):
    """The batches, with a progress bar on a terminal (plain output in a log says nothing per batch)."""
    from rich.progress import track

    console = Console(stderr=True)
    return track(batches, description=f"scoring {split}", transient=True, console=console) \
        if console.is_terminal else batches


def _fmt(v) -> str:
    return "—" if v is None else f"{100 * v:.2f}"


def print_metrics(m: dict) -> None:
    """Per-class IoU and Dice, then the summary numbers, as a table."""
    table = Table(title=f"{m['model']} on {m['split']} ({m['num_images']} images)")
    table.add_column("class")
    table.add_column("IoU %", justify="right")
    table.add_column("Dice %", justify="right")
    for name, iou, dice in zip(m["class_names"], m["per_class_iou"], m["per_class_dice"]):
        table.add_row(name, _fmt(iou), _fmt(dice))
    table.add_section()
    table.add_row("mean", _fmt(m["miou"]), _fmt(m["mean_dice"]), style="bold")
    console = Console()
    console.print(table)
    console.print(f"pixel accuracy {_fmt(m['pixel_accuracy'])}%  mean class accuracy "
                  f"{_fmt(m['mean_class_accuracy'])}%  frequency-weighted IoU {_fmt(m['fw_iou'])}%")
