"""The compute limit: a model's training FLOPs per image against this machine's measured matmul peak.

utilisation = FLOPs per image x images per second / peak FLOP/s of the dtype the path computes in, so a
report says what fraction of the CPU a pipeline uses, not just how it compares with another pipeline.
FLOPs are torch's FlopCounterMode count (convolutions and matmuls; elementwise work is free), which is the
usual convention for model FLOP utilisation.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

from seglab.constants import IGNORE_INDEX

aten = torch.ops.aten


def _conv_backward_flop(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed,
                        _output_padding, groups, output_mask, out_shape=None, **kwargs) -> int:
    """torch's formula, except that a grouped conv's weight gradient is divided by ``groups``.

    torch 2.x counts the weight gradient of a grouped convolution as if it were dense, which inflates
    depthwise models (EfficientNet-Lite: about 9x the forward FLOPs instead of about 2x).
    """
    def t(shape):
        return [shape[1], shape[0], *shape[2:]]

    flops = 0
    if output_mask[0]:
        flops += conv_flop_count(grad_out_shape, w_shape, out_shape[0], not transposed)
    if output_mask[1]:
        a, b = (grad_out_shape, x_shape) if transposed else (x_shape, grad_out_shape)
        flops += conv_flop_count(t(a), t(b), t(out_shape[1]), transposed=False) // groups
    return flops


def train_flops(model: torch.nn.Module, size: tuple[int, int], num_classes: int) -> dict[str, float]:
    """FLOPs of one training step (forward, cross-entropy, backward) per ``size`` image: ``total``, and
    ``grouped_conv``, the part in grouped (depthwise) convolutions, which run far below the matmul peak.

    Pass a model that may be changed: its gradients are left filled in.
    """
    grouped = [0]

    def conv(x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed, _output_padding, groups, *_,
             out_shape=None, **kwargs) -> int:
        flops = conv_flop_count(x_shape, w_shape, out_shape, transposed=transposed)
        grouped[0] += flops if groups > 1 else 0
        return flops

    def conv_backward(*args, **kwargs) -> int:
        flops = _conv_backward_flop(*args, **kwargs)
        grouped[0] += flops if args[9] > 1 else 0  # args[9]: groups
        return flops

    h, w = size
    images = torch.rand(2, 3, h, w) * 255  # two images, so batch norm sees more than one value per channel
    masks = torch.randint(0, num_classes, (2, h, w))
    model.train()
    mapping = {aten.convolution: conv, aten._convolution: conv, aten.convolution_backward: conv_backward}
    with FlopCounterMode(display=False, custom_mapping=mapping) as fc:
        F.cross_entropy(model(images).float(), masks, ignore_index=IGNORE_INDEX).backward()
    return {"total": fc.get_total_flops() / 2, "grouped_conv": grouped[0] / 2}


def train_flops_per_image(model: torch.nn.Module, size: tuple[int, int], num_classes: int) -> float:
    return train_flops(model, size, num_classes)["total"]


def matmul_peak(dtype: torch.dtype, min_seconds: float = 0.05, max_n: int = 4096, repeats: int = 3) -> float:
    """FLOP/s of the fastest of ``repeats`` square matmuls in ``dtype``, with the current thread count.

    The size doubles from 256 until one product takes ``min_seconds`` (or reaches ``max_n``), so the
    measurement is short on slow machines and still large enough to reach the peak on fast ones.
    The best time, not the median, is kept: the peak is what the CPU can do at all.
    """
    n = 256
    while True:
        a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
        torch.mm(a, b)  # first call: kernel selection, page faults
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            torch.mm(a, b)
            best = min(best, time.perf_counter() - t0)
        if best >= min_seconds or n >= max_n:
            return 2 * n**3 / best
        n *= 2


def machine_peaks(cpus: int) -> dict[str, dict[str, float]]:
    """Matmul peak per dtype at 1 thread and at ``cpus`` threads, and the better of the two ("best").

    On a busy machine all threads can be slower than one, so the peak the CPU reaches right now is
    the better of both; the thread count in force before is restored.
    """
    before = torch.get_num_threads()
    peaks: dict[str, dict[str, float]] = {}
    try:
        for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
            per = {}
            for n in sorted({1, cpus}):
                torch.set_num_threads(n)
                per[f"{n}_threads"] = round(matmul_peak(dtype))
            peaks[name] = {**per, "best": max(per.values())}
    finally:
        torch.set_num_threads(before)
    return peaks


def utilisation(flops_per_image: float, images_per_s: float, peak: float) -> float:
    return flops_per_image * images_per_s / peak
