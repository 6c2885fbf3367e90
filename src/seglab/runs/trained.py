"""Reading a trained model: a run folder or a checkpoint file to config, classes and network weights.

Without Lightning and weights-only, so evaluation, prediction and export start from the same few fields
and an untrusted checkpoint cannot run code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from seglab.config import RunConfig, from_dict
from seglab.data.classes import ClassSet
from seglab.errors import SeglabError, first_line
from seglab.runs.files import load_checkpoint
from seglab.runs.folder import RunDir


def resolve_checkpoint(target: str | Path) -> tuple[Path, RunDir | None]:
    """A run folder (its best checkpoint, else its last) or a checkpoint file."""
    p = Path(target)
    if p.is_dir():
        run = RunDir(p)
        for ckpt in run.final_checkpoints():
            if ckpt.is_file():
                return ckpt, run
        raise SeglabError(f"{p}: no checkpoint in {run.checkpoints} (is this a seglab run folder?)")
    if p.is_file():
        run_path = p.parent.parent if p.parent.name == "checkpoints" else p.parent
        return p, RunDir(run_path) if (run_path / "config.yaml").exists() else None
    raise SeglabError(f"{p}: no such run folder or checkpoint file")


def checkpoint_key(path: Path) -> str:
    """Which weights a stored temperature belongs to: the checkpoint file as it is now (its name, size and
    modification time), so one fitted before the run trained on is not taken for the new weights' own.
    Evaluate stores it with the temperature; predict checks it before using one."""
    st = Path(path).stat()
    return f"{Path(path).name}:{st.st_size}:{st.st_mtime_ns}"


@dataclass
class TrainedModel:
    """What a seglab checkpoint holds, read without Lightning: the run's config, its classes and the
    network's weights. ``build()`` makes the network; evaluation and the Predictor both start from here."""

    checkpoint: Path
    run: RunDir | None
    config: RunConfig
    classes: ClassSet
    class_weights: list[float] | None
    state_dict: dict  # the network's weights (the LightningModule's "model." entries)

    def build(self):
        """The network in eval mode on the CPU, its weights loaded (no download: weights come from here)."""
        from seglab.models import build_model

        model = build_model(self.config.model.spec, self.classes.num_classes, weights="none")
        try:
            model.load_state_dict(self.state_dict)
        except RuntimeError as e:
            raise SeglabError(f"{self.checkpoint}: weights do not fit model {self.config.model.spec} "
                              f"({first_line(e, 200)})") from None
        return model.eval()


def read_trained(target: str | Path) -> TrainedModel:
    """The trained model of a run folder (its final checkpoint) or of a checkpoint file."""
    path, run = resolve_checkpoint(target)
    ckpt = load_checkpoint(path)
    hp = ckpt["hyper_parameters"]
    try:
        cfg = from_dict(hp["config"])
    except SeglabError as e:
        raise SeglabError(f"{path}: its config is not valid for this seglab ({e})") from None
    weights = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    return TrainedModel(path, run, cfg, ClassSet.from_fields(hp), hp.get("class_weights"), weights)
