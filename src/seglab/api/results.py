"""What the API's calls return: ``Run`` (a run folder), ``Study`` (a study folder), ``Metrics`` (one split's
scores) and ``DataCheck``. Each reads its folder through ``seglab.runs`` whenever asked, so a run still
training shows its latest state; each gives its tables as pandas DataFrames and shows itself in Jupyter with
the report's tables and figures (``_repr_html_``)."""

from __future__ import annotations

import functools
import html
import re
from pathlib import Path

from seglab.api.notebook import figure_html
from seglab.errors import SeglabError

SUMMARY = ("miou", "pixel_accuracy", "mean_dice", "mean_class_accuracy", "fw_iou")  # metrics.json's means
CAREFUL = ("boundary_iou", "ece", "ece_calibrated", "loss", "temperature")  # issue 24's figures, when measured
NOT_FRACTIONS = ("temperature", "loss")  # shown as they are, not as percent
_METRICS_FILE = re.compile(r"metrics(?:_(?P<split>train|val|test)(?P<tag>.*))?\.json")


def _pct(frame):
    """A DataFrame of fractions as percentages with one decimal, for display (the data stays fractions)."""
    import math

    fractions = [c for c in frame.columns if frame[c].dtype.kind == "f" and not str(c).startswith(NOT_FRACTIONS)]
    plain = [c for c in frame.columns if frame[c].dtype.kind == "f" and c not in fractions]
    return frame.style.format(lambda v: "—" if v is None or math.isnan(v) else f"{100 * v:.1f}", subset=fractions) \
        .format(lambda v: "—" if v is None or math.isnan(v) else f"{v:.3g}", subset=plain)


class Metrics(dict):
    """One split's scores: the dict ``seglab evaluate`` writes (``miou``, ``per_class_iou``, ``confusion_matrix``,
    ``split``, ...; fractions, not percent), with its tables as DataFrames."""

    @property
    def summary(self):
        """One row: mIoU, pixel accuracy, mean Dice, Boundary IoU, ECE before and after the temperature, the
        temperature, the loss (each with ``<name>_low`` / ``<name>_high``, its 95% bootstrap interval over the
        split's images, where metrics.json has one), mean class accuracy, frequency-weighted IoU, images."""
        import pandas as pd

        return pd.DataFrame([summary_row(self)], index=pd.Index([self.get("split", "test")], name="split"))

    @property
    def per_class(self):
        """IoU, Dice and accuracy per class (rows: class names); None where a class is absent from both the
        labels and the predictions."""
        import pandas as pd

        names = self.get("class_names") or []
        columns = {"iou": self.get("per_class_iou"), "dice": self.get("per_class_dice"),
                   "accuracy": self.get("per_class_accuracy") or [None] * len(names)}
        if self.get("per_class_boundary_iou"):
            columns["boundary_iou"] = self["per_class_boundary_iou"]
        return pd.DataFrame(columns, index=pd.Index(names, name="class"), dtype=float)

    @property
    def confusion(self):
        """The confusion matrix in pixels (rows: true class, columns: predicted)."""
        import pandas as pd

        names = self.get("class_names") or []
        return pd.DataFrame(self.get("confusion_matrix") or [], index=pd.Index(names, name="true"),
                            columns=pd.Index(names, name="predicted"))

    def __repr__(self) -> str:
        return f"Metrics({self.get('split', 'test')}: mIoU {100 * (self.get('miou') or 0):.1f}%, " \
               f"{self.get('num_images')} images)"

    def _repr_html_(self) -> str:
        title = f"{html.escape(str(self.get('model', '')))} on {self.get('split', 'test')} " \
                f"({self.get('num_images')} images), percent"
        return f"<div><h4>{title}</h4>{_pct(self.summary).to_html()}{_pct(self.per_class).to_html()}</div>"


