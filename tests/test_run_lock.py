"""One writer per run folder: a second `seglab train` of a run another process is writing (fresh or resumed) is
refused in one line and leaves the first's files untouched; a lock left by a dead process is taken over; the
lock is released however the run ends; two processes racing for one new folder: exactly one wins."""

from __future__ import annotations

import errno
import json
import logging
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from fakes import assert_one_line_error, run_cli

from seglab.runs.lock import RunBusy, claim, held, read_holder

TRAIN = ["train", "--model", "scratch:simplesegnet", "--size", "64x96", "--batch", "2", "--seed", "3", "--epochs", "1"]
SRC = str(Path(__file__).resolve().parent.parent / "src")

# Claims `folder` with the real claim function, says so on stdout, and holds it until `release` exists.
HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from seglab.runs.lock import RunBusy, claim
    folder, go, release = map(Path, sys.argv[1:4])
    while not go.exists():
        time.sleep(0.001)
    try:
        with claim(folder):
            print("won", flush=True)
            while not release.exists():
                time.sleep(0.01)
    except RunBusy as e:
        print("refused:", e, flush=True)
""")


def start_holder(folder: Path, go: Path, release: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", HOLDER, str(folder), str(go), str(release)], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")})


def hold(folder: Path, tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    """Another process holding ``folder``'s lock (as a run training into it would), until the returned file exists."""
    go, release = tmp_path / "go", tmp_path / "release"
    go.touch()
    proc = start_holder(folder, go, release)
    assert proc.stdout.readline().strip() == "won", proc.stderr.read()
    return proc, release


def snapshot(folder: Path) -> dict:
    """Every file under ``folder`` with its bytes and modification time."""
    return {p.relative_to(folder): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))
            if p.is_file()}


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def trained(capsys, tiny_camvid, tmp_path) -> Path:
    r = run_cli(capsys, *TRAIN, "--data", tiny_camvid, "--out", tmp_path / "runs", "--name", "same")
    assert r.code == 0, r.err[-3000:]
    run = tmp_path / "runs" / "same"
    assert not (run / ".lock").exists() and not held(run)  # released after a normal run
    return run


def test_a_second_writer_is_refused_and_the_first_untouched(capsys, tiny_camvid, tmp_path, trained):
    proc, release = hold(trained, tmp_path)  # the first: e.g. a resume of it in progress
    try:
        before = snapshot(trained)
        again = ["--data", tiny_camvid, "--out", tmp_path / "runs", "--name", "same"]
        for args in ([*TRAIN, *again], ["train", "--resume", trained], [*TRAIN, *again, "--epochs", "2"]):
            r = run_cli(capsys, *args)
            assert_one_line_error(r, str(trained), "another process", f"pid {proc.pid}", "--name", "stop it")
            assert snapshot(trained) == before  # not a byte nor a timestamp changed, the lock file included
        assert read_holder(trained)["pid"] == proc.pid
    finally:
        release.touch()
        proc.wait(timeout=30)
    assert not (trained / ".lock").exists()
    # once the other is gone, the run resumes as usual
    r = run_cli(capsys, "train", "--resume", trained)
    assert r.code == 0, r.err[-3000:]


def test_a_fresh_name_is_refused_too_and_nothing_is_left_behind(capsys, tiny_camvid, tmp_path):
    run = tmp_path / "runs" / "new"
    proc, release = hold(run, tmp_path)  # the first has claimed the folder and written nothing yet
    try:
        r = run_cli(capsys, *TRAIN, "--data", tiny_camvid, "--out", tmp_path / "runs", "--name", "new")
        assert_one_line_error(r, str(run), f"pid {proc.pid}")
        assert [p.name for p in run.iterdir()] == [".lock"]  # the second wrote nothing
    finally:
        release.touch()
        proc.wait(timeout=30)
    assert not run.exists()  # the holder created the folder and wrote nothing into it: removed with its lock


