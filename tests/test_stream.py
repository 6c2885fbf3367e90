"""Video streaming: decode, model and encode in three threads keep every frame in order, surface a worker's
error in the caller as the usual skip message, and always join their threads. No test asserts a speed."""

from __future__ import annotations

import re
import threading
import time

import cv2
import numpy as np
import pytest
from fakes import make_video

from seglab.data.classes import CAMVID11
from seglab.errors import SeglabError
from seglab.inference import io, stream
from seglab.inference.batch import OutputOptions, predict_paths, summary_line


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


# ---------------------------------------------------------------------------------------------------
# Videos through predict_paths, with a deterministic fake predictor


class BrightnessPredictor:
    """Class = a uniform frame's brightness // 17: a known answer for every frame, without a model."""

    classes, batch_size = CAMVID11, 4

    def palette(self):
        return CAMVID11.palette()

    def predict_batch(self, frames):
        return [np.full(f.shape[:2], int(f.mean()) // 17, np.uint8) for f in frames]


def grey_frames(n: int) -> list[np.ndarray]:
    """Uniform frames, each a different grey (8 levels from a class boundary, for lossy codecs), so each
    output frame shows which input it came from."""
    return [np.full((48, 64, 3), 8 + 17 * i, np.uint8) for i in range(n)]


def read_all(path):
    cap, _ = io.open_video(path)
    return [frame.astype(np.float32) for batch in io.read_frames(cap, 8, path) for frame in batch]


def predict(tmp_path, *inputs):
    lines = []  # alpha 0.4: the eleven expected colours lie at least 15 apart
    summary = predict_paths(BrightnessPredictor(), list(inputs), OutputOptions(tmp_path / "out", alpha=0.4),
                            echo=lambda text, err=False: lines.append(text))
    return summary, "\n".join(lines)


@pytest.mark.parametrize("ext", ["mp4", "avi"])
def test_every_frame_is_written_in_order_with_its_own_prediction(tmp_path, ext):
    frames = grey_frames(11)  # 3 batches, the last one short; each frame its own class
    clip = make_video(tmp_path / f"clip.{ext}", frames)
    summary, output = predict(tmp_path, clip)
    written = read_all(tmp_path / "out" / f"clip_overlay.{ext}")
    assert len(written) == 11 and summary.frames == 11 and summary.steady_frames == 7
    predictor = BrightnessPredictor()
    want = np.stack([io.overlay(f, m, predictor.palette(), 0.4).mean((0, 1))
                     for f, m in zip(frames, predictor.predict_batch(frames))])
    got = np.stack([frame.mean((0, 1)) for frame in written])
    distance = np.abs(got[:, None] - want[None]).max(-1)  # (written, expected): colour difference (codecs: <8)
    assert (distance.argmin(1) == np.arange(11)).all() and distance.min(1).max() < 10, distance.round()
    assert re.search(rf"{re.escape(str(clip))}: 11 frames, [0-9.]+ FPS sustained", output)
    assert re.search(r"1 video \(11 frames\) at [0-9.]+ FPS sustained", summary_line(summary, tmp_path))


def test_truncated_video_is_skipped_and_the_others_written(tmp_path):
    good = make_video(tmp_path / "good.avi", grey_frames(6))
    data = make_video(tmp_path / "whole.avi", grey_frames(10) * 2).read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) * 7 // 10])  # 7 of its 20 frames decode
    summary, output = predict(tmp_path, cut, good)
    assert re.search(rf"skipped {re.escape(str(cut))}: decoded 7 of the 20 frames it lists \(truncated", output)
    assert [p for p, _ in summary.skipped] == [cut] and summary.videos == 1 and summary.frames == 6
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good_overlay.avi"]


class FailingCapture:
    """A capture whose decoder fails at frame ``fail_at`` (1-based), as a corrupt stream can."""

    def __init__(self, fail_at: int):
        self.read_count, self.fail_at, self.released = 0, fail_at, False

    def read(self):
        self.read_count += 1
        if self.read_count == self.fail_at:
            raise cv2.error("corrupt packet")
        return True, np.zeros((48, 64, 3), np.uint8)

    def release(self):
        self.released = True


def test_decoder_failing_part_way_is_skipped_with_the_frame(tmp_path, monkeypatch):
    clip, ok = (make_video(tmp_path / name, grey_frames(3)) for name in ("clip.mp4", "ok.mp4"))
    capture, real_open = FailingCapture(fail_at=11), io.open_video
    monkeypatch.setattr(io, "open_video", lambda path: (capture, io.VideoInfo(5.0, (48, 64), 40)) if path == clip
                        else real_open(path))
    summary, output = predict(tmp_path, clip, ok)
    assert f"skipped {clip}: cannot decode frame 11 (corrupt packet)" in output.splitlines()
    assert capture.released and summary.frames == 3 and [p for p, _ in summary.skipped] == [clip]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["ok_overlay.mp4"]
