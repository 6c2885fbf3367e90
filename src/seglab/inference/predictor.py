"""Predict label masks for images of any size, with a PyTorch model or an ONNX Runtime session.

Every image goes through one path: pad to a multiple of 32 (what the encoders need), cut into tiles of at
most ``tile`` x ``tile`` pixels that overlap by ``overlap``, run the tiles in batches, blend their softmax
probabilities with weights that fall off towards tile edges (where a tile lacks context), and crop back to
the input size. An image that fits in one tile is one forward pass; same-size small images share a batch.

Tiles are processed one row band at a time, and finished rows are handed on at once, so memory holds one
batch of tiles plus a (C, tile, W) accumulator, however tall the image is.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from seglab.constants import SIZE_DIVISOR
from seglab.data.classes import ClassSet, default_colors
from seglab.data.transforms import resize_image
from seglab.errors import SeglabError, first_line
from seglab.inference.io import to_rgb
from seglab.models.tta import TTA_SCALES, tta_logits
from seglab.training.device import resolve_precision

ImageLike = np.ndarray | Image.Image


def _ceil(n: int, k: int = SIZE_DIVISOR) -> int:
    return -(-n // k) * k


def resolve_device(device: str | None) -> torch.device:
    """'auto' (or None): the GPU when there is one, else the CPU; anything else as torch spells it."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise SeglabError(f"--device {device!r}: use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and (not torch.cuda.is_available() or (dev.index or 0) >= torch.cuda.device_count()):
        have = f"{torch.cuda.device_count()} CUDA device(s)" if torch.cuda.is_available() else "no CUDA device"
        raise SeglabError(f"--device {device}: this machine has {have}; use auto or cpu")
    return dev