@pytest.mark.parametrize("reused", [False, True], ids=["dead-pid", "pid-reused-by-another-process"])
def test_a_stale_lock_is_taken_over_on_resume(capsys, caplog, tmp_path, trained, reused):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"]) if reused else None
    try:
        pid = sleeper.pid if reused else dead_pid()  # a reused pid is alive, but holds no lock
        (trained / ".lock").write_text(json.dumps({"pid": pid, "host": os.uname().nodename, "started": "then"}))
        with caplog.at_level(logging.WARNING, logger="seglab"):
            r = run_cli(capsys, "train", "--resume", trained)
        assert r.code == 0, r.err[-3000:]
    finally:
        if sleeper:
            sleeper.kill()
            sleeper.wait()
    taken = [rec.getMessage() for rec in caplog.records if "taking over" in rec.getMessage()]
    assert len(taken) == 1 and f"pid {pid}" in taken[0] and str(trained) in taken[0], taken
    assert json.loads((trained / "run.json").read_text())["status"] == "finished"
    assert not (trained / ".lock").exists()


def test_the_lock_is_released_after_a_failed_and_an_interrupted_run(capsys, monkeypatch, tiny_camvid, tmp_path):
    from seglab.training.module import SegModule

    def cli(name):
        return run_cli(capsys, *TRAIN, "--data", tiny_camvid, "--out", tmp_path / "runs", "--name", name)

    def failing(self, batch, index):
        raise RuntimeError("boom")

    def ctrl_c(self, batch, index):
        raise KeyboardInterrupt

    monkeypatch.setattr(SegModule, "training_step", failing)
    with pytest.raises(RuntimeError, match="boom"):  # an unexpected error reaches the caller as it is
        cli("failed")
    monkeypatch.setattr(SegModule, "training_step", ctrl_c)
    r = cli("interrupted")
    assert r.code == 130, r.err[-3000:]
    for name in ("failed", "interrupted"):
        run = tmp_path / "runs" / name
        assert json.loads((run / "run.json").read_text())["status"] == name
        assert not (run / ".lock").exists() and not held(run), name
        with claim(run):  # free again: a new claim takes it without a word
            assert read_holder(run)["pid"] == os.getpid()


def test_racing_claims_of_a_new_folder_have_exactly_one_winner(tmp_path):
    folder, go, release = tmp_path / "runs" / "race", tmp_path / "go", tmp_path / "release"
    procs = [start_holder(folder, go, release) for _ in range(4)]
    time.sleep(1.0)  # all four started and waiting for the same moment
    go.touch()
    try:
        answers = [p.stdout.readline().strip() for p in procs]  # the losers answer and exit; the winner holds
    finally:
        release.touch()
        for p in procs:
            p.wait(timeout=30)
    assert sorted(a.split(":")[0] for a in answers) == ["refused"] * 3 + ["won"], answers
    assert all(str(folder) in a for a in answers if a.startswith("refused"))
    assert not folder.exists()


def test_claims_nest_in_one_process_and_release_at_the_outermost(tmp_path):
    run = tmp_path / "r"
    with claim(run):
        with claim(run):
            assert held(run)
        assert held(run) and (run / ".lock").exists()  # the inner claim's end did not release the outer
    assert not held(run) and not run.exists()


def test_without_flock_the_recorded_pid_decides(monkeypatch, tmp_path):
    """Filesystems without flock (some network mounts): a live pid on this host holds, a dead one is stale."""
    import fcntl

    def no_flock(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    run = tmp_path / "r"
    run.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        (run / ".lock").write_text(json.dumps({"pid": sleeper.pid, "host": os.uname().nodename}))
        with pytest.raises(RunBusy, match=f"pid {sleeper.pid}"), claim(run):
            pass
        assert read_holder(run)["pid"] == sleeper.pid  # a refused claim leaves the holder's record alone
    finally:
        sleeper.kill()
        sleeper.wait()
    (run / ".lock").write_text(json.dumps({"pid": dead_pid(), "host": os.uname().nodename}))
    with claim(run):
        assert read_holder(run)["pid"] == os.getpid()


def test_a_claim_that_wrote_nothing_removes_the_parents_it_created_and_only_those(tmp_path):
    (tmp_path / "kept").mkdir()
    with claim(tmp_path / "kept" / "runs" / "study" / "r"):
        pass
    assert (tmp_path / "kept").is_dir() and not (tmp_path / "kept" / "runs").exists()
    with claim(tmp_path / "runs" / "a"):
        (tmp_path / "runs" / "other").mkdir()  # something else was written beside the run: the parent stays
    assert not (tmp_path / "runs" / "a").exists() and (tmp_path / "runs" / "other").is_dir()
