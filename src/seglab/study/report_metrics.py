"""The report's sections on what its numbers are: the definitions in words ("What the numbers mean"),
Boundary IoU per class, calibration, and the per-image view (the distribution of per-image mIoU and the
worst test images).

Why a section of definitions: "mIoU" names at least three different computations in the literature
(class-mean over a summed matrix, mean over images, micro-averaged over pixels) and they can differ by
many points. The report says once which one it shows, with the settings the runs recorded (the boundary
width, the calibration bins, the bootstrap), so a reader can check them.

Runs evaluated before seglab recorded Boundary IoU, calibration or test loss still build: each section
says what is missing and how to add it (``seglab evaluate RUN``), and shows what there is.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from seglab.errors import SeglabError, first_line
from seglab.study import figures, per_image
from seglab.study.compare import StudyResults
from seglab.study.conclusions import fmt_stat, pct
from seglab.study.primary import METRICS
from seglab.study.records import RunRecord
from seglab.study.report_tables import esc, figure, md_table, note, per_class_table

ADD_IT = "`seglab evaluate RUN` on a run folder adds it"
WORST_K = 4  # worst test images shown


def _share(stride: int) -> str:
    """2 -> "quarter", 3 -> "ninth", else "1/N²"."""
    return {2: "quarter", 3: "ninth", 4: "sixteenth"}.get(stride, f"1/{stride * stride}")


def recorded(res: StudyResults, key: str, best: RunRecord | None = None) -> tuple[RunRecord | None, object]:
    """(run, value) of metrics.json's ``key``: the best run's when it has one, else the first finished run's."""
    for r in [*([best] if best else []), *res.finished]:
        value = (r.test or {}).get(key)
        if value is not None:
            return r, value
    return None, None


def _width(boundary: dict) -> str:
    """'d = 2% of the image diagonal (18 px on these test images)', from metrics.json's ``boundary``."""
    fraction, px = boundary.get("fraction"), boundary.get("width_px") or []
    of = boundary.get("of") or "image diagonal"
    px_text = ""
    if len(px) == 2 and None not in px:
        px_text = f" ({px[0]} px on these test images)" if px[0] == px[1] else f" ({px[0]}–{px[1]} px on these test images)"
    size = f"{100 * fraction:g}% of the {of}" if isinstance(fraction, (int, float)) else "as recorded"
    return f"d = {size}{px_text}"


# -- What the numbers mean ----------------------------------------------------------------------------------