class TorchBackend:
    """A SegmentationNet in eval mode on one device; ``amp`` runs it under autocast (bf16 on CPU, fp16 or
    bf16 on CUDA) with channels-last memory. ``amp=None`` follows training's ``precision: auto``: on for
    CUDA and for CPUs with bf16 units (about 2.5x faster here, >99.5% of pixels as in fp32), else off."""

    fixed_size: tuple[int, int] | None = None  # any H, W divisible by 32 works
    max_batch: int | None = None

    def __init__(self, model: torch.nn.Module, device: str | None = "auto", amp: bool | None = None):
        self.device = resolve_device(device)
        self.model = model.eval().to(self.device)
        if amp is None:
            amp = resolve_precision("auto", self.device.type) != "32"
        self.amp = amp
        if amp:
            self.model = self.model.to(memory_format=torch.channels_last)
        cuda_bf16 = self.device.type == "cuda" and torch.cuda.is_bf16_supported()
        self.amp_dtype = torch.bfloat16 if self.device.type == "cpu" or cuda_bf16 else torch.float16

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) uint8 -> (B, C, H, W) float32 logits on the CPU."""
        x = images.to(self.device, non_blocking=True)
        if self.amp:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp):
            logits = self.model(x)
        return logits.float().cpu()


class OnnxBackend:
    """An exported model run by ONNX Runtime (CUDA provider when asked for and present, else CPU).

    Input (B, 3, H, W) float32 in 0..255, output logits. A static export fixes H, W (and maybe B); the
    predictor then pads to, and tiles with, that size.
    """

    def __init__(self, path: Path, device: str | None = "auto"):
        import onnxruntime as ort

        want_cuda = device not in ("cpu",) and "CUDAExecutionProvider" in ort.get_available_providers()
        providers = (["CUDAExecutionProvider"] if want_cuda else []) + ["CPUExecutionProvider"]
        try:
            self.session = ort.InferenceSession(str(path), providers=providers)
        except Exception as e:  # noqa: BLE001 - ORT raises its own Fail/InvalidGraph/... types
            raise SeglabError(f"{path}: not a usable ONNX model ({first_line(e, 160)})") from None
        inp, out = self.session.get_inputs()[0], self.session.get_outputs()[0]
        if len(inp.shape) != 4 or len(out.shape) != 4:
            raise SeglabError(f"{path}: expected an image model, (B, 3, H, W) -> (B, C, H, W); "
                              f"got {inp.shape} -> {out.shape}")
        self.input_name = inp.name
        b, _, h, w = inp.shape  # entries are ints (static) or names (dynamic)
        self.fixed_size = (h, w) if isinstance(h, int) and isinstance(w, int) else None
        self.max_batch = b if isinstance(b, int) else None
        self.num_classes = out.shape[1] if isinstance(out.shape[1], int) else None
        self.metadata = self.session.get_modelmeta().custom_metadata_map

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = images.numpy().astype(np.float32)  # (B, 3, H, W)
        (logits,) = self.session.run(None, {self.input_name: x})
        return torch.from_numpy(logits)


Backend = TorchBackend | OnnxBackend


class Predictor:
    """Label masks (or class probabilities) for RGB, grey, RGBA or 16-bit images of any size.

    Args:
        backend: TorchBackend or OnnxBackend.
        classes: class names and colours, for palettes and overlays.
        tile: largest tile side in pixels (a multiple of 32); bounds the memory of one forward pass.
        overlap: pixels shared by neighbouring tiles (a multiple of 32); cover the receptive field you need.
        batch_size: images or tiles per forward pass.
        input_size: (H, W) the model was trained at: each image is resized to it and the prediction
            resized back, so the model sees objects at the scale it learned. None: native resolution,
            padded (and tiled when large).
        tta: test-time augmentation of every forward pass (none, flip, flip+scales), as evaluation does.
    """

    def __init__(self, backend: Backend, classes: ClassSet, tile: int = 1024, overlap: int = 128,
                 batch_size: int = 4, input_size: tuple[int, int] | None = None, tta: str = "none"):
        if tta not in TTA_SCALES:
            raise SeglabError(f"--tta {tta!r}: choose one of {', '.join(TTA_SCALES)}")
        if backend.fixed_size and len(TTA_SCALES[tta]) > 1:
            raise SeglabError(f"--tta {tta}: rescaled views need a model that takes any input size, and this "
                              f"export takes only {backend.fixed_size[0]}x{backend.fixed_size[1]}; use --tta flip "
                              "or an export made with --dynamic")
        self.tta = tta
        if tile <= 0 or tile % SIZE_DIVISOR or overlap < 0 or overlap % SIZE_DIVISOR or overlap >= tile:
            raise SeglabError(f"--tile {tile} --overlap {overlap}: need multiples of 32 with 0 <= overlap < tile")
        if batch_size < 1:
            raise SeglabError(f"--batch {batch_size}: must be at least 1")
        self.backend, self.classes = backend, classes
        self.tile, self.overlap = tile, overlap
        self.batch_size = min(batch_size, backend.max_batch or batch_size)
        self.input_size = tuple(input_size) if input_size else None
        if backend.fixed_size and self.input_size and tuple(backend.fixed_size) != self.input_size:
            self.input_size = tuple(backend.fixed_size)  # a static ONNX file takes only its own size

    @property
    def num_classes(self) -> int:
        return self.classes.num_classes

    def palette(self) -> np.ndarray:
        return self.classes.palette()

    def predict(self, image: ImageLike) -> np.ndarray:
        """(H, W) uint8 class indices, the same size as ``image``."""
        return self.predict_batch([image])[0]

    def predict_proba(self, image: ImageLike) -> np.ndarray:
        """(C, H, W) float32 softmax probabilities (they sum to 1 over C)."""
        return self.predict_batch([image], proba=True)[0]

    def predict_batch(self, images: Sequence[ImageLike], proba: bool = False) -> list[np.ndarray]:
        """Masks (or probabilities) for several images; same-size images that fit one tile share batches."""
        arrays = [to_rgb(im) for im in images]
        if self.input_size:
            return self._predict_resized(arrays, proba)
        out: list[np.ndarray | None] = [None] * len(arrays)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, a in enumerate(arrays):
            groups.setdefault(a.shape[:2], []).append(i)
        for (h, w), idx in groups.items():
            if self._layout(h, w)[2:] == ([0], [0]):  # one tile each: batch the images themselves
                for s in range(0, len(idx), self.batch_size):
                    chunk = idx[s:s + self.batch_size]
                    tiles = torch.stack([self._padded(arrays[i]) for i in chunk])  # (n, 3, Hp, Wp)
                    probs = self._forward(tiles)[:, :, :h, :w]  # (n, C, H, W)
                    for i, p in zip(chunk, probs):
                        out[i] = p.contiguous().numpy() if proba else p.argmax(0).to(torch.uint8).numpy()
            else:
                for i in idx:
                    out[i] = self._assemble(arrays[i], proba)
        return out

    def _predict_resized(self, arrays: list[np.ndarray], proba: bool) -> list[np.ndarray]:
        """Resize to the training scale, predict in batches, resize probabilities back to each image."""
        h, w = self.input_size
        out = []
        for s in range(0, len(arrays), self.batch_size):
            chunk = arrays[s:s + self.batch_size]
            small = [resize_image(a, (h, w)) for a in chunk]
            logits = self._logits(torch.stack([torch.from_numpy(a).permute(2, 0, 1) for a in small]))  # (n,C,h,w)
            for a, z in zip(chunk, logits):
                # logits, not probabilities, are upsampled: exactly what `seglab evaluate` scores
                H, W = a.shape[:2]
                result = np.empty((self.num_classes, H, W) if proba else (H, W), np.float32 if proba else np.uint8)
                for y0, band in upsample_rows(z, H, W, rows=max(1, self.tile * self.tile // max(W, 1))):
                    if proba:
                        result[:, y0:y0 + band.shape[1]] = band.softmax(0).numpy()
                    else:
                        result[y0:y0 + band.shape[1]] = band.argmax(0).to(torch.uint8).numpy()
                out.append(result)
        return out

    # -----------------------------------------------------------------------------------------------

    def _tile_shape(self, h: int, w: int) -> tuple[int, int]:
        if self.backend.fixed_size:
            return self.backend.fixed_size
        return min(self.tile, _ceil(h)), min(self.tile, _ceil(w))

    def _overlap(self, tile: int) -> int:
        """The overlap, shrunk where a tile is small (static ONNX sizes) so tiles still advance."""
        return max(0, min(self.overlap, tile - SIZE_DIVISOR))

    def _layout(self, h: int, w: int) -> tuple[int, int, list[int], list[int]]:
        """Padded size and the top/left corners of the tiles that cover it."""
        th, tw = self._tile_shape(h, w)
        hp, wp = max(_ceil(h), th), max(_ceil(w), tw)
        return hp, wp, _starts(hp, th, self._overlap(th)), _starts(wp, tw, self._overlap(tw))

    def _padded(self, image: np.ndarray) -> torch.Tensor:
        """(3, Hp, Wp) uint8: edge pixels repeated, so the border looks like the image, not like black."""
        h, w = image.shape[:2]
        hp, wp = self._layout(h, w)[:2]
        image = np.pad(image, ((0, hp - h), (0, wp - w), (0, 0)), mode="edge")
        return torch.from_numpy(image).permute(2, 0, 1)  # (H, W, 3) -> (3, H, W)

    def _forward(self, tiles: torch.Tensor) -> torch.Tensor:
        """(N, 3, th, tw) uint8 -> (N, C, th, tw) float32 probabilities, ``batch_size`` tiles at a time."""
        return self._logits(tiles).softmax(1)

    def _logits(self, tiles: torch.Tensor) -> torch.Tensor:
        out = torch.cat([tta_logits(self.backend, tiles[s:s + self.batch_size], self.tta).float()
                         for s in range(0, len(tiles), self.batch_size)])
        if out.shape[1] != self.num_classes:
            raise SeglabError(f"model outputs {out.shape[1]} classes but {self.num_classes} class names are "
                              "known; the class list does not belong to this model")
        return out

    def _assemble(self, image: np.ndarray, proba: bool) -> np.ndarray:
        h, w = image.shape[:2]
        out = np.empty((self.num_classes, h, w) if proba else (h, w), np.float32 if proba else np.uint8)
        for y0, band in self._bands(image):
            rows = slice(y0, y0 + band.shape[1])
            if proba:
                out[:, rows] = band.numpy()
            else:
                out[rows] = band.argmax(0).to(torch.uint8).numpy()
        return out

    def _bands(self, image: np.ndarray) -> Iterator[tuple[int, torch.Tensor]]:
        """(first row, (C, rows, W) probabilities) for consecutive bands of finished rows, top to bottom."""
        h, w = image.shape[:2]
        _, wp, ys, xs = self._layout(h, w)
        th, tw = self._tile_shape(h, w)
        padded = self._padded(image)  # (3, Hp, Wp)
        wx = [_window(tw, self._overlap(tw), x == xs[0], x == xs[-1]) for x in xs]
        acc = torch.zeros(self.num_classes, th, wp)  # rows [y, y + th) of the padded image
        weight = torch.zeros(th, wp)
        for i, y in enumerate(ys):
            wy = _window(th, self._overlap(th), i == 0, i == len(ys) - 1)[:, None]  # (th, 1)
            for s in range(0, len(xs), self.batch_size):  # one batch of tiles in memory at a time
                cols = xs[s:s + self.batch_size]
                tiles = torch.stack([padded[:, y:y + th, x:x + tw] for x in cols])  # (n, 3, th, tw)
                for x, p, w_x in zip(cols, self._forward(tiles), wx[s:s + self.batch_size]):
                    window = wy * w_x  # (th, tw)
                    acc[:, :, x:x + tw] += p * window
                    weight[:, x:x + tw] += window
            done = (ys[i + 1] if i + 1 < len(ys) else y + th) - y  # rows no later tile touches
            if y < h:
                rows = min(done, h - y)
                yield y, acc[:, :rows, :w] / weight[:rows, :w]
            acc = torch.cat([acc[:, done:], torch.zeros(self.num_classes, done, wp)], dim=1)
            weight = torch.cat([weight[done:], torch.zeros(done, wp)])


def upsample_rows(logits: torch.Tensor, H: int, W: int, rows: int) -> Iterator[tuple[int, torch.Tensor]]:
    """Bilinear upsampling of (C, h, w) logits to (C, H, W), ``rows`` output rows at a time, so a huge
    image never holds C x H x W floats. grid_sample with these coordinates samples exactly where
    ``F.interpolate(mode="bilinear", align_corners=False)`` does (border clamping included)."""
    xs = (torch.arange(W, dtype=torch.float32) + 0.5) * 2 / W - 1  # output pixel centres in [-1, 1]
    for y0 in range(0, H, rows):
        ys = (torch.arange(y0, min(y0 + rows, H), dtype=torch.float32) + 0.5) * 2 / H - 1
        grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)[None]  # (1, rows, W, 2) as (x, y)
        yield y0, F.grid_sample(logits[None], grid, mode="bilinear", padding_mode="border",
                                align_corners=False)[0]


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


# ---------------------------------------------------------------------------------------------------
# Loading


def load(target: str | Path, device: str | None = "auto", amp: bool | None = None, tile: int = 1024,
         overlap: int = 128, batch_size: int = 4, input_size: tuple[int, int] | str | None = None,
         tta: str | None = None) -> Predictor:
    """A Predictor from a run folder, a ``.ckpt``, a ``save_pretrained`` folder or an ``.onnx`` file.

    ``input_size``: None uses the scale the model was trained at (stored with it); "native" or (H, W) override.
    ``tta``: None uses the run's test-time augmentation (none for exported files); or none, flip, flip+scales.
    Nothing loaded here can run code: checkpoints are read weights-only, pretrained folders are safetensors,
    ONNX files are graphs.
    """
    path = Path(target)
    options = {"tile": tile, "overlap": overlap, "batch_size": batch_size, "tta": tta or "none"}

    def size(stored) -> tuple[int, int] | None:
        chosen = stored if input_size is None else input_size
        return None if chosen in (None, "native") else tuple(chosen)

    if path.suffix.lower() == ".onnx":
        if not path.is_file():
            raise SeglabError(f"{path}: no such ONNX file")
        backend = OnnxBackend(path, device)
        meta = json.loads(backend.metadata.get("seglab", "{}"))
        return Predictor(backend, _onnx_classes(backend, path), input_size=size(meta.get("input_size")), **options)
    if path.is_dir() and (path / "seglab.json").is_file():
        from seglab.inference.export import load_pretrained

        model, classes = load_pretrained(path)
        stored = json.loads((path / "seglab.json").read_text()).get("input_size")
        return Predictor(TorchBackend(model, device, amp), classes, input_size=size(stored), **options)
    from seglab.runs import read_trained

    trained = read_trained(path)
    options["tta"] = tta or trained.config.data.tta
    return Predictor(TorchBackend(trained.build(), device, amp), trained.classes,
                     input_size=size(trained.config.data.eval_input_size()), **options)


def _onnx_classes(backend: OnnxBackend, path: Path) -> ClassSet:
    """Classes stored in the export's metadata; numbered classes for ONNX files made elsewhere."""
    if "seglab" in backend.metadata:
        meta = json.loads(backend.metadata["seglab"])
        return ClassSet.from_dict({"names": meta["class_names"], "colors": meta["class_colors"],
                                   "values": meta.get("class_values")})
    if backend.num_classes is None:
        raise SeglabError(f"{path}: no seglab metadata and no fixed class count in its output shape")
    n = backend.num_classes
    return ClassSet(tuple(f"class{i}" for i in range(n)), tuple(default_colors(n)))
