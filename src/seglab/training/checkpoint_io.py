"""Checkpoints written the safe way, through the run folder's one atomic writer (temporary file, then rename).

A run killed while saving, or a disk that fills up mid-write, then leaves the previous checkpoint whole,
and a full disk is one line naming the file and how to go on instead of a traceback.
"""

from __future__ import annotations

from pathlib import Path

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from seglab.errors import SeglabError
from seglab.runs import write_atomically


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        path = Path(path)
        try:
            write_atomically(path, lambda f: torch.save(checkpoint, f))
        except SeglabError as e:
            raise SeglabError(f"{e}. Free some space, then continue with "
                              f"`seglab train --resume {path.parent.parent}`") from None
