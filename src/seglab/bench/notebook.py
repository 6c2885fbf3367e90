"""The notebook way, the baseline ``seglab bench train`` compares seglab's training with.

Re-created faithfully, so the speedup is against what the notebooks really did: a Dataset that opens,
decodes, resizes and normalises each PNG in the main process (DataLoader with num_workers=0), fp32 NCHW,
and a plain PyTorch loop with Adam and cross-entropy. Kept apart from the bench's own machinery so that
the baseline reads as the notebooks' code, and nothing of seglab's path leaks into it.
"""
from __future__ import annotations

import os
import time

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # skip albumentations' PyPI query at import
import albumentations as A
import cv2
import numpy as np
import torch
from albumentations.pytorch import ToTensorV2
from torch.utils.data import DataLoader, Dataset

from seglab.constants import IGNORE_INDEX
from seglab.models import build_model


class NotebookDataset(Dataset):
    """The notebooks' dataset: every item reads both PNGs from disk and preprocesses them again."""

    def __init__(self, samples, lut: np.ndarray, size: tuple[int, int]):
        self.samples, self.lut = samples, lut
        self.transform = A.Compose([A.Resize(*size), A.Normalize(), ToTensorV2()])  # ImageNet mean/std

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i):
        sample = self.samples[i]
        image = cv2.cvtColor(cv2.imread(str(sample.image)), cv2.COLOR_BGR2RGB)
        mask = self.lut[cv2.imread(str(sample.mask), cv2.IMREAD_GRAYSCALE)].astype(np.uint8)  # void -> 255
        out = self.transform(image=image, mask=mask)
        return out["image"], out["mask"].long()


class NotebookPath:
    """fp32, NCHW, per-item decoding in the main process, a plain PyTorch loop with Adam and CE."""

    name = "notebook"
    precision = "32"
    settle_steps = 0

    def __init__(self, source, spec: str, size: tuple[int, int], batch: int, threads: int):
        self.threads = threads
        ds = NotebookDataset(source.split("train"), source.lut, size)
        self.loader = DataLoader(ds, batch_size=batch, shuffle=True, num_workers=0, drop_last=len(ds) > batch)
        self.net = build_model(spec, source.classes.num_classes, weights="none").net  # normalised by the dataset
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=1e-3)
        self.criterion = torch.nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX)
        self._batches = iter(())

    def settings(self) -> dict:
        """What the report lists of each path's setup."""
        return {"precision": self.precision, "channels_last": False, "workers": 0, "cache": False,
                "threads": self.threads}

    def _next(self):
        try:
            return next(self._batches)
        except StopIteration:
            self._batches = iter(self.loader)
            return next(self._batches)

    def run(self, steps: int) -> list[float]:
        """Train ``steps`` steps; returns the times between consecutive step ends (steps - 1 of them)."""
        torch.set_num_threads(self.threads)
        self.net.train()
        ends = []
        for _ in range(steps):
            images, masks = self._next()
            self.optimizer.zero_grad()
            loss = self.criterion(self.net(images), masks)
            loss.backward()
            self.optimizer.step()
            ends.append(time.perf_counter())
        return list(np.diff(ends))
