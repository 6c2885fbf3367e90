"""Checkpoints written the safe way: to a temporary file, then renamed over the old one.

A run killed while saving, or a disk that fills up mid-write, then leaves the previous checkpoint whole
(a rename is atomic on one filesystem), and a full disk is one line naming the file instead of a traceback.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from seglab.errors import SeglabError, first_line


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with tmp.open("wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            kept = f"the previous {path.name} is left as it was" if path.is_file() else "no earlier one exists"
            raise SeglabError(f"{path}: could not write the checkpoint ({first_line(e)}); {kept}. Free some "
                              f"space, then continue with `seglab train --resume {path.parent.parent}`") from None
