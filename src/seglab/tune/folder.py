"""A tune's folder, ``runs/tunes/<name>/``: everything a search needs to resume and to be read later.

    tune.yaml          the tune file as it was run
    optuna.db          the Optuna study (SQLite; --storage puts it in any database Optuna accepts)
    calibration.json   the step cost of each trial cost, measured once: every trial of a cost does the same work
    trials/<trial>/    one run folder per trial (checkpoints: a promoted trial continues from its own)
    reruns/<run>/      the finalists re-trained with fresh seeds at the full budget
    tune.json          the record: trials, rungs, finalists, their re-runs, the winner and its test figures
    winner.yaml        the winner's config, for ``seglab train --config``
    report.md, report.html, report_files/
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from seglab.runs import RunDir


@dataclass
class TuneDir:
    path: Path
    spec: Path = field(init=False)
    calibration: Path = field(init=False)
    record: Path = field(init=False)
    winner: Path = field(init=False)
    trials: Path = field(init=False)
    reruns: Path = field(init=False)
    files: Path = field(init=False)

    def __post_init__(self):
        self.path = Path(self.path)
        self.spec, self.calibration, self.record, self.winner = (
            self.path / f for f in ("tune.yaml", "calibration.json", "tune.json", "winner.yaml"))
        self.trials, self.reruns, self.files = (self.path / f for f in ("trials", "reruns", "report_files"))

    @property
    def storage(self) -> str:
        """The default Optuna storage: SQLite in the folder (an absolute URL, whatever the working folder)."""
        return f"sqlite:///{(self.path / 'optuna.db').resolve()}"

    def run(self, key: str, rerun: bool = False) -> RunDir:
        return RunDir((self.reruns if rerun else self.trials) / key)
