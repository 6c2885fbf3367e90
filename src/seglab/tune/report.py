"""A tune's report: the winner and its one test figure, the finalists' search scores against their re-runs
(the selection bias, measured), every trial rung by rung, and Optuna's own plots.

Optuna's optimisation history, parameter importances and slices are drawn over every trial's value at the
first rung, where all trials did the same work; pruned trials have no value at later rungs, and values at
different budgets are not comparable. Built from tune.json and the Optuna study alone: ``seglab tune`` writes
it at the end, and rebuilding it trains and scores nothing.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

from seglab.errors import SeglabError
from seglab.runs import read_json, write_text
from seglab.study.report_html import render_html
from seglab.tune.folder import TuneDir

log = logging.getLogger("seglab")


def build_tune_report(path: str | Path) -> tuple[Path, Path]:
    folder = TuneDir(Path(path))
    record = read_json(folder.record)
    if not record.get("finalists"):
        raise SeglabError(f"{folder.record}: no finished tune recorded here; run `seglab tune` first")
    folder.files.mkdir(parents=True, exist_ok=True)
    figures = draw_figures(record, folder.files)
    text = markdown(record, figures, folder)
    md = folder.path / "report.md"
    write_text(md, text)
    page = folder.path / "report.html"
    write_text(page, render_html(text, folder.path))
    return md, page


def _pct(v) -> str:
    return "–" if v is None else f"{100 * v:.1f}"


def _interval(low, high) -> str:
    return "no interval (one seed, or no spread)" if low is None else f"[{_pct(low)}, {_pct(high)}]"


def _params(params: dict) -> str:
    def show(v):
        if isinstance(v, float):
            return f"{v:.3g}"
        return str(v)
    return ", ".join(f"{k.split('.', 1)[-1]}={show(v)}" for k, v in params.items())


def markdown(record: dict, figures: dict[str, Path], folder: TuneDir) -> str:
    label = record.get("metric_label", "mIoU")
    winner, rows, trials = record["winner"], record["finalists"], record["trials"]
    test = winner["test"]
    rungs = record["rungs"]
    cal = next(iter(record.get("calibration", {}).values()), {})
    seeds = record["seeds"]
    states = {s: sum(t["state"] == s for t in trials) for s in ("complete", "pruned", "fail")}
    lines = [f"# Tune {record['name']}", ""]
    if record.get("description"):
        lines += [record["description"], ""]
    lines += ["## Summary", ""] + summary_cards(record, label) + ["", "## What the tune found", ""]
    per_seed = "; ".join(f"seed {r['seed']}: {_pct(r['value'])} {_interval(r['low'], r['high'])}"
                         for r in test["runs"])
    lines += [
        (f"- **Winner: {winner['trial']}** ({_params(winner['params'])}): val {label} "
         f"{_pct(winner['rerun_mean'])}% over {len(seeds)} fresh seeds "
         f"{_interval(winner['rerun_low'], winner['rerun_high'])}; its search score was "
         f"{_pct(winner['search_value'])}% at step {winner['search_steps']}."),
        (f"- **Test {test['label']}: {_pct(test['mean'])}%** {_interval(test['low'], test['high'])} over the "
         f"winner's {len(test['runs'])} re-runs (95% t-interval over seeds); each run with its 95% bootstrap "
         f"interval over test images: {per_seed}. Test was scored for the winner only, after it was chosen on val."),
    ]
    lines += curse_lines(rows, label) + decision_lines(rows, winner, len(seeds))
    lines += [
        work_line(trials, states, rungs, cal, record["seconds"]),
        f"- **Use it:** `seglab train --config {folder.winner}` (its budget, not this machine's steps).",
        "",
        "## Finalists",
        "",
        (f"The top {len(rows)} trials of the search (furthest rung first, then val {label}), each re-trained "
         f"with seeds {', '.join(map(str, seeds))} at the full budget. Differences to the winner are paired by "
         "seed (95% t-interval; with two seeds it is wide by design: two seeds tell little)."),
        "",
        (f"| trial | values | search val {label} (step) | re-runs by seed | re-run mean [95% CI] | search − re-runs "
         "| Δ vs winner [95% CI] |"),
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        d = r.get("vs_winner")
        delta = "winner" if d is None else (
            f"{100 * d['mean']:+.1f}" + ("" if d["low"] is None else f" [{100 * d['low']:+.1f}, {100 * d['high']:+.1f}]"))
        lines.append(f"| {r['trial']}{' **(winner)**' if r.get('winner') else ''} | {_params(r['params'])} | "
                     f"{_pct(r['search_value'])} ({r['search_steps']}) | "
                     f"{', '.join(_pct(v) for v in r['reruns'])} | {_pct(r['rerun_mean'])} "
                     f"{_interval(r['rerun_low'], r['rerun_high'])} | {_signed(r.get('bias'))} | {delta} |")
    lines += ["", "## Trials", "",
              f"Val {label} (%) of each trial at each rung; a blank: pruned before it, or failed.", "",
              "| trial | batch | state | values | " + " | ".join(f"step {s}" for s in rungs["steps"]) + " |",
              "|---|---|---|---|" + "---|" * len(rungs["steps"])]
    for t in trials:
        cells = [_pct(t["values"].get(str(u))) if str(u) in t["values"] else "" for u in rungs["units"]]
        state = t["state"] + (f": {t['error']}" if t.get("error") else "")
        lines.append(f"| {t['trial']} | {t.get('batch')} | {state} | {_params(t['params'])} | " + " | ".join(cells) + " |")
    if figures:
        lines += ["", "## Search plots", "",
                  (f"Optuna's plots over every trial's val {label} at the first rung (step {rungs['steps'][0]}), "
                   "where all trials did the same work.")]
        captions = {"history": "Optimisation history", "importances": "Parameter importances",
                    "slices": "Slices: each parameter against the value"}
        for key, png in figures.items():
            lines += ["", f"![{captions[key]}]({png.relative_to(folder.path).as_posix()})"]
    lines += ["", "## How this search avoids fooling itself", "",
              "- The objective is the validation split; test is never read during the search or the re-runs.",
              ("- A rung is a share of the budget's steps, and the budget is turned into steps by a measured "
               "step cost, so a busy machine cannot give one trial less work than another; a promoted trial "
               "continues from its checkpoint with its learning-rate schedule planned for the full run."),
              ("- Trials are proposed and judged in batches, in trial order, so the same seed gives the same "
               "trials whether they ran one at a time or side by side."),
              ("- The finalists are re-trained with seeds the search never used; the winner is the best of those "
               "re-runs, and its search score is shown beside them, not reported as its measurement."), ""]
    return "\n".join(lines)


def summary_cards(record: dict, label: str) -> list[str]:
    """Short 'key: value' bullets (report.html repeats them as its header cards); the sentences follow."""
    winner, test = record["winner"], record["winner"]["test"]
    trials = record["trials"]
    cards = [f"- Winner: **{winner['trial']}** ({_params(winner['params'])})",
             (f"- Test {test['label']}: **{_pct(test['mean'])}%** {_interval(test['low'], test['high'])}, "
              f"{len(test['runs'])} re-runs"),
             (f"- Val {label}, re-runs: **{_pct(winner['rerun_mean'])}%** "
              f"{_interval(winner['rerun_low'], winner['rerun_high'])}")]
    full = [r for r in record["finalists"] if r.get("bias") is not None]
    if full:
        top = max(full, key=lambda r: r["search_value"])
        cards.append(f"- Search's best, re-run: **{_signed(top['bias'])} points** of luck ({top['trial']}: "
                     f"{_pct(top['search_value'])}% searched, {_pct(top['rerun_mean'])}% re-run)")
    pruned = sum(t["state"] == "pruned" for t in trials)
    cards.append(f"- Work: **{len(trials)} trials**, {pruned} pruned; a full run {record['rungs']['full_steps']} steps; "
                 f"{_minutes(sum(record['seconds'].values()))} wall-clock")
    return cards


def _signed(v) -> str:
    return "– (pruned: a shorter budget)" if v is None else f"{100 * v:+.1f}"


def curse_lines(rows: list[dict], label: str) -> list[str]:
    """The winner's curse, measured on the trial the search alone would have picked: the best that reached
    the full budget, whose search score is set beside the mean of its fresh-seed re-runs."""
    full = [r for r in rows if r.get("bias") is not None]
    if not full:
        return []
    top = max(full, key=lambda r: r["search_value"])
    gap = top["bias"]
    verdict = (f"its search score was {100 * gap:.1f} points above its measurement: the best of many noisy "
               "trials is partly the best by luck, which is why the winner is chosen by re-runs" if gap > 0 else
               f"its search score was {100 * -gap:.1f} points below its measurement: no winner's curse showed here")
    return [(f"- **The winner's curse, measured:** {top['trial']} was the search's best at the full budget (val "
             f"{label} {_pct(top['search_value'])}%); re-trained with fresh seeds it scored "
             f"{_pct(top['rerun_mean'])}%: {verdict}.")]


def decision_lines(rows: list[dict], winner: dict, seeds: int) -> list[str]:
    """Whether the re-runs tell the winner from the runner-up: a paired interval over seeds that holds 0
    (or none, with one seed) is a close call, said so."""
    others = [r for r in rows if not r.get("winner")]
    if not others:
        return []
    runner = max(others, key=lambda r: r["rerun_mean"])
    d = runner.get("vs_winner") or {}
    lead = -100 * d["mean"] if d.get("mean") is not None else 100 * (winner["rerun_mean"] - runner["rerun_mean"])
    if d.get("low") is None or d["low"] <= 0 <= d["high"]:
        interval = "" if d.get("low") is None else f" (paired by seed: [{-100 * d['high']:+.1f}, {-100 * d['low']:+.1f}])"
        return [(f"- **Close call:** the winner's lead over {runner['trial']}, {lead:.1f} points{interval}, is "
                 f"within the noise of {seeds} seed{'s' if seeds > 1 else ''}: these re-runs do not tell the two "
                 "apart, and either configuration is as good as they can say; more `seeds` would decide.")]
    return [(f"- **Decided:** the winner leads {runner['trial']} by {lead:.1f} points, paired by seed "
             f"[{-100 * d['high']:+.1f}, {-100 * d['low']:+.1f}], an interval that excludes 0.")]


def work_line(trials: list, states: dict, rungs: dict, cal: dict, seconds: dict) -> str:
    cost = (f", measured at {cal['seconds_per_step']:.2f} single-thread CPU-s per step ({cal['clock']}, "
            f"{cal['threads']} threads) for a {cal['budget']} budget") if cal.get("seconds_per_step") else ""
    return (f"- **Work:** {len(trials)} trials ({states['complete']} completed, {states['pruned']} pruned, "
            f"{states['fail']} failed); rungs at steps {', '.join(map(str, rungs['steps']))} of "
            f"{rungs['full_steps']} (1/{rungs['reduction']} of a rung's trials go on); every trial of a step cost "
            f"got the same steps{cost}. Wall time: search {_minutes(seconds['search'])}, re-runs "
            f"{_minutes(seconds['reruns'])}, test {_minutes(seconds['test'])}.")


def _minutes(seconds: float) -> str:
    from seglab.config import format_seconds

    return format_seconds(seconds)


def first_rung_study(record: dict):
    """An in-memory Optuna study of every trial's value at the first rung (equal work for all)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    real = optuna.load_study(study_name=record["name"], storage=record["storage"])
    first = record["rungs"]["units"][0]
    view = optuna.create_study(direction="maximize")
    for t in real.get_trials(deepcopy=False):
        if first not in t.intermediate_values:
            continue
        view.add_trial(optuna.trial.create_trial(params=t.params, distributions=t.distributions,
                                                 value=t.intermediate_values[first]))
    return view