def definitions(res: StudyResults, best: RunRecord) -> list[str]:
    """Every metric of the report, once, in words, with the settings its runs recorded."""
    p = res.primary
    _, boundary = recorded(res, "boundary", best)
    _, calibration = recorded(res, "calibration", best)
    _, interval = recorded(res, "interval", best)
    _, loss_name = recorded(res, "loss_name", best)
    calibration = calibration if isinstance(calibration, dict) else {}
    bins = calibration.get("bins")
    stride = calibration.get("stride")
    resamples = (interval or {}).get("resamples", 9999) if isinstance(interval, dict) else 9999
    n_images = (best.test or {}).get("num_images")
    intro = (f"This study's primary metric is **{p.label}** (`primary_metric: {p.name}` in the study file): the "
             f"comparisons, their Holm correction, the summary and the best configuration use it; the best is picked "
             f"by its validation value, never by test. The other metrics are shown beside it. Every figure is "
             f"computed on the test split unless it says validation, over labelled pixels only: void pixels "
             f"(those the dataset marks void or leaves unlabelled, e.g. CamVid's 11) are neither right nor wrong.")
    items = [
        ("**mIoU** (mean intersection over union): class-mean IoU over a confusion matrix summed over the split; "
         "classes absent from both labels and predictions are left out of the mean. A class's IoU is "
         "TP / (TP + FP + FN), its pixels counted over all images at once. It is not micro-averaged IoU (pixels of "
         "all classes pooled) and not the mean of per-image scores: a class covering 1% of the pixels weighs as "
         "much as the road."),
        ("**mean Dice**: 2 TP / (2 TP + FP + FN) per class on the same summed matrix, then the class mean, absent "
         "classes left out. It ranks like IoU per class but is higher (Dice = 2 IoU / (1 + IoU))."),
        ("**pixel accuracy**: the share of labelled pixels predicted right. Large classes (road, sky, buildings) "
         "dominate it, so it can stay high while small classes fail."),
        ("**Boundary IoU** (Cheng et al., CVPR 2021): IoU restricted to the pixels near each class's contour. For "
         "a class, G_d is its label pixels within d of the label's contour and P_d its predicted pixels within d "
         "of the prediction's contour; the class's Boundary IoU is |G_d ∩ P_d| / |G_d ∪ P_d|, counts summed over "
         "the split, then the class mean (classes without boundary pixels left out). Distance is chessboard "
         "distance, the image border counts as a contour, void pixels are dropped and a class's edge against "
         "void is no contour. Unlike mIoU it does not forgive ragged edges on large objects. "
         + (f"Here {_width(boundary)}." if isinstance(boundary, dict) else
            f"These runs recorded no Boundary IoU ({ADD_IT}).")),
        ("**ECE** (expected calibration error; Naeini et al. 2015, Guo et al. 2017): labelled pixels"
         + (f" (every {stride}{'nd' if stride == 2 else 'rd' if stride == 3 else 'th'} row and column of them, a "
            f"{_share(stride)})" if stride and stride > 1 else "")
         + " are put in " + (f"{bins} " if bins else "")
         + "equal-width bins of their top-class probability (confidence); ECE = Σ_b (n_b / N) · |accuracy_b − "
         "confidence_b|, the pixel-weighted gap between how sure the model is and how often it is right. 0 is "
         "perfect; lower is better." + ("" if calibration else f" These runs recorded no ECE ({ADD_IT}).")),
        ("**Temperature scaling** (Guo et al. 2017): one number T divides the logits before the softmax; it is "
         "fitted on the validation split (never test) by minimising the negative log-likelihood, and the ECE "
         "after it is measured on test. Dividing by T keeps every pixel's arg-max, so mIoU, Dice, accuracy and "
         "Boundary IoU do not change; only the probabilities do."),
        ("**test loss**: the run's own training loss"
         + (f" ({esc(str(loss_name))})" if loss_name else "")
         + ", class weights included, computed per test image at the labels' native size"
         + (" (on the pixels ECE counts)" if stride and stride > 1 else "")
         + " and averaged over images. Runs with different losses are not comparable on it." + ("" if loss_name else
                                                                              f" These runs recorded none ({ADD_IT}).")),
        (f"**95% intervals**: percentile bootstrap over test images ({resamples:,} resamples"
         + (f" of {n_images} images" if n_images else "")
         + "): the images are drawn again with replacement, their per-image counts summed, the metric computed "
           "again (Efron 1979). They cover which test images were drawn, not training noise: another seed "
           "trains another model. Δ intervals pair the two sides on the same resampled images, or, with several "
           "seeds, come from a paired t-test across seeds."),
    ]
    return [intro, "\n".join(f"- {item}" for item in items)]


# -- Boundary IoU per class ---------------------------------------------------------------------------------


def boundary_section(res: StudyResults, best: RunRecord, class_names: list[str]) -> list[str]:
    """Per-class Boundary IoU of every configuration, its class mean with a 95% interval, the width d."""
    _, boundary = recorded(res, "boundary", best)
    if not any((r.test or {}).get("per_class_boundary_iou") for r in res.finished):
        return [note(f"No Boundary IoU: these runs were evaluated before seglab recorded it ({ADD_IT}).")]
    width = _width(boundary) if isinstance(boundary, dict) else "d not recorded"
    out = [(f"Boundary IoU per class, test split, {width}. Percent; mean ± standard deviation over seeds, the "
            f"class mean's 95% interval for single runs. Compare with the per-class IoU above: a class whose "
            f"Boundary IoU is far below its IoU is found but outlined badly."),
           per_class_table(res.rows, class_names, "per_class_boundary_iou", "class (test Boundary IoU %)",
                           mean=METRICS["boundary_iou"])]
    missing = [r.name for r in res.finished if not (r.test or {}).get("per_class_boundary_iou")]
    if missing:
        out.append(note(f"{len(missing)} run{'s' if len(missing) > 1 else ''} without Boundary IoU "
                        f"({', '.join(missing)}) {'are' if len(missing) > 1 else 'is'} left out of it ({ADD_IT})."))
    return out


