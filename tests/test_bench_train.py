"""`seglab bench train`'s yardstick, profile and preset mode: pure logic on given numbers, and the report's
fields from a tiny preset (never timings: the machine is shared)."""

from __future__ import annotations

import json

import pytest
import yaml
from fakes import run_cli

from seglab.bench.peaks import PeakSampler, spread
from seglab.bench.step_profile import OpTime, category, summarise
from seglab.bench.variants import gain, variants


def test_spread_flags_the_issue_run():
    """207 and 382 GFLOP/s a few minutes apart (issue 13): far beyond 10% of their median."""
    s = spread([207e9, 382e9, 300e9])
    assert s["median"] == 300e9 and s["min"] == 207e9 and s["max"] == 382e9
    assert s["spread"] == pytest.approx(175 / 300, abs=1e-4) and s["unstable"]
    assert not spread([100.0, 100.0, 110.0])["unstable"]  # exactly 10% of the median is still stable
    assert spread([100.0, 100.0, 110.1])["unstable"]
    assert spread([5.0]) == {"median": 5.0, "min": 5.0, "max": 5.0, "spread": 0.0, "unstable": False,
                             "measurements": 1}


def test_peak_sampler_takes_the_median_of_the_best_and_warns(caplog):
    values = iter([(100e9, 90e9), (95e9, 120e9), (80e9, 70e9)])  # (1 thread, 2 threads) per measurement

    def measure(cpus):
        one, two = next(values)
        return {"bfloat16": {"1_threads": one, "2_threads": two, "best": max(one, two)},
                "float32": {"1_threads": 1.0, "2_threads": 1.0, "best": 1.0}}

    sampler = PeakSampler(2, measure)
    for _ in range(3):
        sampler.sample()
    summary = sampler.summary()
    assert sampler.median("bfloat16") == 100e9 == summary["bfloat16"]["median"]
    assert summary["bfloat16"]["spread"] == pytest.approx(0.4) and summary["bfloat16"]["unstable"]
    assert [e["best"] for e in summary["bfloat16"]["each"]] == [100e9, 120e9, 80e9]
    assert not summary["float32"]["unstable"] and summary["unstable"]
    warnings = [r.getMessage() for r in caplog.records if "matmul peak varied" in r.getMessage()]
    assert warnings == [("warning: the bfloat16 matmul peak varied 40% across 3 measurements (80-120 GFLOP/s): "
                         "the machine's load changed during the run, so its shares of the peak are unreliable")]


def test_gain_needs_three_rounds_and_five_percent():
    base = [[1.0, 1.0], [2.0, 2.0], [1.0, 1.2]]
    assert gain(base, [[0.9], [1.8], [1.0]]) == {"gain": pytest.approx(0.1111, abs=1e-4), "helps": True,
                                                 "gain_per_round": [0.1111, 0.1111, 0.1]}
    assert not gain(base, [[0.97], [1.95], [1.06]])["helps"]  # about 3%: noise on a shared machine
    assert not gain(base[:2], [[0.5], [1.0]])["helps"]  # 2x, but two rounds are too few
    assert gain([], [])["gain"] is None


@pytest.mark.parametrize("op, expected", [
    (OpTime("aten::convolution_backward", 1, [[8, 96, 8, 8], [8, 96, 8, 8], [96, 1, 3, 3]], []), "depthwise_conv"),
    (OpTime("aten::convolution_backward", 1, [[8, 96, 8, 8], [8, 32, 8, 8], [96, 32, 1, 1]], []),
     "dense_conv_matmul"),
    (OpTime("aten::mkldnn_convolution", 1, [[8, 96, 8, 8], [96, 1, 5, 5]], ["aten::conv2d"]), "depthwise_conv"),
    (OpTime("aten::mkldnn_convolution", 1, [[8, 3, 8, 8], [32, 3, 3, 3]], []), "dense_conv_matmul"),
    (OpTime("aten::addmm", 1, [], []), "dense_conv_matmul"),
    (OpTime("aten::native_batch_norm_backward", 1, [], []), "normalisation"),
    (OpTime("aten::hardtanh_backward", 1, [], []), "elementwise_and_copies"),
    (OpTime("aten::mul", 1, [], ["seglab.loss"]), "loss"),
    (OpTime("aten::_log_softmax_backward_data", 1, [], ["autograd::engine::evaluate_function: X"]), "loss"),
    (OpTime("aten::copy_", 1, [], ["enumerate(DataLoader)#_SingleProcessDataLoaderIter.__next__"]),
     "data_loading"),
    (OpTime("aten::_fused_adamw_", 1, [], ["Optimizer.step#AdamW.step"]), "optimizer"),
    (OpTime("aten::fill_", 1, [], ["Optimizer.zero_grad#AdamW.zero_grad"]), "optimizer"),
    # Lightning runs forward and backward inside optimizer.step(closure): that scope says nothing
    (OpTime("aten::mkldnn_convolution", 1, [[8, 3, 8, 8], [32, 3, 3, 3]], ["Optimizer.step#AdamW.step"]),
     "dense_conv_matmul"),
    (OpTime("Optimizer.step#AdamW.step", 1, [], []), "framework"),
])
def test_op_categories(op, expected):
    assert category(op) == expected


