"""LightningDataModule: splits, presets and loaders for one DataSource. It never builds models."""

from __future__ import annotations

import logging

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Sampler

from seglab.config.schema import DataConfig, factor_range
from seglab.constants import IGNORE_INDEX
from seglab.data.dataset import SegmentationDataset
from seglab.data.memory import CachePolicy, choose_policy, header_size
from seglab.data.sources import DataSource
from seglab.data.transforms import EvalPreset, TrainPreset

log = logging.getLogger("seglab")


def _pad_to_largest(tensors: list[torch.Tensor], value: int) -> torch.Tensor:
    h = max(t.shape[-2] for t in tensors)
    w = max(t.shape[-1] for t in tensors)
    return torch.stack([F.pad(t, (0, w - t.shape[-1], 0, h - t.shape[-2]), value=value) for t in tensors])


def pad_collate(batch):
    """Stack (image, mask) pairs, padding images and masks bottom/right to the largest of each in the batch
    (at evaluation they differ: images at the model's scale, masks at native resolution).
    Padded mask pixels are IGNORE_INDEX, so padding is never learned from or scored."""
    images, masks = zip(*batch)
    return _pad_to_largest(list(images), 0), _pad_to_largest(list(masks), IGNORE_INDEX)


def train_preset(cfg: DataConfig, size: tuple[int, int], seed: int) -> TrainPreset:
    """The training transform ``cfg`` describes, at crop ``size``."""
    return TrainPreset(size, scale_crop=cfg.scale_crop, hflip=cfg.hflip, color_jitter=cfg.color_jitter,
                       scale_range=tuple(cfg.scale_range), seed=seed, vflip=cfg.vflip, rotate=cfg.rotate,
                       brightness=factor_range(cfg.brightness), contrast=factor_range(cfg.contrast))


class EpochSampler(Sampler):
    """Shuffles the training split in an order that depends on (seed, epoch) alone, and yields (index, epoch)
    so the dataset can draw each item's augmentation from them too. A run resumed in the middle of an
    epoch sets ``skip`` to the items already trained on: it then continues exactly where it stopped, with
    the same batches and augmentations as a run that was never interrupted.

    With ``world`` processes (distributed data parallel) process ``rank`` takes every world-th item of that
    order; every process gets the same count (the last few items of an epoch's order are left out, as a
    dropped last batch is), so all take the same number of steps."""

    def __init__(self, size: int, seed: int, rank: int = 0, world: int = 1):
        self.size, self.seed, self.rank, self.world, self.epoch, self.skip = size, seed, rank, world, 0, 0

    def set_epoch(self, epoch: int) -> None:  # Lightning calls this at the start of every epoch
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size // self.world

    def __iter__(self):
        order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch))
        mine = order[self.rank:len(self) * self.world:self.world]
        start, self.skip = self.skip, 0
        return iter([(int(i), self.epoch) for i in mine[start:]])


class ShardSampler(Sampler):
    """Process ``rank`` of ``world`` evaluates items rank, rank + world, ...: every item exactly once across
    the processes, none repeated to even them out (Lightning's DistributedSampler pads with repeats, which
    would count those images twice), so the summed confusion matrices equal one process's."""

    def __init__(self, size: int, rank: int, world: int):
        self.items = range(rank, size, world)

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self):
        return iter(self.items)