# -- Calibration ----------------------------------------------------------------------------------------------


def _ece(r: RunRecord, key: str) -> str:
    """'4.1% [3.6, 4.7]': a run's ECE with its recorded 95% interval."""
    value = (r.test or {}).get(key)
    if value is None:
        return "—"
    iv = ((r.test or {}).get("intervals") or {}).get(key)
    return pct(value) + (f" [{100 * iv[0]:.1f}, {100 * iv[1]:.1f}]" if iv and None not in iv else "")


def calibration_section(res: StudyResults, best: RunRecord, files: Path) -> list[str]:
    """ECE before and after temperature scaling per run, the temperature, and the best run's reliability
    diagram."""
    runs = [r for r in res.finished if (r.test or {}).get("ece") is not None]
    if not runs:
        return [note(f"No calibration: these runs were evaluated before seglab measured it ({ADD_IT}).")]

    def temperature(r: RunRecord) -> str:
        t, cal = (r.test or {}).get("temperature"), (r.test or {}).get("calibration") or {}
        if t is None:
            return wrong_text(cal.get("why_none") or "not fitted")
        bound = ", at the end of its search range: the logits say little" if cal.get("at_bound") else ""
        return f"{t:.2f} (on {cal.get('fitted_on') or 'val'}{bound})"

    def nll(r: RunRecord) -> str:
        cal = (r.test or {}).get("calibration") or {}
        before, after = cal.get("nll_before"), cal.get("nll_after")
        return "—" if before is None or after is None else f"{before:.3f} → {after:.3f}"

    table = md_table(["run", "ECE at T = 1 [95% CI]", "temperature T", "ECE at T [95% CI]", "val NLL at 1 → T"],
                     [[r.name, _ece(r, "ece"), temperature(r), _ece(r, "ece_calibrated"), nll(r)] for r in runs])
    out = [("Pixel-wise expected calibration error on test (percent, lower is better), before and after a "
           "temperature fitted on validation; 95% bootstrap intervals over test images."), table]
    worse = [r for r in runs if ((r.test or {}).get("ece_calibrated") or 0) > (r.test or {})["ece"]]
    if worse:
        out.append(note(
            f"The temperature fitted on val raised the test ECE of {esc(', '.join(r.name for r in worse))}: it "
            f"minimises the validation NLL, not the test ECE, and a temperature near 1 (an NLL that barely moves) "
            f"says the model was already about as calibrated on val as one number can make it; what is left is "
            f"the difference between val and test."))
    test = best.test or {}
    cal = test.get("calibration") or {}
    panels = [(f"as trained (T = 1): ECE {_ece(best, 'ece')}", cal.get("reliability"))]
    if cal.get("reliability_calibrated") and test.get("temperature") is not None:
        panels.append((f"T = {test['temperature']:.2f} fitted on val: ECE {_ece(best, 'ece_calibrated')}",
                       cal["reliability_calibrated"]))
    path = figures.reliability_diagram(panels, f"{best.name}: reliability on test "
                                               f"({cal.get('bins') or len((cal.get('reliability') or {}).get('accuracy') or [])} "
                                               f"equal-width bins)", files / "reliability.png")
    out += [figure(path, "reliability diagram", f"{best.name} recorded no reliability bins"),
            (f"Reliability of **{best.name}** (the best run): a bar below the diagonal is a bin where the model "
             f"is more confident than it is right (over-confident), above it under-confident. The lower panel "
             f"shows where the pixels are: bars of nearly empty bins say little.")]
    if test.get("temperature") is None:
        out.append(note(f"{best.name} has no temperature: {esc(cal.get('why_none') or 'none was fitted')}."))
    return out


def wrong_text(text: str) -> str:
    return f"*{esc(text)}*"


# -- Per-image view -------------------------------------------------------------------------------------------