class Run:
    """A run folder (``runs/<name>/``) as the API shows it; any folder ``seglab train`` wrote.

    Attributes:
        path: the run folder.
    """

    def __init__(self, path: str | Path):
        from seglab.runs import RunDir

        self.path = Path(getattr(path, "path", path))
        self._dir = RunDir(self.path)
        if not self._dir.config.is_file():
            raise SeglabError(f"{self.path}: not a run folder (no config.yaml)")

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config(self):
        """The run's resolved ``RunConfig`` (config.yaml)."""
        return self._dir.read_config()

    @property
    def info(self) -> dict:
        """run.json: status, steps, timings, model facts, environment."""
        return self._dir.read_info()

    @property
    def status(self) -> str:
        """running, trained, finished (scored on test), interrupted or failed."""
        return self.info.get("status", "pending")

    def scores(self, split: str = "test", tag: str = "") -> Metrics | None:
        """A split's ``Metrics`` as the run's metrics file holds it, or None before it is scored."""
        found = self._dir.read_metrics(split, tag)
        return None if found is None else Metrics(found)

    @property
    def metrics(self):
        """One row per scored split (test, and val or train after ``seglab.evaluate``; variants of other sizes,
        TTA or data carry their tag): mIoU with its 95% bootstrap interval over the split's images
        (``miou_low``, ``miou_high``), pixel accuracy, mean Dice, mean class accuracy, frequency-weighted IoU,
        images. Fractions, not percent."""
        import pandas as pd

        rows, index = [], []
        for file in sorted(self.path.glob("metrics*.json")):
            match = _METRICS_FILE.fullmatch(file.name)
            if match is None:
                continue
            split, tag = match["split"] or "test", match["tag"] or ""
            m = self._dir.read_metrics(split, tag)
            if m is None:
                continue
            if not (m.get("intervals") or {}).get("miou"):  # scored before evaluations carried intervals
                low, high = _interval(self._dir.per_image(split, tag))
                m = {**m, "intervals": {**(m.get("intervals") or {}), "miou": [low, high]}}
            rows.append(summary_row(m))
            index.append(split + tag)
        frame = pd.DataFrame(rows, index=pd.Index(index, name="split"))
        return frame.dropna(axis=1, how="all") if len(frame) else frame

    @property
    def per_class(self):
        """Test IoU, Dice and accuracy per class (rows: class names); empty before the run is scored."""
        import pandas as pd

        test = self.scores("test")
        return test.per_class if test is not None else pd.DataFrame(columns=["iou", "dice", "accuracy"])

    @property
    def curves(self):
        """metrics.csv: one row per validation (step, fractional epoch, images, train and val loss, val mIoU,
        pixel accuracy, Dice, class accuracy, learning rate, seconds)."""
        import pandas as pd

        from seglab.training.callbacks import METRICS_COLUMNS

        rows = self._dir.read_epochs()
        frame = pd.DataFrame(rows, columns=METRICS_COLUMNS)
        for column in ("step", "images"):
            frame[column] = frame[column].astype("Int64")
        return frame

    def predictor(self, **kwargs):
        """A ``Predictor`` for the run's final checkpoint (``seglab.load(run)``; keywords as for it)."""
        from seglab.inference import load

        return load(self.path, **kwargs)

    def _record(self):
        """The run as a one-configuration study row, for the report's figure functions."""
        from seglab.study.compare import aggregate
        from seglab.study.records import RunRecord

        info, test = self.info, self._dir.read_metrics("test")
        config = self._dir.read_config().to_dict()
        status = "finished" if test is not None and info.get("status") == "finished" else info.get("status", "")
        record = RunRecord(self.name, self.name, "run", True, int(config["train"]["seed"]), status, None, self._dir,
                           info, test, config)
        return aggregate([record])

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, {self.status})"

    def _repr_html_(self) -> str:
        from seglab.study import figures

        info, metrics, test = self.info, self.metrics, self.scores("test")
        facts = [info.get("model"), f"{info['steps']} steps" if info.get("steps") else None,
                 f"{info['epochs']:.1f} epochs" if info.get("epochs") else None, info.get("precision"),
                 self.status]
        where = f"<br><code>{html.escape(str(self.path))}</code>"
        parts = [f"<h3>{html.escape(self.name)}</h3>",
                 f"<p>{html.escape(' · '.join(str(f) for f in facts if f))}{where}</p>"]
        if len(metrics):
            parts += ["<h4>Metrics (percent; 95% bootstrap interval over images)</h4>", _pct(metrics).to_html()]
        rows = self._record()
        parts.append(figure_html(lambda p: figures.training_curves(rows, p), "training curves"))
        if test is not None:
            parts += ["<h4>Per-class test scores (percent)</h4>", _pct(test.per_class).to_html(),
                      figure_html(lambda p: figures.per_class_iou(rows, test.get("class_names") or [], p),
                                  "per-class IoU")]
        return "<div>" + "".join(parts) + "</div>"


def summary_row(m: dict) -> dict:
    """One split's headline figures, each followed by its interval's ends where there is one; the figures of
    issue 24 only where the evaluation measured them."""
    intervals = m.get("intervals") or {}
    row = {}
    for key in (SUMMARY[0], SUMMARY[1], SUMMARY[2], *[k for k in CAREFUL if m.get(k) is not None],
                *SUMMARY[3:]):
        row[key] = m.get(key)
        if key in intervals or key == "miou":
            low, high = intervals.get(key) or (None, None)
            row[f"{key}_low"], row[f"{key}_high"] = low, high
    return row | {"num_images": m.get("num_images")}


@functools.lru_cache(maxsize=256)
def _interval_cached(path: str, mtime: float) -> tuple[float | None, float | None]:
    from seglab.runs import RunDir
    from seglab.study import stats

    found = RunDir(Path(path).parent).read_per_image(*_split_tag(Path(path).name))
    if found is None or not len(found[0]):
        return None, None
    iv = stats.bootstrap_miou(found[0])
    return iv.low, iv.high


