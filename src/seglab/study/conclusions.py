"""The study's words: sentences the numbers of compare.py support, and no more, and the few labels and
number formats the report's tables share with them.

Rules: a difference is called an improvement only when a test that covers training noise (seeds) finds
it, after Holm's correction; with one run per configuration the report says what the test-image
bootstrap shows and that it is not a verdict on the idea. Every sentence says which noise its interval
covers, and names the study's primary metric (study/primary.py) rather than assuming mIoU.
"""

from __future__ import annotations

from seglab.study.compare import (
    ALPHA,
    IMAGE_TEST,
    SEED_TEST,
    ConfigRow,
    Delta,
    Stat,
    StudyResults,
)
from seglab.study.fairness import protocol_differences, short_runs, weights_substituted, work_mismatches
from seglab.study.primary import METRICS, Metric

TEST_NAMES = {SEED_TEST: "paired t-test across training seeds", IMAGE_TEST: "paired bootstrap over test images"}
NOISE = {SEED_TEST: "training seeds", IMAGE_TEST: "test images only"}  # what a verdict's interval covers


def pts(x: float) -> str:
    """A difference of two fractions in percentage points, signed."""
    return f"{100 * x:+.1f} points"


def pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def fmt_p(p: float | None) -> str:
    """For a table cell: '< 0.001', '0.031', '0.42'."""
    return "—" if p is None else "< 0.001" if p < 0.001 else f"{p:.3f}" if p < 0.1 else f"{p:.2f}"


def p_text(p: float | None) -> str:
    """For a sentence: 'p < 0.001', 'p = 0.031'."""
    cell = fmt_p(p)
    return f"p {cell}" if cell.startswith("<") else f"p = {cell}"


def fmt_stat(s: Stat, scale: float = 100, digits: int = 1) -> str:
    """'59.0 ± 1.4' (mean ± std, no-break spaces), '59.0' for one run, '—' for none."""
    if s.mean is None:
        return "—"
    mean = f"{scale * s.mean:.{digits}f}"
    return mean if s.std is None else f"{mean}\u00a0±\u00a0{scale * s.std:.{digits}f}"


def fmt_ci(low: float, high: float) -> str:
    """'[+3.1, +12.9]': the interval of a difference of two fractions, in signed points."""
    return f"[{100 * low:+.1f}, {100 * high:+.1f}]"


def status_text(row: ConfigRow) -> str:
    """'2 finished' (the number of seeds), or a summary such as '1/2 finished, 1 failed'."""
    counts, n = row.status_counts(), len(row.runs)
    if counts.get("finished", 0) == n:
        return f"{n} finished"
    if n == 1:
        return row.runs[0].status
    rest = ", ".join(f"{k} {s}" for s, k in counts.items() if s != "finished")
    return f"{counts.get('finished', 0)}/{n} finished, {rest}"


def verdict(delta: Delta) -> str:
    """The verb of a hypothesis sentence. 'helped' and 'hurt' only when training noise was measured."""
    if delta.test is None:
        return "apparently helped" if delta.diff > 0 else "apparently hurt" if delta.diff < 0 else "changed nothing"
    if delta.test == SEED_TEST:
        return ("helped" if delta.diff > 0 else "hurt") if delta.significant else \
            "showed no change larger than the noise"
    if delta.significant:
        return "scored higher than" if delta.diff > 0 else "scored lower than"
    return "did not differ beyond test-image noise from"


