"""Training throughput: seglab's training path against the notebooks' way, or a preset against its variants.

    seglab bench train --data ../shared/camvid --model unet:resnet18 --size 256x256 --batch 4 --out bench.json
    seglab bench train --data ../shared/camvid --preset camvid-cpu-60m --out benchmarks/train.json

The notebook way is bench/notebook.py: per-item PNG decoding in the main process, fp32 NCHW, and a plain
loop with Adam and cross-entropy. seglab's path is what ``seglab train`` runs: SegDataModule and SegModule under a Trainer
from ``make_trainer``, with the default RunConfig except model, size and batch, or with the preset's config
(random-init weights either way, which cost the same time as pretrained ones and need no download). A
preset is timed against variants of itself (bench/variants.py) instead of the notebooks' loop, whose model
setup would not be the preset's.

Each path is built and warmed up alone (its peak memory is measured then), then they take turns in rounds,
so a change in machine load hits all. Within a round the first step is not timed (it pays for the round's
start); the figure is the median time between the ends of consecutive steps, data loading included. The
matmul peak, the yardstick of utilisation, is measured before, between and after the rounds (bench/peaks.py);
``--profile`` then traces a few steps of seglab's path per op (bench/step_profile.py).
"""
from __future__ import annotations

import math
import tempfile
import time

import torch

from seglab.bench import flops, step_profile
from seglab.bench.memory import PeakRSS, rss_mb
from seglab.bench.notebook import NotebookPath
from seglab.bench.peaks import PeakSampler
from seglab.bench.report import command_line, finish, machine_info, print_table, summarise
from seglab.bench.variants import MIN_GAIN, MIN_ROUNDS, Variant, adamw_step_s, gain, loss_step_s, variants
from seglab.config import load_config, preset_path
from seglab.data.datamodule import SegDataModule
from seglab.data.open import open_data
from seglab.errors import first_line
from seglab.models import build_model
from seglab.training.budget import StepClock
from seglab.training.module import SegModule
from seglab.training.plan import resolve_plan
from seglab.training.threads import ThreadTuner, usable_cpus
from seglab.training.trainer import make_trainer, quiet


def loader_throughput(loader, batches: int) -> float:
    """Images per second the loader alone delivers: it must outrun training, or data is the bottleneck."""
    done, images, t0 = 0, 0, time.perf_counter()
    while done < batches:
        for images_batch, _ in loader:
            images += images_batch.shape[0]
            done += 1
            if done == batches:
                break
    return images / (time.perf_counter() - t0)


class SeglabPath:
    """``seglab train``'s data module, LightningModule and Trainer under ``cfg`` (random-init weights).

    ``variant`` changes the config; ``datamodule`` may be shared with other paths of
    the same data config (one decoded cache). ``train.threads: auto`` gets one ThreadTuner for all rounds,
    as one long run has, instead of a fresh one per round.
    """

    def __init__(self, cfg, source, threads: int, workdir: str, variant: Variant | None = None,
                 datamodule: SegDataModule | None = None):
        self.name = variant.name if variant else "seglab"
        cfg = variant.config(cfg) if variant else cfg
        self.tuner = ThreadTuner() if cfg.train.threads == "auto" else None
        if cfg.train.threads == "auto":
            cfg = Variant("", {"train.threads": 0}).config(cfg)  # the tuner above does it
        self.cfg, self.threads, self.workdir = cfg, threads, workdir
        self.plan = resolve_plan(cfg)  # each round's Trainer computes as this plan says
        self.datamodule = datamodule or SegDataModule(source, cfg.data)
        self.datamodule.setup("fit")  # decode the cache now, as `seglab train` does before fitting
        self.module = SegModule(cfg, source.classes)  # cfg.model.weights is none: random init
        self.observed_threads = threads
        self.loader = self.datamodule.train_dataloader()

    @property
    def precision(self) -> str:
        return self.plan.precision

    def settings(self) -> dict:
        """What the report lists of each path's setup."""
        cfg = self.cfg
        return {"precision": self.precision, "channels_last": cfg.train.channels_last,
                "compile": self.plan.compile, "workers": cfg.data.workers,
                "cache": self.datamodule.policy.cache, "threads": self.observed_threads, "thread_tuning": self.tuner is not None}

    @property
    def settle_steps(self) -> int:
        """Warm-up steps that let the thread tuner finish its first check: a long run's steps are past it."""
        return self.tuner.check_steps if self.tuner else 0

    def run(self, steps: int, callbacks: list | None = None) -> list[float]:
        torch.set_num_threads(self.threads)  # seglab's own thread choice, if it makes one, comes after this
        clock = StepClock(time.perf_counter)
        trainer = make_trainer(
            self.plan, max_steps=steps, max_epochs=-1, limit_val_batches=0,
            logger=False, enable_checkpointing=False, enable_progress_bar=False,
            callbacks=[*([self.tuner] if self.tuner else []), *(callbacks or []), clock],
            default_root_dir=self.workdir,
        )
        with quiet():
            trainer.fit(self.module, datamodule=self.datamodule)
        self.observed_threads = clock.threads
        return clock.costs