def draw_figures(record: dict, files: Path) -> dict[str, Path]:
    """history.png, importances.png and slices.png where Optuna can draw them (importances need two
    trials that differ); a plot it cannot draw is left out with a log line, never a failed report."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as ovm

    try:
        view = first_rung_study(record)
    except Exception as e:  # noqa: BLE001 - a storage that moved: the report is still written, without plots
        log.warning("tune report: no plots (Optuna study %s: %s)", record.get("storage"), e)
        return {}
    out = {}
    for key, draw in (("history", ovm.plot_optimization_history), ("importances", ovm.plot_param_importances),
                      ("slices", ovm.plot_slice)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
                axes = draw(view)
                fig = (axes.flat[0] if hasattr(axes, "flat") else axes).figure
                fig.set_size_inches(max(fig.get_size_inches()[0], 7), max(fig.get_size_inches()[1], 4))
                fig.tight_layout()
            png = files / f"{key}.png"
            fig.savefig(png, dpi=100)
            plt.close(fig)
            out[key] = png
        except Exception as e:  # noqa: BLE001
            log.info("tune report: no %s plot (%s)", key, str(e).splitlines()[0] if str(e) else type(e).__name__)
            plt.close("all")
    return out


def record_of(path: str | Path) -> dict:
    """tune.json of a tune folder (for the API)."""
    return json.loads((Path(path) / "tune.json").read_text())
