"""Decode, predict and encode a video at the same time, and time each stage.

OpenCV releases the GIL while it decodes and encodes, so a reader thread and a writer thread overlap with
the model in the calling thread; bounded queues hold at most a few batches, so memory does not grow with the
video. Batches keep their order (one producer and one consumer per queue). Whatever a worker raises is
raised again in the calling thread once both workers are joined; they are joined on every exit, Ctrl-C and
errors included.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

DEPTH = 2  # batches each queue holds
_POLL = 0.05  # seconds a blocked queue call waits before it looks whether the stream was stopped
_END, _STOPPED = object(), object()


@dataclass
class StreamStats:
    """Per batch: its frames and the seconds each stage was busy with it; and when each batch entered the
    model and the last one was written, for the sustained rate."""

    sizes: list[int] = field(default_factory=list)
    decode: list[float] = field(default_factory=list)
    model: list[float] = field(default_factory=list)
    encode: list[float] = field(default_factory=list)
    entered: list[float] = field(default_factory=list)  # time.monotonic() each batch reached the model
    start: float = 0.0
    end: float = 0.0

    @property
    def frames(self) -> int:
        return sum(self.sizes)

    @property
    def warmup(self) -> int:
        """Batches left out of the rates: the first (model warm-up, queues filling) when there are others."""
        return 1 if len(self.sizes) > 1 else 0

    @property
    def steady_frames(self) -> int:
        return sum(self.sizes[self.warmup:])

    @property
    def steady_seconds(self) -> float:
        """From the second batch entering the model to the last frame written (from the start for one batch)."""
        return self.end - (self.entered[1] if self.warmup else self.start)

    @property
    def fps(self) -> float:
        return self.steady_frames / max(self.steady_seconds, 1e-9)

    def stage_fps(self, stage: str) -> float:
        """Frames per second one stage alone would sustain: the slowest stage is the bottleneck."""
        return self.steady_frames / max(sum(getattr(self, stage)[self.warmup:]), 1e-9)

    def describe(self) -> str:
        """E.g. '300 frames, 24.6 FPS sustained after the first batch (decode 410, model 25.1, encode 300 FPS)'."""
        which = "after the first batch" if self.warmup else "(one batch, warm-up included)"
        stages = ", ".join(f"{s} {_rate(self.stage_fps(s))}" for s in ("decode", "model", "encode"))
        return f"{self.frames} frames, {_rate(self.fps)} FPS sustained {which} ({stages} FPS)"


def _rate(fps: float) -> str:
    return f"{fps:.1f}" if fps < 100 else f"{fps:.0f}"


def run(source: Iterator[list], model: Callable[[list], list], sink: Callable[[list, list], None],
        depth: int = DEPTH) -> StreamStats:
    """Feed each batch of ``source`` (read in a thread; closed at the end) to ``model`` here, and each batch
    with its results to ``sink(batch, results)`` in another thread, in order."""
    stats, stop, errors = StreamStats(), threading.Event(), []
    decoded: queue.Queue = queue.Queue(depth)
    predicted: queue.Queue = queue.Queue(depth)

    def worker(body):
        def guarded():
            try:
                body()
            except BaseException as e:  # noqa: BLE001 - raised again in the calling thread
                errors.append(e)
                stop.set()
        return threading.Thread(target=guarded, name=f"seglab-{body.__name__}", daemon=True)

    def decode():
        try:
            t = time.monotonic()
            for batch in source:
                stats.decode.append(time.monotonic() - t)  # not counting waits for a free place in the queue
                if not _put(decoded, batch, stop):
                    return
                t = time.monotonic()
            _put(decoded, _END, stop)
        finally:
            getattr(source, "close", lambda: None)()

    def encode():
        while (item := _get(predicted, stop)) is not _END and item is not _STOPPED:
            _timed(sink, stats.encode, *item)
        stats.end = time.monotonic()

    threads = [worker(decode), worker(encode)]
    stats.start = time.monotonic()
    for t in threads:
        t.start()
    try:
        while (batch := _get(decoded, stop)) is not _END and batch is not _STOPPED:
            stats.entered.append(time.monotonic())
            results = _timed(model, stats.model, batch)
            stats.sizes.append(len(batch))
            if not _put(predicted, (batch, results), stop):
                break
        _put(predicted, _END, stop)
        threads[1].join()  # the writer finishes what is queued
    finally:
        stop.set()
        for t in threads:
            t.join()
    if errors:
        raise errors[0]
    return stats


def _timed(fn, seconds: list[float], *args):
    """``fn(*args)``, adding the seconds it took to ``seconds``."""
    t = time.monotonic()
    result = fn(*args)
    seconds.append(time.monotonic() - t)
    return result


def _put(q: queue.Queue, item, stop: threading.Event) -> bool:
    """Put ``item`` unless the stream stops first (then False): a full queue never blocks a finished stream."""
    while not stop.is_set():
        try:
            q.put(item, timeout=_POLL)
            return True
        except queue.Full:
            continue
    return False


def _get(q: queue.Queue, stop: threading.Event):
    """The next item, or ``_STOPPED`` once the stream stops."""
    while not stop.is_set():
        try:
            return q.get(timeout=_POLL)
        except queue.Empty:
            continue
    return _STOPPED