def _build_alone(makers, baseline: float, warmup: int, loader_batches: int) -> tuple[dict, dict]:
    """Build and warm up each path before the next exists: its setup time, peak RSS and loader speed.
    A maker that fails (a variant this machine cannot run) leaves its error instead of a path."""
    paths, info = {}, {}
    for name, make in makers.items():
        t0 = time.perf_counter()
        try:
            with PeakRSS(baseline) as peak:
                path = make()
                setup_s = time.perf_counter() - t0
                if max(warmup, path.settle_steps):
                    path.run(max(warmup, path.settle_steps))
        except Exception as e:  # any failure of a variant is a result, not a crash
            if name == "seglab":
                raise
            info[name] = {"error": f"{type(e).__name__}: {first_line(e)}"}
            continue
        paths[name] = path
        info[name] = {"setup_s": round(setup_s, 2), "warmup_s": round(time.perf_counter() - t0 - setup_s, 2),
                      "peak_rss_mb": peak.mb,
                      "loader_imgs_per_s": round(loader_throughput(path.loader, loader_batches), 2)}
    return paths, info


def bench_config(data: str, preset: str | None, spec: str | None, size, batch: int | None,
                 settings: dict | None = None):
    """The preset's config (with ``settings``, dotted keys, changed), or the defaults with ``spec``, ``size``
    and ``batch``; random-init weights."""
    overrides = {"data.root": data, "model.weights": "none"}
    if preset:
        return load_config(preset_path(preset), {**(settings or {}), **overrides})
    return load_config(overrides={**overrides, "model.spec": spec, "data.size": list(size), "data.batch_size": batch})


def run_train_bench(data: str, spec: str | None = None, size: tuple[int, int] | None = None, batch: int | None = None,
                    *, preset: str | None = None, steps: int = 12, warmup: int = 2, rounds: int = 3,
                    threads: int | None = None, variant_names: list[str] | None = None,
                    profile_steps: int = 0, settings: dict | None = None, out=None, show: bool = True) -> dict:
    """Measure the paths and return (and write to ``out``) the report.

    Without ``preset``: the notebooks' path against seglab's, ``speedup`` = seglab / notebook. With it: the
    preset's own setup (``seglab``) against its variants (``variant_names``, default all). The matmul peak
    is measured before, between and after the rounds. ``profile_steps`` > 0 profiles that many steps of
    seglab's path after the rounds. ``settings``: config keys changed in the preset (``--set``), e.g. its
    fp32 step on a CPU whose auto precision is bf16.
    """
    threads = threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    machine = machine_info()
    baseline = rss_mb()
    cfg = bench_config(data, preset, spec, size, batch, settings)
    spec, size, batch = cfg.model.spec, tuple(cfg.data.size), cfg.data.batch_size
    source = open_data(cfg.data)
    cpus = usable_cpus()
    chosen = variants(cpus, resolve_plan(cfg).compile) if preset else {}
    chosen = {n: chosen[n] for n in variant_names} if variant_names is not None else chosen
    peaks = PeakSampler(cpus)

    with tempfile.TemporaryDirectory(prefix="seglab-bench-") as workdir:
        shared = {}

        def seglab_path(variant=None):
            path = SeglabPath(cfg, source, threads, workdir, variant, shared.get("datamodule"))
            shared.setdefault("datamodule", path.datamodule)
            return path

        makers = {"seglab": seglab_path, **{n: (lambda v=v: seglab_path(v)) for n, v in chosen.items()}}
        if not preset:
            makers = {"notebook": lambda: NotebookPath(source, spec, size, batch, threads), **makers}
        paths, info = _build_alone(makers, baseline, warmup, steps)
        per_round = math.ceil(steps / rounds) + 1  # + 1: the first step of a round is not timed
        times: dict[str, list[list[float]]] = {name: [] for name in paths}
        for _ in range(rounds):
            peaks.sample()
            for name, path in paths.items():
                times[name].append(path.run(per_round))
        peaks.sample()
        profiled = _profile(paths["seglab"], profile_steps) if profile_steps else None

    counted = flops.train_flops(build_model(spec, source.classes.num_classes, weights="none"), size,
                                source.classes.num_classes)
    peak = peaks.summary()
    results = {}
    for name, path in paths.items():
        s = summarise([t for r in times[name] for t in r], batch)
        dtype = "bfloat16" if path.precision == "bf16-mixed" else "float32"
        results[name] = {**path.settings(), **info[name],
                         **{k: v for k, v in s.items() if k != "per_s"}, "imgs_per_s": round(s["per_s"], 4),
                         "utilisation": flops.utilisation(counted["total"], s["per_s"], peak[dtype]["median"])}
        if name in chosen:
            results[name].update(gain(times["seglab"], times[name]))
    failed = {name: i for name, i in info.items() if "error" in i}
    sl = results["seglab"]
    report = {
        "benchmark": "train",
        "preset": preset,
        "command": command_line(),
        "img_per_s": sl["imgs_per_s"],
        "gflop_per_img": round(counted["total"] / 1e9, 3),
        "share_of_bf16_peak": round(counted["total"] * sl["imgs_per_s"] / peak["bfloat16"]["median"], 4),
        "matmul_peak_gflops": round(peak["bfloat16"]["median"] / 1e9, 1),
        "matmul_peak_spread": peak["bfloat16"]["spread"],
        "peak_unstable": peak["unstable"],
        "setup": {"data": str(source.root), "model": spec, "size": list(size), "batch": batch,
                  "train_images": sum(len(source.split(n)) for n in cfg.data.trains_on()), "train_splits": cfg.data.train_splits,
                  "loss": cfg.train.loss, "optimizer": cfg.train.optimizer, "warmup_steps": warmup,
                  "rounds": rounds, "timed_steps_per_path": rounds * (per_round - 1)},
        "paths": results,
        "compute": {"train_flops_per_image": counted["total"],
                    "grouped_conv_flops_per_image": counted["grouped_conv"],
                    "matmul_peak_flops": peak,
                    "note": "utilisation = train FLOPs/image x images/s / median matmul peak of the path's dtype "
                            "(bf16 for bf16-mixed, else fp32); each peak measurement is the better of 1 thread and "
                            "all usable CPUs, taken before, between and after the timed rounds"},
        "machine": machine,
    }
    if preset:
        report["variants"] = {"helps_if": f"median gain over rounds > {MIN_GAIN:.0%} in >= {MIN_ROUNDS} rounds",
                              "kept": [n for n in chosen if results.get(n, {}).get("helps")],
                              "failed": failed,
                              "adamw_step_s": adamw_step_s(list(paths["seglab"].module.parameters())),
                              "loss_step_s": loss_step_s(paths["seglab"].module.criterion, source.classes.num_classes,
                                                         batch, size)}
    else:
        report["speedup"] = sl["imgs_per_s"] / results["notebook"]["imgs_per_s"]
    if profiled:
        report["profile"] = step_profile.summarise(profiled.ops, profiled.wall_s, profile_steps,
                                                   (counted["total"] - counted["grouped_conv"]) * batch,
                                                   counted["grouped_conv"] * batch)
    finish(report, out)
    if show:
        _print(report)
    return report