def hypothesis(row: ConfigRow, metric: Metric = METRICS["miou"]) -> str:
    """One comparison in words: the change of the primary metric's test value, its noise, its verdict."""
    d, key = row.delta, metric.test_key
    means = (f"{pct(row.stats[key].mean)} vs {pct(row.stats[key].mean - d.diff)}"
             + (f", means of {d.n} and {d.base_n} seeds" if max(d.n, d.base_n) > 1 else ""))
    head = f"**{row.config_name}** {verdict(d)} **{d.baseline}**" if d.test == IMAGE_TEST else \
        f"**{row.config_name}** {verdict(d)} against **{d.baseline}**"
    head += f": test {metric.label} {pts(d.diff)} ({means})."
    if d.test is None:
        why = d.seeds.reason if d.seeds is not None and d.seeds.reason else \
            f"no per-image test arrays ({metric.arrays}) stored"
        return (f"{head} No noise estimate ({why}), so this change may be noise; repeat the study with "
                f"`repeats: 3` or more to test it.")
    lo, hi = d.ci
    p = f"{p_text(d.p_value)} (Holm-corrected: {p_text(d.p_holm)})"
    if d.test == SEED_TEST:
        s = d.seeds
        text = (f"{head} {TEST_NAMES[SEED_TEST].capitalize()} ({s.n} pairs): 95% CI of the change "
                f"{fmt_ci(lo, hi)} points, {p}"
                + (f", effect size d_z = {s.effect_size:.2f}" if s.effect_size is not None else "")
                + ". This covers training noise (another seed, another model) on these test images")
        if d.images is not None:
            text += f"; test-image sampling alone gives {fmt_ci(d.images.low, d.images.high)}"
        if s.min_p_exact is not None and s.min_p_exact >= ALPHA:
            text += (f". With {s.n} seeds an exact sign-flip test cannot go below p = {s.min_p_exact:.2g}: "
                     f"more repeats make the verdict sturdier")
        return text + "."
    return (f"{head} {TEST_NAMES[IMAGE_TEST].capitalize()}: 95% CI {fmt_ci(lo, hi)} points, {p}. This covers "
            f"only which test images were drawn, not training noise.")


def weights_sentence(res: StudyResults) -> str | None:
    """One plain sentence: which configurations start from which weights."""
    groups: dict[str, list[str]] = {}
    for row in res.rows:
        w = row.fact("weights")
        if w is None:
            continue
        w = str(w)
        label = ("an ImageNet-pretrained encoder" if w == "imagenet" else
                 f"random initialisation because ImageNet weights were unavailable ({w.split(': ', 1)[-1].rstrip(')')})"
                 if weights_substituted(w) else "random initialisation (from scratch)" if w == "none" else
                 f"weights from {w}")
        groups.setdefault(label, []).append(f"**{row.config_name}**")
    if not groups:
        return None
    parts = [f"{', '.join(names)} {'start' if len(names) > 1 else 'starts'} from {label}"
             for label, names in groups.items()]
    return "Weights: " + "; ".join(parts) + "."


def conclusions(res: StudyResults) -> list[str]:
    """Markdown sentences: each hypothesis' effect with its noise estimate, the winner, what went wrong."""
    lines = [s for s in [weights_sentence(res)] if s]
    deltas = [row for row in res.rows if row.delta is not None]
    lines += [hypothesis(row, res.primary) for row in deltas]
    tested = [row for row in deltas if row.delta.p_value is not None]
    if len(tested) >= 2:
        lines.append(f"{len(tested)} comparisons were tested at once, so each p-value is Holm-corrected (a "
                     f"difference counts when its corrected p < {ALPHA}).")
    if deltas and not any(row.delta.training_noise_measured for row in deltas):
        lines.append("Every configuration ran once, so no difference here is a verdict on the idea itself: "
                     "training noise (another seed, another model), often several points for short runs, is not "
                     "measured, and another seed could change the order. `repeats: 3` in the study file (or "
                     "`seglab study ... --repeats 3`) trains each configuration with three seeds, paired across "
                     "configurations, and tests the differences against that noise.")
    for group in sorted({row.group for row in res.rows}):
        members = [row for row in res.rows if row.group == group]
        base = next((row for row in members if row.baseline), None)
        if base is None and len(members) > 1:
            lines.append(f"Group **{group}** has no baseline (`baseline: true`), so its changes are not measured.")
        elif base is not None and not base.finished and len(members) > 1:
            lines.append(f"The baseline **{base.config_name}** of group **{group}** has no finished run, so its "
                         f"variants cannot be compared.")
    lines += unmeasured(res)
    best = res.best_row()
    if best is not None:
        lines.append(best_sentence(res, best))
    return lines + problems(res)


