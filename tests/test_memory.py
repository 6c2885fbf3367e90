"""Larger than memory: data.cache auto caches what fits data.memory_budget and streams the rest, decided from
the files' headers; streamed batches equal cached ones; seglab bench data and bench scale at a tiny size."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from fakes import assert_one_line_error, run_cli
from PIL import Image

from seglab.config import ConfigError, load_config
from seglab.data import open_source
from seglab.data.datamodule import SegDataModule
from seglab.data.memory import (
    BYTES_PER_PIXEL,
    available_memory,
    choose_policy,
    decoded_bytes,
    header_size,
    stream_workers,
)
from seglab.imageio import read_image
from seglab.sizes import parse_memory

PAIR_BYTES = 64 * 96 * BYTES_PER_PIXEL  # one tiny_camvid pair decoded (fakes.make_camvid: 64x96)


def module(root, **data) -> SegDataModule:
    cfg = load_config(overrides={"data.size": "64x96", "data.batch_size": 2, "data.color_jitter": True,
                                 **{f"data.{k}": v for k, v in data.items()}})
    return SegDataModule(open_source(root), cfg.data, seed=3)


# --- the policy ------------------------------------------------------------------------------------------


def test_auto_caches_a_dataset_that_fits_the_budget(tiny_camvid):
    dm = module(tiny_camvid, memory_budget="1MB")  # 9 pairs of 24.6 kB
    assert dm.policy.cache and dm.policy.workers == 0
    assert dm.policy.decoded_bytes == 9 * PAIR_BYTES and dm.policy.budget_bytes == 10**6
    assert dm.policy.record()["decoded_gb"] == round(9 * PAIR_BYTES / 1e9, 3)
    assert dm.dataset("train")._cache[0] is not None  # decoded up front, as before
    assert "0.000221 GB decoded fits the memory budget of 0.001 GB" in dm.policy.reason


def test_auto_streams_a_dataset_that_does_not_fit(tiny_camvid):
    dm = module(tiny_camvid, memory_budget="100kB")
    assert not dm.policy.cache and "exceeds the memory budget" in dm.policy.reason
    assert dm.policy.workers == stream_workers() and dm.policy.workers >= (1 if sys.platform == "linux" else 0)
    assert dm.dataset("train")._cache is None  # nothing decoded, nothing kept
    assert dm.train_dataloader().num_workers == dm.policy.workers


def test_a_test_split_that_is_val_is_decoded_and_counted_once(tiny_camvid):
    """The benchmarks score val as test (the same list): one dataset, one cache, counted once by the policy."""
    source = open_source(tiny_camvid)
    source.splits["test"] = source.splits["val"]
    cfg = load_config(overrides={"data.size": "64x96", "data.batch_size": 2, "data.memory_budget": "1MB"})
    dm = SegDataModule(source, cfg.data, seed=3)
    train, val = len(source.splits["train"]), len(source.splits["val"])
    assert dm.policy.decoded_bytes == (train + val) * PAIR_BYTES
    assert dm.dataset("test") is dm.dataset("val") and dm.dataset("val")._cache[0] is not None


def test_streaming_keeps_a_worker_count_that_was_set(tiny_camvid):
    dm = module(tiny_camvid, memory_budget="100kB", workers=1)
    assert not dm.policy.cache and dm.policy.workers == 1


def test_true_and_false_force_the_cache_whatever_the_budget(tiny_camvid):
    forced = module(tiny_camvid, cache=True, memory_budget="1kB")
    assert forced.policy.cache and forced.policy.workers == 0 and "data.cache is true" in forced.policy.reason
    off = module(tiny_camvid, cache=False, memory_budget="100%")
    assert not off.policy.cache and off.policy.workers == stream_workers()


def test_default_budget_is_half_the_available_memory(tiny_camvid):
    cfg = load_config().data
    samples = open_source(tiny_camvid).split("train")
    assert cfg.cache == "auto" and cfg.memory_budget is None
    assert choose_policy(cfg, samples, available=2 * 3 * PAIR_BYTES).cache  # exactly half: fits
    assert not choose_policy(cfg, samples, available=2 * 3 * PAIR_BYTES - 2).cache
    assert choose_policy(load_config(overrides={"data.memory_budget": "25%"}).data, samples,
                         available=4 * 3 * PAIR_BYTES).cache


def test_available_memory_from_proc_meminfo_without_psutil(monkeypatch):
    with_psutil = available_memory()
    monkeypatch.setitem(sys.modules, "psutil", None)  # import psutil now raises ImportError
    without = available_memory()
    if sys.platform == "linux":
        assert without > 0 and with_psutil > 0
        assert abs(without - with_psutil) < 0.5 * with_psutil  # the same quantity, read two ways


def test_memory_budget_values():
    assert parse_memory("4GB") == (4 * 10**9, None) and parse_memory("512 MiB") == (512 * 2**20, None)
    assert parse_memory("50%") == (None, 0.5)
    for bad in ("4", "lots", "0GB", "150%", "-1GB"):
        with pytest.raises(ValueError):
            parse_memory(bad)


def test_bad_memory_budget_is_a_config_error(capsys, tiny_camvid, tmp_path):
    with pytest.raises(ConfigError, match="config key 'data.memory_budget': 'lots': expected a size like 4GB"):
        load_config(overrides={"data.memory_budget": "lots"})
    with pytest.raises(ConfigError, match="config key 'data.cache': bad value 'sometimes'; use true, false or auto"):
        load_config(overrides={"data.cache": "sometimes"})
    runs = tmp_path / "runs"
    result = run_cli(capsys, "train", "--data", tiny_camvid, "--out", runs, "--set", "data.memory_budget=4")
    assert_one_line_error(result, "data.memory_budget", "expected a size like 4GB")
    assert not runs.exists()  # nothing half-written


# --- the estimate ----------------------------------------------------------------------------------------


def test_header_estimate_equals_the_decoded_cache(tiny_camvid):
    dm = module(tiny_camvid, cache=True)
    ds = dm.dataset("train")  # preloaded
    real = sum(image.nbytes + mask.nbytes for image, mask in ds._cache)
    assert decoded_bytes(ds.samples) == real == 3 * PAIR_BYTES


def test_header_size_turns_exif_rotated_images_upright(tmp_path):
    path = tmp_path / "turned.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: shown turned 90 degrees clockwise
    Image.fromarray(np.zeros((40, 64, 3), np.uint8)).save(path, exif=exif)
    assert header_size(path) == read_image(path).shape[:2] == (64, 40)


def test_unreadable_header_names_the_file(tmp_path):
    from seglab.errors import SeglabError

    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(SeglabError, match="broken.png: cannot read image"):
        header_size(bad)


def test_data_check_says_whether_training_would_cache(tiny_camvid, monkeypatch):
    from seglab.data import check_source, format_check, memory

    report = check_source(open_source(tiny_camvid))
    assert "decoded: 0.000221 GB, fits the default memory budget" in format_check(report)
    monkeypatch.setattr(memory, "available_memory", lambda: 10**5)
    assert "exceeds the default memory budget of 5e-05 GB (50% of the memory available now): training streams" \
        in format_check(report)


def test_eval_batch_size_from_headers_when_streaming(tiny_camvid):
    streamed = module(tiny_camvid, cache=False, workers=0)
    cached = module(tiny_camvid, cache=True)
    assert streamed._eval_batch_size("val") == cached._eval_batch_size("val") == 2  # one size: batched


# --- determinism -----------------------------------------------------------------------------------------


def batches(dm: SegDataModule, epochs: int = 2) -> list[tuple[torch.Tensor, torch.Tensor]]:
    loader = dm.train_dataloader()
    out = []
    for epoch in range(epochs):
        dm.train_sampler.set_epoch(epoch)
        out += list(loader)
    return out


def test_streamed_batches_equal_cached_ones(tiny_camvid):
    cached = batches(module(tiny_camvid, cache=True))
    streamed_dm = module(tiny_camvid, cache=False, workers=2)
    streamed = batches(streamed_dm)
    assert streamed_dm.train_dataloader().num_workers == 2
    assert len(cached) == len(streamed) == 2
    for (ci, cm), (si, sm) in zip(cached, streamed, strict=True):
        assert torch.equal(ci, si) and torch.equal(cm, sm)
    assert not torch.equal(cached[0][0], cached[1][0])  # the epochs differ: augmentation is still random


# --- seglab bench data -----------------------------------------------------------------------------------


def test_bench_data_at_a_tiny_size(capsys, tmp_path):
    out = tmp_path / "data.json"
    result = run_cli(capsys, "bench", "data", "--size", "64x128", "--crop", "32x64", "--images", "4",
                     "--max-workers", "1", "--step-s", "0.5", "--out", out)
    assert result.code == 0, result.err
    report = json.loads(out.read_text())
    assert report["machine"]["logical_cpus"] and report["command"].startswith("seglab bench data")
    modes = [row["mode"] for row in report["loading"]]
    assert modes == ["cached", "streamed, 0 workers", "streamed, 1 workers"]
    assert all(row["images_per_s"] > 0 for row in report["loading"])
    assert report["step"] == {"seconds": 0.5, "batch": 2, "images_per_s": 4.0, "measured": None}
    need = report["streaming_workers_needed"]
    assert need is None or 0 <= need <= 1
    assert report["decoded_gb_per_image"] == round(64 * 128 * 4 / 1e9, 6)


@pytest.mark.slow
def test_bench_scale_trains_a_synthetic_cityscapes_and_samples_memory(capsys, tmp_path):
    out = tmp_path / "scale.json"
    result = run_cli(capsys, "bench", "scale", "--images", "6", "--val-images", "2", "--size", "64x128",
                     "--distinct", "2", "--crop", "32x64", "--batch", "2", "--eval-size", "64x128",
                     "--set", "data.memory_budget=10kB", "--out", out)
    assert result.code == 0, result.err
    report = json.loads(out.read_text())
    assert report["setup"]["train_images"] == 6 and report["setup"]["extra_arguments"] == [
        "--set", "data.memory_budget=10kB"]
    assert report["decoded_gb_if_cached"] == round(8 * 64 * 128 * 4 / 1e9, 2)
    policy = report["policy"]  # val is scored as test (the same list): counted once
    assert policy["cache"] is False and policy["workers"] >= 1
    assert policy["decoded_gb"] == round(8 * 64 * 128 * 4 / 1e9, 3)
    assert report["training"]["steps"] == 3 and report["training"]["test_images_scored"] == 2
    mem = report["memory"]
    assert mem["samples"] >= 1 and mem["peak_process_tree_rss_gb"] > 0
    assert mem["peak_used_gb"] >= mem["used_at_start_gb"]
    assert mem["swapped"] is (mem["peak_swap_used_gb"] > mem["swap_used_at_start_gb"])


@pytest.mark.slow
def test_bench_scale_reports_a_failed_run_in_one_line(capsys, tmp_path):
    result = run_cli(capsys, "bench", "scale", "--images", "2", "--val-images", "1", "--size", "64x128",
                     "--distinct", "1", "--crop", "32x64", "--set", "train.lr=-1", "--out", tmp_path / "s.json")
    assert result.code == 2 and "seglab train on the synthetic Cityscapes failed (exit 2)" in result.err
    assert "train.lr" in result.err and not (tmp_path / "s.json").exists()


@pytest.mark.slow
def test_a_streamed_run_records_its_policy(tiny_camvid, tmp_path):
    from fakes import train_run

    run = train_run(tiny_camvid, tmp_path / "runs", "streamed", "--set", "data.memory_budget=100kB",
                    "--workers", "1")
    policy = json.loads((run / "run.json").read_text())["data_cache"]
    assert policy["cache"] is False and policy["workers"] == 1 and policy["budget_gb"] == 0.0
    assert "exceeds the memory budget of 0.0001 GB" in policy["reason"]
    assert json.loads((run / "run.json").read_text())["status"] == "finished"