def _split_tag(name: str) -> tuple[str, str]:
    """per_image_test@camvid-1a2b.npz -> ("test", "@camvid-1a2b")."""
    stem = name.removeprefix("per_image_").removesuffix(".npz")
    split = re.match(r"train|val|test", stem)
    return (split[0], stem[split.end():]) if split else ("test", "")


def _interval(path: Path) -> tuple[float | None, float | None]:
    """The 95% bootstrap interval of a split's mIoU over its images (as the report's), once per file version."""
    try:
        return _interval_cached(str(path), path.stat().st_mtime)
    except OSError:
        return None, None


class Study:
    """A study folder (``runs/studies/<name>/``) as the API shows it.

    Attributes:
        path: the study folder.
    """

    def __init__(self, path: str | Path):
        from seglab.runs import StudyDir

        self.path = Path(getattr(path, "path", path))
        self._dir = StudyDir(self.path)
        if not self._dir.index.is_file():
            raise SeglabError(f"{self.path}: not a study folder (no study.json); run seglab.study(...) first")

    @property
    def name(self) -> str:
        return self._dir.read_index().get("name") or self.path.name

    def results(self):
        """The study's ``StudyResults`` (every run with its files, configurations aggregated, deltas tested), as
        the report reads them."""
        from seglab.study.compare import load_results

        return load_results(self.path)

    @property
    def runs(self) -> dict[str, Run]:
        """Every run of the study that has a folder, by name."""
        out = {}
        for name, entry in self._dir.index_runs().items():
            run = self.path / entry.get("dir", f"runs/{name}")
            if (run / "config.yaml").is_file():
                out[name] = Run(run)
        return out

    @property
    def best(self) -> Run:
        """The finished run with the best validation value of the study's primary metric (mIoU by default): the
        report's confusion matrix, examples and worst images."""
        return Run(self.results().best_run().run_dir.path)

    @property
    def failed(self) -> list[tuple[str, str]]:
        """(run name, error) of every run the study records as failed."""
        return [(name, r.get("error") or "no error recorded") for name, r in self._dir.index_runs().items()
                if r.get("status") == "failed"]

    @property
    def table(self):
        """The report's comparison, one row per configuration: group, baseline, model, status, finished seeds,
        steps, images, epochs, val and test mIoU (mean and std over seeds; a single run's 95% interval over test
        images), pixel accuracy, mean Dice, Boundary IoU and test loss (None for runs evaluated before they
        were recorded), and the change against the group's baseline of the study's primary metric
        (``primary_metric``, mIoU by default) with its interval, Holm-corrected p and the test it rests on.
        Fractions, not percent."""
        import pandas as pd

        from seglab.study.conclusions import NOISE, status_text

        rows = []
        for row in self.results().rows:
            s, d = row.stats, row.delta
            single = row.finished[0].test_interval if len(row.finished) == 1 else None
            rows.append({
                "configuration": row.config_name, "group": row.group, "baseline": row.baseline,
                "model": row.fact("model"), "status": status_text(row), "seeds": len(row.finished),
                "steps": s["steps"].mean, "images": s["images_seen"].mean, "epochs": s["epochs"].mean,
                "val_miou": s["val_miou"].mean, "test_miou": s["test_miou"].mean, "test_miou_std": s["test_miou"].std,
                "test_miou_low": single.low if single else None, "test_miou_high": single.high if single else None,
                "pixel_accuracy": s["pixel_accuracy"].mean, "mean_dice": s["mean_dice"].mean,
                "boundary_iou": s["boundary_iou"].mean, "test_loss": s["test_loss"].mean,
                "delta": d.diff if d else None, "delta_low": d.ci[0] if d and d.ci else None,
                "delta_high": d.ci[1] if d and d.ci else None, "p_holm": d.p_holm if d else None,
                "noise": NOISE.get(d.test, "none") if d else None})
        return pd.DataFrame(rows).set_index("configuration")

    @property
    def per_class(self):
        """Test IoU per class (rows) and configuration (columns), the mean over its finished seeds."""
        import pandas as pd

        res = self.results()
        best = res.best_run()
        names = (best.test or {}).get("class_names") or best.info.get("class_names") or []
        columns = {}
        for row in res.rows:
            per_seed = [(r.test or {}).get("per_class_iou") or [] for r in row.finished]
            if per_seed:
                columns[row.config_name] = [_mean([v[i] for v in per_seed if i < len(v)]) for i in range(len(names))]
        return pd.DataFrame(columns, index=pd.Index(names, name="class"), dtype=float)

    @property
    def report_path(self) -> Path | None:
        """report.html, once the report is built (seglab.study(report=True) or ``seglab report``)."""
        page = self.path / "report.html"
        return page if page.is_file() else None

    def report(self, data: str | None = None) -> Path:
        """Rebuild report.md and report.html from the finished runs (``seglab report``); returns report.html."""
        from seglab.study.report import build_report

        return build_report(self.path, data)[1]

    def __repr__(self) -> str:
        return f"Study({str(self.path)!r}, {len(self._dir.index_runs())} runs)"

    def _repr_html_(self) -> str:
        """report.md rendered as report.html renders it (tables, figures as data URIs), without the page."""
        return report_html(self.path) or f"<div><h3>{html.escape(self.name)}</h3>{_pct(self.table).to_html()}</div>"