def test_profile_summary_shares_add_up():
    ops = [OpTime("aten::convolution_backward", 3e6, [[1], [1], [64, 1, 3, 3]], []),  # 3 s depthwise
           OpTime("aten::mkldnn_convolution", 2e6, [[1], [64, 32, 1, 1]], []),  # 2 s dense
           OpTime("aten::add", 1e6, [], [])]
    s = summarise(ops, wall_s=8.0, steps=2, dense_flops=100e9, grouped_flops=3e9)
    assert s["step_s"] == 4.0
    assert s["category_s_per_step"]["depthwise_conv"] == 1.5 and s["category_s_per_step"]["framework"] == 1.0
    assert sum(s["category_share"].values()) == pytest.approx(1.0, abs=1e-3)
    assert s["dense_gflop_per_s"] == 100.0 and s["depthwise_gflop_per_s"] == 2.0
    assert [o["op"] for o in s["top_ops"]] == ["aten::convolution_backward", "aten::mkldnn_convolution", "aten::add"]
    assert s["top_ops"][0] == {"op": "aten::convolution_backward", "category": "depthwise_conv",
                               "self_s_per_step": 1.5, "calls_per_step": 0.5, "share": 0.375}


@pytest.mark.slow
def test_preset_report_has_the_committed_fields(capsys, tiny_camvid, tmp_path, monkeypatch):
    """`seglab bench train --preset`: the preset's own setup, a variant, a profile and the figures the
    committed benchmarks/train.json carries."""
    presets = tmp_path / "presets"
    presets.mkdir()
    (presets / "tiny.yaml").write_text(yaml.safe_dump({
        "name": "tiny", "data": {"size": "64x96", "batch_size": 2, "train_splits": "train+val"},
        "model": {"spec": "scratch:simplesegnet"}, "train": {"loss": "dice_ce", "optimizer": "adamw"}}))
    monkeypatch.setattr("seglab.config.schema.PRESETS_DIR", presets)
    out = tmp_path / "train.json"
    r = run_cli(capsys, "bench", "train", "--data", tiny_camvid, "--preset", "tiny", "--steps", "2", "--rounds",
                "2", "--warmup", "1", "--threads", "1", "--variants", "channels_last=false", "--profile", "2",
                "--out", out)
    assert r.code == 0, r.err[-3000:]
    report = json.loads(out.read_text())
    for key in ("img_per_s", "gflop_per_img", "share_of_bf16_peak", "matmul_peak_gflops", "matmul_peak_spread",
                "peak_unstable", "machine", "command"):
        assert report.get(key) is not None, key
    assert report["command"].startswith("seglab bench train --data") and "--preset tiny" in report["command"]
    assert report["machine"]["cpu"] and report["machine"]["logical_cpus"] >= 1
    assert set(report["paths"]) == {"seglab", "channels_last=false"} and "speedup" not in report
    assert report["img_per_s"] == report["paths"]["seglab"]["imgs_per_s"]
    assert report["setup"] | {"model": "scratch:simplesegnet", "size": [64, 96], "batch": 2, "loss": "dice_ce",
                              "optimizer": "adamw", "train_images": 6} == report["setup"]
    peak = report["compute"]["matmul_peak_flops"]["bfloat16"]
    assert peak["measurements"] == 3 and len(peak["each"]) == 3  # before, between and after the two rounds
    assert report["matmul_peak_gflops"] == pytest.approx(peak["median"] / 1e9, abs=0.1)
    assert report["peak_unstable"] == (report["compute"]["matmul_peak_flops"]["unstable"])
    assert report["share_of_bf16_peak"] == pytest.approx(
        report["compute"]["train_flops_per_image"] * report["img_per_s"] / peak["median"], rel=1e-2)
    variant = report["paths"]["channels_last=false"]
    assert not variant["channels_last"] and len(variant["gain_per_round"]) == 2 and variant["helps"] is False
    assert set(report["variants"]["adamw_step_s"]) == {"fused", "foreach", "for_loop"}
    losses = report["variants"]["loss_step_s"]
    assert set(losses) == {"seglab", "smp_dice_and_torch_ce"} and all(v > 0 for v in losses.values())
    prof = report["profile"]
    assert prof["steps"] == 2 and sum(prof["category_share"].values()) == pytest.approx(1.0, abs=0.01)
    assert prof["top_ops"] and "profile:" in r.out


def test_the_compile_variant_switches_compilation_to_the_side_the_setup_is_not_on():
    off, on, both = variants(2, compiled=False), variants(2, compiled=True), variants(2)
    assert off["compile=true"].overrides == {"train.compile": True} and "compile=false" not in off
    assert on["compile=false"].overrides == {"train.compile": False} and "compile=true" not in on
    assert {"threads=1", "threads=2", "channels_last=false", "compile=true", "compile=false"} == set(both)
