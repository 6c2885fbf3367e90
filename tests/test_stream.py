"""Video streaming: decode, model and encode in three threads keep every frame in order, surface a worker's
error in the caller as the usual skip message, and always join their threads. No test asserts a speed."""

from __future__ import annotations

import re
import threading
import time

import pytest

from seglab.errors import SeglabError
from seglab.inference import stream


@pytest.fixture(autouse=True)
def no_thread_left():
    """Every test ends with as many threads as it began with: the stream joined its workers."""
    before = threading.active_count()
    yield
    assert threading.active_count() == before


def batches(n: int, size: int = 3, closed: list | None = None, fail_at: int | None = None):
    """``n`` batches of consecutive integers; raises SeglabError at batch ``fail_at``; notes being closed."""
    try:
        for b in range(n):
            if b == fail_at:
                raise SeglabError(f"clip.mp4: cannot decode frame {b * size + 1}")
            yield list(range(b * size, (b + 1) * size))
    finally:
        if closed is not None:
            closed.append(True)


def test_batches_come_out_in_order_and_complete():
    seen, closed = [], []

    def model(batch):
        time.sleep(0.002 * (batch[0] % 3))  # uneven stage times shuffle which thread waits
        return [x * 10 for x in batch]

    stats = stream.run(batches(20, closed=closed), model, lambda b, r: seen.extend(zip(b, r)))
    assert seen == [(x, 10 * x) for x in range(60)] and closed == [True]
    assert stats.frames == 60 and stats.steady_frames == 57 and stats.sizes == [3] * 20
    assert len(stats.decode) == len(stats.model) == len(stats.encode) == 20


@pytest.mark.parametrize("stage", ["decode", "model", "encode"])
def test_an_error_in_any_stage_reaches_the_caller(stage):
    """A failing reader, model or writer stops the stream: the same exception is raised here, no hang, and
    the reader is closed (the capture released) though most of the video was never read."""
    closed, error = [], SeglabError("clip.mp4: cannot decode frame 7") if stage == "decode" else ValueError("x")

    def fail_on_third(batch, *_):
        if batch[0] == 6:
            raise error
        return batch

    source = batches(10_000, closed=closed, fail_at=2 if stage == "decode" else None)
    with pytest.raises(type(error)) as raised:
        stream.run(source, fail_on_third if stage == "model" else list,
                   fail_on_third if stage == "encode" else lambda b, r: None)
    assert str(raised.value) == str(error)
    assert closed == [True]


def test_ctrl_c_in_the_model_joins_the_workers():
    def interrupted(batch):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        stream.run(batches(10_000), interrupted, lambda b, r: None)


def test_describe_names_the_rates_and_what_they_leave_out():
    stats = stream.run(batches(4), list, lambda b, r: None)
    assert re.fullmatch(r"12 frames, [0-9.]+ FPS sustained after the first batch "
                        r"\(decode [0-9.]+, model [0-9.]+, encode [0-9.]+ FPS\)", stats.describe())
    one = stream.run(batches(1), list, lambda b, r: None)
    assert one.steady_frames == 3 and "(one batch, warm-up included)" in one.describe()