def per_image_section(res: StudyResults, best: RunRecord, class_names: list[str], data_root: str | None,
                      files: Path, k: int = WORST_K) -> list[str]:
    """The distribution of per-image test mIoU per configuration, and the best run's ``k`` worst images."""
    pooled = {}
    for row in res.rows:
        mats = [r.per_image for r in row.finished if r.per_image is not None]
        if mats:
            pooled[row.config_name] = np.concatenate([per_image.image_mious(m) for m in mats])
    if not pooled:
        return [note("No per-image view: no run stored per-image test matrices (per_image_test.npz).")]
    path = figures.per_image_distribution(
        pooled, "Per-image test mIoU (one dot per test image; seeds of a configuration pooled)",
        files / "per_image.png")
    body = []
    for row in res.rows:
        if row.config_name not in pooled:
            continue
        v = pooled[row.config_name]
        v = v[~np.isnan(v)]
        body.append([row.config_name, str(len(v)), fmt_stat(row.stats["test_miou"]), f"{100 * np.median(v):.1f}",
                     f"{100 * np.percentile(v, 10):.1f}", f"{100 * v.min():.1f}",
                     f"{100 * np.mean(v < per_image.FAIL_IOU):.0f}%"])
    out = [figure(path, "per-image mIoU", "no image has labelled pixels"),
           ("Each test image scored on its own (its mIoU over the classes in its labels or its prediction). The "
            "split mIoU sums every image's pixels first, so it is not the mean of these."),
           md_table(["configuration", "images", "split mIoU %", "median %", "10th percentile %", "worst %",
                     f"images below {100 * per_image.FAIL_IOU:.0f}%"], body)]
    return out + worst_section(best, class_names, data_root, files, k)


def worst_section(best: RunRecord, class_names: list[str], data_root: str | None, files: Path,
                  k: int = WORST_K) -> list[str]:
    """The best run's ``k`` worst test images: a table of their mIoU and failed classes, and an overlay."""
    found = best.run_dir.read_per_image("test") if best.finished else None
    if found is None:
        return [note(f"No worst images: {best.name} stored no per-image test matrices.")]
    mats, names = found
    worst = per_image.worst_images(mats, names, class_names, k)
    if not worst:
        return [note(f"No worst images: no test image of {best.name} has labelled pixels.")]
    failed = f"classes that failed (IoU < {100 * per_image.FAIL_IOU:.0f}% where labelled, missed, or spurious)"
    table = md_table(["rank", "test image", "image mIoU %", failed],
                     [[str(i + 1), esc(w.name), f"{100 * w.miou:.1f}", esc(failed_text(w.failures))]
                      for i, w in enumerate(worst)])
    out = [f"The {len(worst)} test images where **{best.name}** (the best run) scores lowest:", table]
    return out + [*worst_overlay(best, worst, data_root, files)]


def failed_text(failures: list, most: int = 6) -> str:
    """The worst ``most`` failed classes of an image in words, and how many more there are."""
    if not failures:
        return "none below the threshold"
    text = ", ".join(per_image.failure_text(f) for f in failures[:most])
    return text + (f" and {len(failures) - most} more" if len(failures) > most else "")


def worst_overlay(best: RunRecord, worst: list, data_root: str | None, files: Path) -> list[str]:
    """Image, truth, prediction and errors of the worst images, or a note that says why there is none."""
    if not best.run_dir.best.is_file() and not best.run_dir.last.is_file():
        return [note(f"No overlay of the worst images: {best.name} has no checkpoint (checkpoints/best.ckpt).")]
    try:
        ex, names, colors = figures.predict_examples(best, data_root, names=[w.name for w in worst])
    except SeglabError as e:
        return [note(f"No overlay of the worst images: {esc(str(e))}.")]
    except Exception as e:  # noqa: BLE001 - a broken optional figure must not cost the whole report
        return [note(f"No overlay of the worst images: inference failed ({type(e).__name__}: "
                     f"{esc(first_line(e, 200))}).")]
    labelled = [(f"#{i + 1} {name} (mIoU {100 * w.miou:.1f}%)", image, truth, pred)
                for i, (w, (name, image, truth, pred)) in enumerate(zip(worst, ex))]
    path = figures.qualitative_grid(labelled, names, colors, f"{best.name}: its worst test images",
                                    files / "worst.png")
    return [figure(path, "worst test images", "the test split is empty"),
            "Native resolution, predicted again from the scored checkpoint. Error map: red = wrong, grey = void."]
