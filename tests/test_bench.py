"""The benchmarks' reports: structure and internal consistency, never timings (the machine is shared)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from fakes import assert_one_line_error, run_cli

from seglab.bench.flops import matmul_peak, train_flops_per_image
from seglab.bench.infer_bench import run_infer_bench
from seglab.bench.memory import PeakRSS, rss_mb
from seglab.bench.train_bench import run_train_bench
from seglab.errors import SeglabError

MODEL = "scratch:simplesegnet"


def _positive(*values):
    return all(isinstance(v, (int, float)) and v > 0 for v in values)


@pytest.mark.slow
def test_train_report(tiny_camvid, tmp_path):
    out = tmp_path / "bench.json"
    run_train_bench(str(tiny_camvid), MODEL, (64, 96), batch=2, steps=2, warmup=1, rounds=1, threads=1, out=out,
                    show=False)
    report = json.loads(out.read_text())
    nb, sl = report["paths"]["notebook"], report["paths"]["seglab"]
    assert report["speedup"] == pytest.approx(sl["imgs_per_s"] / nb["imgs_per_s"])
    for p in (nb, sl):
        assert p["timed_steps"] == 2
        assert _positive(p["imgs_per_s"], p["step_s_median"], p["peak_rss_mb"], p["threads"],
                         p["loader_imgs_per_s"])
        # A share of a peak measured on a shared machine: above 1 when load slowed the peak's measurement more
        # than the steps (issue 13 measures the peak interleaved); here only that it is the documented ratio.
        dtype = "bfloat16" if p["precision"] == "bf16-mixed" else "float32"
        assert p["utilisation"] == pytest.approx(report["compute"]["train_flops_per_image"] * p["imgs_per_s"]
                                                 / report["compute"]["matmul_peak_flops"][dtype]["median"], rel=1e-3)
    assert nb["precision"] == "32" and not nb["channels_last"] and not nb["cache"]
    assert sl["precision"] in ("32", "bf16-mixed") and sl["cache"]
    peaks = report["compute"]["matmul_peak_flops"]
    assert _positive(report["compute"]["train_flops_per_image"], peaks["float32"]["median"],
                     peaks["bfloat16"]["median"])
    assert peaks["bfloat16"]["measurements"] == 2  # before the round and after it
    assert {"cpu", "threads", "torch", "load_average_start", "load_average_end"} <= set(report["machine"])
    assert report["setup"]["model"] == MODEL and report["setup"]["size"] == [64, 96]


@pytest.mark.parametrize("args, message", [
    (["train", "--size", "100x100"], "multiples of 32"),
    (["train", "--size", "big"], "HxW"),
    (["train", "--batch", "0"], "'--batch'"),
    (["train", "--steps", "2", "--rounds", "3"], "'--rounds': 3: at most --steps"),
    (["train", "--preset", "nope"], "'--preset': nope: no such preset"),
    (["train", "--preset", "camvid-cpu-60m", "--model", "unet:resnet18"],
     "'--preset': the preset sets the model, size and batch; drop --model"),
    (["train", "--preset", "camvid-cpu-60m", "--variants", "threads=1,warp"], "'--variants': unknown warp"),
    (["train", "--variants", "threads=1"], "'--variants': only with --preset"),
    (["train", "--set", "train.precision=32"], "'--set': only with --preset"),
    (["train", "--preset", "camvid-cpu-60m", "--set", "train.precison=32"], "unknown config key 'train.precison'"),
    (["train", "--preset", "camvid-cpu-60m", "--set", "train.compile=maybe"], "true, false or auto"),
    (["train", "--profile", "-1"], "'--profile'"),
    (["infer", "--frames", "0"], "'--frames'"),
])
def test_bad_options(tiny_camvid, args, message):
    assert_one_line_error(run_cli(None, "bench", *args, "--data", tiny_camvid), message)


def test_missing_data_folder(tmp_path):
    with pytest.raises(SeglabError, match="not found"):
        run_infer_bench(str(tmp_path / "nowhere"), MODEL, frames=1, show=False)


def test_depthwise_backward_flops_not_inflated():
    """A conv's training FLOPs are forward + weight gradient (+ input gradient past the first layer),
    each as large as the forward, grouped or not."""
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 64, 1), torch.nn.Conv2d(64, 64, 5, padding=2, groups=64))
    pointwise, depthwise = 2 * 32 * 32 * 64 * 3, 2 * 32 * 32 * 64 * 25  # FLOPs of one 32x32 image
    assert train_flops_per_image(model, (32, 32), num_classes=64) == 2 * pointwise + 3 * depthwise


def test_matmul_peak_doubles_the_size_and_keeps_the_best_time(monkeypatch):
    """A fake clock: an n x n product takes n**3 ns (2 GFLOP/s), except the first timed repeat at each size,
    which takes three times as long. The peak is 2 GFLOP/s from the first size that takes min_seconds."""
    from seglab.bench import flops

    clock, sizes = {"now": 0.0}, []

    def mm(a, b):
        n = a.shape[0]
        sizes.append(n)
        clock["now"] += n**3 * 1e-9 * (3 if sizes.count(n) == 2 else 1)  # call 1 warms up, call 2 is slow
        return a

    monkeypatch.setattr(flops.torch, "mm", mm)
    monkeypatch.setattr(flops.time, "perf_counter", lambda: clock["now"])
    assert matmul_peak(torch.float32, min_seconds=0.1, max_n=4096) == pytest.approx(2e9)
    assert sorted(set(sizes)) == [256, 512]  # 256**3 ns = 0.017 s is too short to time; 512**3 ns = 0.13 s
    assert sizes.count(512) == 1 + 3  # a warm-up, then three timed repeats
    sizes.clear()
    assert matmul_peak(torch.float32, min_seconds=100, max_n=1024) == pytest.approx(2e9)
    assert sorted(set(sizes)) == [256, 512, 1024]  # never beyond max_n, however fast the products are


def test_peak_rss_sees_a_transient_allocation():
    import gc

    gc.collect()  # garbage of earlier tests freed inside the window would hide the allocation
    baseline = rss_mb()
    with PeakRSS(baseline) as peak:
        block = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
        del block
    assert peak.mb >= baseline + 48


def test_thread_tuner_keeps_the_faster_count(monkeypatch):
    """Steps at 1 thread take 0.1 s and at 2 threads 1 s (a fake clock): the tuner settles on 1, then re-checks."""
    from seglab.training import threads

    clock = {"now": 0.0}
    monkeypatch.setattr(threads.time, "perf_counter", lambda: clock["now"])
    before = torch.get_num_threads()
    tuner = threads.ThreadTuner(candidates=[1, 2], trials=2, recheck=8)
    used = []
    try:
        for _ in range(10):
            tuner.on_train_batch_start(None, None, None, 0)
            used.append(torch.get_num_threads())
            clock["now"] += 0.1 if used[-1] == 1 else 1.0
            tuner.on_train_batch_end(None, None, None, None, 0)
    finally:
        torch.set_num_threads(before)
    assert used[1:5] == [1, 2, 1, 2]  # step 0 warms up untimed, then the trials alternate
    assert tuner.chosen == 1 and used[5:8] == [1, 1, 1]
    assert used[8:10] == [1, 1]  # the re-check: a warm-up step at the chosen count, then the trials again


@pytest.mark.slow
def test_budget_report_compares_alone_and_loaded(tiny_camvid, tmp_path):
    """Structure of `seglab bench budget`: turns in both conditions, medians and changes consistent."""
    from seglab.bench.budget_bench import run_budget_bench

    out = tmp_path / "budget.json"
    report = run_budget_bench(str(tiny_camvid), MODEL, (64, 96), batch=2, budget="5s", rounds=1, out=out, show=False)
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    for cond in ("alone", "loaded"):
        (turn,) = report[cond]["turns"]
        assert turn["steps"] == report[cond]["steps_median"] >= 1
        assert _positive(turn["cpu_s_per_step_1thread"], turn["wall_s_per_step"], turn["wall_budget_steps"])
    assert report["steps_change"] == pytest.approx(
        report["loaded"]["steps_median"] / report["alone"]["steps_median"] - 1, abs=1e-4)
    assert {"cpu", "load_average_start", "load_average_end"} <= set(report["machine"])