class Tune:
    """A tune folder (``runs/tunes/<name>/``, written by ``seglab tune``) as the API shows it.

    Attributes:
        path: the tune folder.
    """

    def __init__(self, path: str | Path):
        self.path = Path(getattr(path, "path", path))
        if not (self.path / "tune.json").is_file():
            raise SeglabError(f"{self.path}: not a finished tune folder (no tune.json); run seglab.tune(...) first")

    @property
    def record(self) -> dict:
        """tune.json: rungs, every trial, the finalists with their re-runs, the winner and its test figures."""
        from seglab.runs import read_json

        return read_json(self.path / "tune.json")

    @property
    def trials(self):
        """One row per trial: state, batch, its values, and val metric at each rung (column "rung <k>")."""
        import pandas as pd

        record = self.record
        rows = []
        for t in record["trials"]:
            row = {"trial": t["trial"], "state": t["state"], "batch": t.get("batch"), **t["params"]}
            for k, unit in enumerate(record["rungs"]["units"], 1):
                row[f"rung {k}"] = t["values"].get(str(unit))
            rows.append(row)
        return pd.DataFrame(rows).set_index("trial")

    @property
    def finalists(self):
        """One row per finalist: its values, search score and the rung it was reached at, the re-runs' values
        (one column per seed), their mean and 95% t-interval, and the paired difference to the winner."""
        import pandas as pd

        record = self.record
        rows = []
        for f in record["finalists"]:
            d = f.get("vs_winner") or {}
            rows.append({"trial": f["trial"], "winner": f.get("winner", False), **f["params"],
                         "search_value": f["search_value"], "search_steps": f["search_steps"],
                         **{f"seed {s}": v for s, v in zip(record["seeds"], f["reruns"], strict=False)},
                         "rerun_mean": f["rerun_mean"], "rerun_low": f["rerun_low"], "rerun_high": f["rerun_high"],
                         "vs_winner": d.get("mean"), "vs_winner_low": d.get("low"), "vs_winner_high": d.get("high")})
        return pd.DataFrame(rows).set_index("trial")

    @property
    def winner(self) -> dict:
        """The winning trial: its values, re-run figures and ``test`` (per seed and mean, with intervals)."""
        return self.record["winner"]

    @property
    def winner_config(self) -> Path:
        """winner.yaml, for ``seglab.train(config=...)`` or ``seglab train --config``."""
        return self.path / "winner.yaml"

    @property
    def winner_runs(self) -> list[Run]:
        """The winner's re-runs (the runs scored on test), one per seed."""
        return [Run(r["run"]) for r in self.winner["test"]["runs"]]

    def __repr__(self) -> str:
        return f"Tune({str(self.path)!r}, winner {self.winner['trial']})"

    def _repr_html_(self) -> str:
        """report.md rendered as report.html renders it; the finalists' table before there is one."""
        return report_html(self.path) or f"<div>{_pct(self.finalists).to_html()}</div>"


def report_html(folder: Path) -> str | None:
    """A study's or tune's report.md as HTML for a notebook (figures as data URIs), None without one."""
    md = folder / "report.md"
    if not md.is_file():
        return None
    from seglab.study.report_html import markdown

    return f'<div class="seglab-report">{markdown().render(md.read_text(encoding="utf-8"), {"root": folder})}</div>'


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


class DataCheck(dict):
    """``seglab data check``'s report of a dataset folder: ``root``, ``layout``, ``classes``, ``splits`` (pairs,
    sizes, label values, class shares), ``warnings`` and ``problems``; printed as the command prints it."""

    @property
    def problems(self) -> list[str]:
        return self["problems"]

    @property
    def shares(self):
        """Pixel share of each class (rows, void last) per split (columns)."""
        import pandas as pd

        splits = self["splits"]
        data = {name: [*(s["class_shares"][c] for c in self["classes"]), s["void_share"]] for name, s in splits.items()}
        return pd.DataFrame(data, index=pd.Index([*self["classes"], "void"], name="class"), dtype=float)

    def __str__(self) -> str:
        from seglab.data import format_check

        return format_check(self)

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        return f"<pre>{html.escape(str(self))}</pre>"
