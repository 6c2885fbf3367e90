"""One writer per run folder: ``claim(folder)`` takes ``<folder>/.lock`` for this process, or refuses in one line.

Two ``seglab train --name same`` started a second apart used to train into the same folder, each overwriting
the other's checkpoints and records. The lock is an exclusive ``flock`` held on ``.lock`` for as long as the
run writes its folder, and the file says who holds it (pid, host, start time), for the refusal message.

Why ``flock`` and not a bare O_EXCL file: the kernel arbitrates it atomically (two processes racing for a new
folder: exactly one wins) and drops it the moment its holder dies, however it dies (SIGKILL, OOM killer, power
cut on a local disk). A lock file left by a killed run is therefore recognised as stale exactly, also when its
pid has since been reused by an unrelated process, and the next claim (a resume, a study rerun) takes it over
with one log line instead of being blocked forever. Where the filesystem has no ``flock`` (some network
mounts) the holder's pid on this host decides instead.

Claims nest within one process (``seglab.experiment.train`` holds the lock across training and scoring, and
the training loop claims it again): the lock is released when the outermost claim ends, normally, on an
error or on Ctrl-C. Folders the claim created (the run's, and its parents) that stayed empty are removed again.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from seglab.errors import SeglabError
from seglab.runs.files import read_json

log = logging.getLogger("seglab")

LOCK_NAME = ".lock"

_held: dict[Path, list] = {}  # folder -> [fd, depth, folders the claim created]: this process's claims
_guard = threading.Lock()


class RunBusy(SeglabError):
    """Another live process holds the run folder's lock."""


def lock_path(folder: Path) -> Path:
    return Path(folder) / LOCK_NAME


def read_holder(folder: Path) -> dict:
    """What ``.lock`` says about its holder ({} when missing, empty or unreadable)."""
    return read_json(lock_path(folder))


def pid_alive(pid) -> bool:
    """Whether a process with this pid runs on this host (a pid that is not a positive int never does)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def _busy(folder: Path, holder: dict) -> RunBusy:
    who = f"pid {holder['pid']}" if holder.get("pid") else "another process"
    if holder.get("host") and holder["host"] != socket.gethostname():
        who += f" on host {holder['host']}"
    since = f", since {holder['started']}" if holder.get("started") else ""
    return RunBusy(f"{folder}: another process is writing this run folder ({who}{since}); train under another "
                   f"--name, or wait for that process to finish (or stop it) and try again")


def _try_flock(fd: int) -> bool | None:
    """True: this fd now holds the lock; False: another holds it; None: the filesystem cannot flock."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        if e.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
            return None
        raise
    return True


def _acquire(folder: Path) -> int:
    """Open and lock ``.lock``, write this process into it, and return its fd; RunBusy when it is held."""
    path = lock_path(folder)
    for _ in range(20):  # only loops when the holder released (and removed) the file under us
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise SeglabError(f"{path}: cannot create the run's lock file ({e.strerror})") from None
        got = _try_flock(fd)
        holder = read_holder(folder)
        if got is None:  # no flock here: the recorded pid decides (on this host; another host's always holds)
            mine = holder.get("host", socket.gethostname()) == socket.gethostname()
            got = not holder or (mine and not pid_alive(holder.get("pid")))
        if not got:
            os.close(fd)
            raise _busy(folder, holder)
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # the holder removed the file between our open and our lock: take the new one
            os.close(fd)
            continue
        if holder.get("pid") and holder.get("pid") != os.getpid():
            log.warning("%s: taking over the lock left by pid %s%s, which is no longer running", folder,
                        holder["pid"], f" on {holder['host']}" if holder.get("host") else "")
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                             "started": time.strftime("%Y-%m-%d %H:%M:%S")}) + "\n"
        os.ftruncate(fd, 0)
        os.pwrite(fd, record.encode(), 0)
        os.fsync(fd)
        return fd
    raise _busy(folder, read_holder(folder))


@contextmanager
def claim(folder: str | Path):
    """Hold ``folder``'s lock for the block (creating the folder when needed); RunBusy (a SeglabError: one line,
    exit 2) when another live process holds it. Nested claims of one folder in one process are free."""
    folder = Path(folder)
    key = folder.resolve()
    with _guard:
        entry = _held.get(key)
        if entry is not None:
            entry[1] += 1
        else:
            created = _missing_ancestors(folder)
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise SeglabError(f"{folder}: cannot create the run folder ({e.strerror})") from None
            try:
                fd = _acquire(folder)
            except BaseException:
                _remove_if_empty(created)
                raise
            entry = _held[key] = [fd, 1, created]
    try:
        yield folder
    finally:
        with _guard:
            entry[1] -= 1
            if entry[1] == 0:
                del _held[key]
                _release(folder, entry[0], entry[2])


def _release(folder: Path, fd: int, created: list[Path]) -> None:
    """Remove ``.lock`` while still holding it (so no one locks a file about to vanish), then unlock."""
    try:
        lock_path(folder).unlink(missing_ok=True)
    finally:
        os.close(fd)
    _remove_if_empty(created)


def _missing_ancestors(folder: Path) -> list[Path]:
    """``folder`` and those of its parents that do not exist yet, innermost first: what ``mkdir`` will create."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def _remove_if_empty(folders: list[Path]) -> None:
    """Remove the folders a claim created, innermost first, as long as nothing was written into them."""
    for folder in folders:
        try:
            folder.rmdir()  # only succeeds when empty
        except OSError:
            return


def held(folder: str | Path) -> bool:
    """Whether this process holds ``folder``'s lock."""
    return Path(folder).resolve() in _held