class SegDataModule(L.LightningDataModule):
    """The splits of one DataSource as Lightning loaders, shaped by the run's ``data`` config."""

    def __init__(self, source: DataSource, cfg: DataConfig, eval_batch_size: int | None = None, seed: int = 0):
        super().__init__()
        self.source, self.cfg, self.seed = source, cfg, seed
        self.eval_batch_size = eval_batch_size or cfg.batch_size
        self.datasets: dict[str, SegmentationDataset] = {}
        self.test_split = "test"  # the split `trainer.test` scores; evaluate may point it at "val"
        self.train_sampler: EpochSampler | None = None
        self._policy: CachePolicy | None = None

    @property
    def policy(self) -> CachePolicy:
        """Cache or stream, decided once over every split the run caches (its training splits, val and
        test), from the files' headers, before anything is decoded."""
        if self._policy is None:
            names = dict.fromkeys([*self.train_splits, "val", self.test_split])
            lists: list[list] = []  # a split that is another's list (test = val) shares its dataset: once
            for name in names:
                if not any(self.source.splits.get(name, []) is seen for seen in lists):
                    lists.append(self.source.splits.get(name, []))
            samples = [s for split in lists for s in split]
            self._policy = choose_policy(self.cfg, samples)
            log.info(self._policy.describe())
        return self._policy

    def dataset(self, split: str) -> SegmentationDataset:
        """The split's dataset, built and decoded once (errors surface here, in the main process)."""
        if split not in self.datasets and split != "train":  # test that is val's list (benchmarks): val's dataset
            same = [ds for name, ds in self.datasets.items()
                    if name != "train" and self.source.splits.get(name) is self.source.splits.get(split)]
            if same:
                self.datasets[split] = same[0]
        if split not in self.datasets:
            c = self.cfg
            if split == "train":
                transform = train_preset(c, tuple(c.size), self.seed)
            else:
                transform = EvalPreset(c.eval_input_size())
            samples = [s for name in self.train_splits for s in self.source.split(name)] if split == "train" \
                else self.source.split(split)
            ds = SegmentationDataset(samples, self.source.lut, self.source.classes.num_classes,
                                     transform=transform, color_table=self.source.color_table,
                                     cache=self.policy.cache)
            if self.policy.cache:
                ds.preload(progress=True)
            self.datasets[split] = ds
        return self.datasets[split]

    @property
    def train_splits(self) -> list[str]:
        """The splits training draws from ("train", or e.g. "train+val" for a final model)."""
        return self.cfg.trains_on()

    def setup(self, stage: str):
        splits = {"fit": ("train", "val"), "validate": ("val",), "test": (self.test_split,)}.get(stage, ())
        for s in splits:
            self.dataset(s)

    def _processes(self) -> tuple[int, int]:
        """(rank, world size) of the run using this module: (0, 1) unless it is distributed."""
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _loader(self, split: str, shuffle: bool, batch_size: int) -> DataLoader:
        workers = self.policy.workers
        # The shuffle order depends on the seed alone (not on how much random state building the model used),
        # so configurations of a study that share a seed see the same batches: their difference is paired.
        # The loader's own generator also keeps its start-up draw off the global random state (dropout's).
        # Distributed runs split the items here (the Trainer's own distributed sampler is off, see trainer.py).
        rank, world = self._processes()
        size = len(self.dataset(split))
        sampler = EpochSampler(size, self.seed, rank, world) if shuffle else \
            ShardSampler(size, rank, world) if world > 1 else None
        if shuffle:
            self.train_sampler = sampler
        return DataLoader(self.dataset(split), batch_size=batch_size, sampler=sampler, num_workers=workers,
                          generator=torch.Generator().manual_seed(self.seed),
                          collate_fn=pad_collate, drop_last=shuffle and len(sampler) > batch_size,
                          persistent_workers=workers > 0, pin_memory=torch.cuda.is_available())

    def train_dataloader(self):
        return self._loader("train", True, self.cfg.batch_size)

    def _eval_batch_size(self, split: str) -> int:
        """Resized evaluation upsamples logits to the labels' size: labels of different sizes in one batch
        would be padded to the largest and misalign, so such splits go one image at a time."""
        if self.cfg.eval_size == "native":
            return self.eval_batch_size  # images and labels padded alike: any sizes batch together
        sizes = {header_size(s.mask or s.image) for s in self.dataset(split).samples}  # no decoding
        return self.eval_batch_size if len(sizes) == 1 else 1

    def val_dataloader(self):
        return self._loader("val", False, self._eval_batch_size("val"))

    def test_dataloader(self):
        return self._loader(self.test_split, False, self._eval_batch_size(self.test_split))