def selection_words(res: StudyResults) -> str:
    """'validation Boundary IoU': what the best configuration and run are picked by."""
    return f"validation {res.selection().metric.label}"


def best_sentence(res: StudyResults, best: ConfigRow) -> str:
    """The winner by the primary metric's validation value (never test), its test values beside it."""
    sel, p = res.selection(), res.primary
    s, n = best.stats, best.stats[p.test_key].n
    text = (f"Best configuration by {selection_words(res)}: **{best.config_name}** "
            f"({fmt_stat(s[sel.key])}% validation {sel.metric.label}, {fmt_stat(s[p.test_key])}% test "
            f"{p.label} over {n} run{'s' if n != 1 else ''}")
    if p.name != "miou":
        text += f"; test mIoU {fmt_stat(s['test_miou'])}%"
    text += ")."
    if sel.fell_back:
        shown = ", ".join(sel.missing[:5]) + (f" and {len(sel.missing) - 5} more" if len(sel.missing) > 5 else "")
        text += (f" The study's primary metric is {p.label}, but {len(sel.missing)} run"
                 f"{'s' if len(sel.missing) != 1 else ''} ({shown}) logged no validation {p.label} (metrics.csv "
                 f"has no {p.val_key} column: trained before it was logged), so the pick falls back to "
                 f"validation mIoU; the comparisons still use test {p.label}.")
    return text


def unmeasured(res: StudyResults) -> list[str]:
    """Comparisons that could not be made because a side records no test value of the primary metric."""
    p = res.primary
    out = []
    bases = {row.group: row for row in res.rows if row.baseline}
    for row in res.rows:
        base = bases.get(row.group)
        if row.delta is None and base is not None and row is not base and row.finished and base.finished:
            out.append(f"**{row.config_name}** is not compared with **{base.config_name}**: "
                       f"{'neither' if base.stats[p.test_key].mean is None and row.stats[p.test_key].mean is None else 'one'}"
                       f" records a test {p.label} (runs evaluated before it existed; `seglab evaluate` on the run "
                       f"folders adds it).")
    return out


def problems(res: StudyResults) -> list[str]:
    lines = [f"Run **{r.name}** failed: `{r.error or 'no error recorded'}`; it is left out of every number."
             for r in res.runs if r.status == "failed"]
    unfinished = [r for r in res.runs if r.status not in ("finished", "failed")]
    if unfinished:
        lines.append(f"{len(unfinished)} run{'s' if len(unfinished) > 1 else ''} did not finish "
                     f"({', '.join(f'{r.name}: {r.status}' for r in unfinished)}) and "
                     f"{'are' if len(unfinished) > 1 else 'is'} left out; rerun the study to complete "
                     f"{'them' if len(unfinished) > 1 else 'it'}.")
    for r, b, off in work_mismatches(res):
        lines.append(f"Unequal work: **{r.name}** trained on {r.work():,.0f} images and **{b.name}** on "
                     f"{b.work():,.0f}, {100 * off:+.0f}% off the ratio their budgets intended; their comparison "
                     f"mixes the idea with the amount of training.")
    for name, base, diffs in protocol_differences(res):
        lines.append(f"Confounded: **{name}** differs from its baseline **{base}** in more than its idea ("
                     + ", ".join(f"{label} {mine} vs {theirs}" for label, mine, theirs in diffs)
                     + "), as the study file sets them; its change mixes the idea with how much and at what size "
                       "it trained, so it is not the idea's alone.")
    for r, share in short_runs(res):
        lines.append(f"Run **{r.name}** stopped early, after {100 * share:.0f}% of its planned training "
                     f"({r.info.get('steps')} of {r.info.get('steps_planned')} steps).")
    substituted = [r for r in res.runs if weights_substituted(r.info.get("weights"))]
    if substituted:
        lines.append(f"{len(substituted)} run{'s' if len(substituted) > 1 else ''} trained without the pretrained "
                     f"weights asked for ({', '.join(r.name for r in substituted)}); their numbers understate what "
                     f"pretrained encoders reach.")
    return lines
