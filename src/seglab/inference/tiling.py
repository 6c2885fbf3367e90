"""Prediction at native resolution: pad, cut into overlapping tiles, blend.

Each image is padded (with black, as evaluation pads) to a multiple of SIZE_DIVISOR (what the encoders
need), cut into tiles of at most ``tile`` x ``tile`` pixels that overlap by ``overlap``, its tiles run in
batches, their softmax probabilities blended with weights that fall off towards tile edges (where a tile
lacks context), and the result cropped back to the input size. An image that fits in one tile is one forward pass; same-size
small images share a batch.

Tiles are processed one row band at a time, and finished rows are handed on at once, so memory holds one
batch of tiles plus a (C, tile, W) accumulator, however tall the image is.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from seglab.constants import SIZE_DIVISOR
from seglab.inference.forward import Forward, labels, to_batch
from seglab.sizes import round_up


class NativeTiles:
    """Masks (or probabilities) at each image's own resolution, tiled when larger than ``tile``."""

    def __init__(self, forward: Forward, tile: int, overlap: int):
        self.forward, self.tile, self.overlap = forward, tile, overlap

    def __call__(self, arrays: list[np.ndarray], proba: bool, temperature: float = 1.0) -> list[np.ndarray]:
        """(H, W, 3) uint8 images -> (H, W) uint8 masks, or (C, H, W) float32 probabilities (each tile's
        softmax(logits / ``temperature``), blended). Masks always blend plain (T = 1) probabilities."""
        out: list[np.ndarray | None] = [None] * len(arrays)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, a in enumerate(arrays):
            groups.setdefault(a.shape[:2], []).append(i)
        batch = self.forward.batch_size
        for (h, w), idx in groups.items():
            if self._layout(h, w)[2:] == ([0], [0]):  # one tile each: batch the images themselves
                for s in range(0, len(idx), batch):
                    chunk = idx[s:s + batch]
                    tiles = to_batch([self._padded(arrays[i]) for i in chunk])  # (n, 3, Hp, Wp)
                    if proba:
                        for i, p in zip(chunk, self.forward.probs(tiles, temperature)[:, :, :h, :w]):
                            out[i] = p.contiguous().numpy()
                        continue
                    # Labels need no softmax (its argmax is the logits'), and the argmax of the whole padded
                    # output, cropped after, reads memory in order: both save milliseconds per frame.
                    for i, m in zip(chunk, labels(self.forward.logits(tiles))):
                        out[i] = np.ascontiguousarray(m[:h, :w])
            else:
                for i in idx:
                    out[i] = self._assemble(arrays[i], proba, temperature if proba else 1.0)
        return out

    def _tile_shape(self, h: int, w: int) -> tuple[int, int]:
        if self.forward.backend.fixed_size:
            return self.forward.backend.fixed_size
        return min(self.tile, round_up(h)), min(self.tile, round_up(w))

    def _overlap(self, tile: int) -> int:
        """The overlap, shrunk where a tile is small (static ONNX sizes) so tiles still advance."""
        return max(0, min(self.overlap, tile - SIZE_DIVISOR))

    def _layout(self, h: int, w: int) -> tuple[int, int, list[int], list[int]]:
        """Padded size and the top/left corners of the tiles that cover it."""
        th, tw = self._tile_shape(h, w)
        hp, wp = max(round_up(h), th), max(round_up(w), tw)
        return hp, wp, _starts(hp, th, self._overlap(th)), _starts(wp, tw, self._overlap(tw))

    def _padded(self, image: np.ndarray) -> np.ndarray:
        """(Hp, Wp, 3) uint8 padded with black at the bottom and right: the padding evaluation uses
        (data/transforms.py) and training's scale-crop shows the model, so a prediction is what was scored."""
        h, w = image.shape[:2]
        hp, wp = self._layout(h, w)[:2]
        return np.pad(image, ((0, hp - h), (0, wp - w), (0, 0)))

    def _assemble(self, image: np.ndarray, proba: bool, temperature: float = 1.0) -> np.ndarray:
        h, w = image.shape[:2]
        num_classes = self.forward.num_classes
        out = np.empty((num_classes, h, w) if proba else (h, w), np.float32 if proba else np.uint8)
        for y0, band in self._bands(image, temperature):
            rows = slice(y0, y0 + band.shape[1])
            if proba:
                out[:, rows] = band.numpy()
            else:
                out[rows] = labels(band)
        return out

    def _bands(self, image: np.ndarray, temperature: float = 1.0) -> Iterator[tuple[int, torch.Tensor]]:
        """(first row, (C, rows, W) probabilities) for consecutive bands of finished rows, top to bottom."""
        h, w = image.shape[:2]
        _, wp, ys, xs = self._layout(h, w)
        th, tw = self._tile_shape(h, w)
        padded = self._padded(image)  # (Hp, Wp, 3)
        batch, num_classes = self.forward.batch_size, self.forward.num_classes
        wx = [_window(tw, self._overlap(tw), x == xs[0], x == xs[-1]) for x in xs]
        acc = torch.zeros(num_classes, th, wp)  # rows [y, y + th) of the padded image
        weight = torch.zeros(th, wp)
        for i, y in enumerate(ys):
            wy = _window(th, self._overlap(th), i == 0, i == len(ys) - 1)[:, None]  # (th, 1)
            for s in range(0, len(xs), batch):  # one batch of tiles in memory at a time
                cols = xs[s:s + batch]
                tiles = to_batch([padded[y:y + th, x:x + tw] for x in cols])  # (n, 3, th, tw)
                for x, p, w_x in zip(cols, self.forward.probs(tiles, temperature), wx[s:s + batch]):
                    window = wy * w_x  # (th, tw)
                    acc[:, :, x:x + tw] += p * window
                    weight[:, x:x + tw] += window
            done = (ys[i + 1] if i + 1 < len(ys) else y + th) - y  # rows no later tile touches
            if y < h:
                rows = min(done, h - y)
                yield y, acc[:, :rows, :w] / weight[:rows, :w]
            acc = torch.cat([acc[:, done:], torch.zeros(num_classes, done, wp)], dim=1)
            weight = torch.cat([weight[done:], torch.zeros(done, wp)])


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    """Tile corners along one axis: every ``tile - overlap`` pixels, and a last tile flush with the end."""
    stride = tile - overlap
    starts = list(range(0, length - tile + 1, stride))
    if starts[-1] != length - tile:
        starts.append(length - tile)
    return starts


def _window(n: int, overlap: int, first: bool, last: bool) -> torch.Tensor:
    """(n,) blending weights of a tile along one axis. Next to an edge that a neighbouring tile covers, the
    weight is 0 for ``overlap / 4`` pixels and rises linearly to 1 at ``overlap / 2``: seams blend smoothly,
    and every pixel comes from tiles that see at least ``overlap / 4`` pixels of context around it (so the
    result equals whole-image prediction for receptive fields up to that). Edges on the image border keep 1.
    """
    w = torch.ones(n)
    if overlap == 0:
        return w
    ramp = ((torch.arange(n) - overlap / 4) / (overlap / 4)).clamp(0, 1)  # distance from the start edge
    if not first:
        w = torch.minimum(w, ramp)
    if not last:
        w = torch.minimum(w, ramp.flip(0))
    return w
