"""The run folder, the one contract for everything on disk: where each artefact lives, and typed readers
and writers for it. Training writes through ``RunDir``; evaluate, predict, the study comparison, figures
and the report read through it, so a format changes in one place. A trained model is read without
Lightning (``read_trained``), weights-only, so an untrusted checkpoint cannot run code.

    runs/<name>/
        config.yaml          fully resolved config
        classes.json         class names, display colours and mask values, index = model output
        run.json             status, timings, model facts, environment (and the MLflow or W&B run it logs to)
        metrics.csv          one row per validation
        metrics.json         test metrics of the best checkpoint (metrics_<split>.json for other splits)
        per_image_test.npz   one confusion matrix per test image (for bootstrap intervals), same checkpoint
        checkpoints/best.ckpt, checkpoints/last.ckpt
        logs/                Lightning's step-level log
        tb/, wandb/          TensorBoard's and W&B's logs, when train.loggers names them
        .lock                who is writing the folder right now (pid, host), while a run trains or is scored

folder.py is the folder contract (RunDir, and StudyDir for a study's folder), files.py how each record is
read and written (atomically), trained.py reading a trained model from a folder or a checkpoint, lock.py the one-writer lock.
"""

from seglab.runs.files import read_json, read_metrics_csv, write_atomically, write_json, write_text
from seglab.runs.folder import RunDir, StudyDir
from seglab.runs.lock import RunBusy, claim
from seglab.runs.trained import (
    TrainedModel,
    checkpoint_key,
    load_checkpoint,
    read_trained,
    resolve_checkpoint,
)

__all__ = [
    "RunBusy",
    "RunDir",
    "StudyDir",
    "TrainedModel",
    "checkpoint_key",
    "claim",
    "load_checkpoint",
    "read_json",
    "read_metrics_csv",
    "read_trained",
    "resolve_checkpoint",
    "write_atomically",
    "write_json",
    "write_text",
]
