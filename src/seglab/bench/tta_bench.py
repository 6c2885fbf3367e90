"""Which test-time augmentation pays for a trained model, decided on val, never on test.

    seglab bench tta runs/<run> --data ../shared/camvid --split val --out tta.json

Each scale's mirrored pair runs once per image; every candidate (none, flip, and ranges of scales such as
0.75x-1.5x) is then scored from those shared probabilities, so all candidates together cost what the
widest one costs. The candidates are a small fixed family (a lowest and a highest scale), not every subset
of scales, so that picking the best of them on a hundred val images does not mostly pick val noise.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch

from seglab.bench.report import command_line, finish, machine_info, print_table
from seglab.errors import BadValue
from seglab.metrics import ConfusionMatrix
from seglab.models.tta import CUSTOM_SCALES, ONE_VIEW, TTA_SCALES, mirrored, tta_scales

log = logging.getLogger("seglab")
LOWEST = (0.5, 0.75, 1.0)
HIGHEST = (1.25, 1.5, 1.75, 2.0, 2.25, 2.5)
STEP = 0.25
ONE_VIEW_SCALES = (1.25, 1.5, 1.75, 2.0)  # one enlarged pass: what a deployment that affords one view can choose


def candidate_modes() -> list[str]:
    """none, flip, one view at each of ONE_VIEW_SCALES, then every range LOWEST[i]..HIGHEST[j] in steps of 0.25
    (named modes where one fits)."""
    named = {scales: mode for mode, scales in TTA_SCALES.items() if mode != "none"}
    modes = ["none", "flip", *(f"{ONE_VIEW}{s:g}" for s in ONE_VIEW_SCALES)]
    for low in LOWEST:
        for high in HIGHEST:
            scales = tuple(float(s) for s in np.arange(low, high + STEP / 2, STEP))
            modes.append(named.get(scales, CUSTOM_SCALES + ",".join(f"{s:g}" for s in scales)))
    return modes


def relative_cost(mode: str) -> float:
    """Forward passes' pixels relative to one plain pass: each scale's area, twice for the mirror."""
    return (2 if mirrored(mode) else 1) * sum(s * s for s in tta_scales(mode))


def run_tta_bench(target: str | Path, split: str, data_root: str | None, batch_size: int | None,
                  out: Path | None) -> dict:
    from seglab.data.datamodule import SegDataModule
    from seglab.evaluate import open_scoring_data
    from seglab.runs import read_trained
    from seglab.scoring import check_split, score_split
    from seglab.study.stats import bootstrap_miou, paired_bootstrap_diff
    from seglab.training.module import SegModule
    from seglab.training.plan import plan_for

    if split == "test":
        raise BadValue("split", split, "choices are made on val (or another split than test): a TTA picked on "
                                       "test would make the test score optimistic; score it with "
                                       "`seglab evaluate --tta` once chosen")
    trained = read_trained(target)
    cfg = trained.config
    source = open_scoring_data(trained, data_root)
    check_split(source, split)
    in_training = split in cfg.data.trains_on()
    if in_training:
        log.warning("%s: the model trained on %s, so its scores there are optimistic and may favour other "
                    "views than unseen images would", target, split)
    plan = plan_for(cfg)
    device = torch.device(plan.device)
    module = SegModule.from_trained(trained).to(device)
    dm = SegDataModule(source, cfg.data, eval_batch_size=batch_size)
    dm.test_split = split
    dm.setup("test")
    modes = candidate_modes()
    t0 = time.monotonic()
    mats = score_split(module, dm.test_dataloader(), len(trained.classes.names), modes, device,
                       plan.autocast_dtype)
    rows = []
    for mode in modes:
        ci = bootstrap_miou(mats[mode])
        gain = paired_bootstrap_diff(mats[mode], mats["none"])
        cm = ConfusionMatrix(len(trained.classes.names), list(trained.classes.names))
        cm.mat = torch.from_numpy(mats[mode].sum(0))
        rows.append({"tta": mode, "miou": ci.estimate, "miou_ci95": [ci.low, ci.high],
                     "gain_vs_none_points": round(100 * gain.estimate, 2),
                     "gain_ci95_points": [round(100 * gain.low, 2), round(100 * gain.high, 2)],
                     "relative_cost": relative_cost(mode),
                     "per_class_iou": dict(zip(cm.class_names, cm.compute()["per_class_iou"]))})
    best = max(rows, key=lambda r: r["miou"])
    report = {"run": str(target), "split": split, "split_in_training": in_training,
              "images": int(mats["none"].shape[0]), "precision": plan.precision, "best": best["tta"],
              "run_tta": cfg.data.tta, "candidates": rows, "seconds": round(time.monotonic() - t0, 1),
              "command": command_line(), "machine": machine_info()}
    finish(report, out)
    print_table(f"test-time augmentation on {split} ({report['images']} images)",
                ["tta", "mIoU %", "gain vs none", "cost x"],
                [[r["tta"], 100 * r["miou"], r["gain_vs_none_points"], r["relative_cost"]] for r in rows],
                footer=f"best on {split}: {best['tta']} (set it with --set data.tta={best['tta']} or "
                       f"`seglab evaluate --tta {best['tta']}`)")
    return report