def _profile(path: SeglabPath, steps: int) -> step_profile.ProfileSteps:
    """Profile ``steps`` steps of ``path`` after one untraced step, its loss inside a named scope."""
    probe = step_profile.ProfileSteps(steps)
    criterion = path.module.criterion
    path.module.criterion = step_profile.ScopedLoss(criterion)
    try:
        path.run(steps + 1, callbacks=[probe])
    finally:
        path.module.criterion = criterion
    return probe


def _print(report: dict) -> None:
    paths = report["paths"]
    rows = [[name, p["precision"], p["imgs_per_s"], 1000 * p["step_s_median"], p["utilisation"], p.get("gain"),
             p["loader_imgs_per_s"], p["peak_rss_mb"], p["setup_s"]] for name, p in paths.items()]
    s, peak = report["setup"], report["compute"]["matmul_peak_flops"]
    ratio = f"speedup {report['speedup']:.2f}x  " if "speedup" in report else ""
    print_table(f"training: {report['preset'] or s['model']} {s['size'][0]}x{s['size'][1]} batch {s['batch']}",
                ["path", "precision", "img/s", "step ms", "of peak", "gain", "loader img/s", "peak RSS MB",
                 "setup s"], rows,
                footer=f"{ratio}({report['machine']['cpu']}; bf16 peak {report['matmul_peak_gflops']} GFLOP/s, "
                       f"spread {100 * peak['bfloat16']['spread']:.0f}% over {peak['bfloat16']['measurements']}; "
                       f"threads: " + ", ".join(f"{n} {p['threads']}" for n, p in paths.items()) + ")")
    for name, entry in report.get("variants", {}).get("failed", {}).items():
        print(f"{name}: not measured ({entry['error']})")
    if "profile" in report:
        prof = report["profile"]
        print_table(f"profile: {prof['steps']} steps of {prof['step_s']:.2f} s (self time per category)",
                    ["category", "s/step", "share"],
                    [[c, s, prof["category_share"][c]] for c, s in prof["category_s_per_step"].items()],
                    footer=f"dense conv/matmul {prof['dense_gflop_per_s']} GFLOP/s, depthwise "
                           f"{prof['depthwise_gflop_per_s']} GFLOP/s")
        print_table("top ops by self time", ["op", "category", "s/step", "share"],
                    [[o["op"], o["category"], o["self_s_per_step"], o["share"]] for o in prof["top_ops"]])
