"""The written side of a review: ``review.json``, ``report.md`` (metrics beside an earlier run, AP per class, the
views to open with their App commands) and the plots (PR curves, confusion matrix, AP per class)."""

from __future__ import annotations

import io
import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fabricdata.core.contracts import RunFolder
from fabricdata.core.fileio import atomic_write_bytes, atomic_write_text

if TYPE_CHECKING:
    from fabricdata.review.review import ReviewSummary

#: the confusion matrix's row and column for "no box" (a missed box, a false positive)
BACKGROUND = "(background)"


def write_report(folder: Path, summary: ReviewSummary, results: Any, compare: str | Path | None) -> None:
    """``review.json``, ``report.md`` and the plots of a reviewed run, beside its predictions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    previous = previous_summary(compare)
    atomic_write_text(RunFolder(folder).review, json.dumps(asdict(summary), indent=2) + "\n")
    _pr_plot(plt, results, folder / "pr_curves.png")
    _confusion_plot(plt, summary.confusion, folder / "confusion_matrix.png")
    if previous is not None:
        _ap_plot(plt, summary, previous, folder / "ap_per_class.png")
    atomic_write_text(RunFolder(folder).report, _markdown(summary, previous))


def _save(plt: Any, figure: Any, out: Path) -> None:
    """A plot as a PNG, written atomically (a full disk leaves the earlier plot, never half of one)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    atomic_write_bytes(out, buffer.getvalue())


def previous_summary(compare: str | Path | None) -> dict[str, Any] | None:
    """The ``review.json`` of an earlier run folder (None: no folder given, or never reviewed)."""
    if compare is None:
        return None
    path = RunFolder(Path(compare)).review
    return json.loads(path.read_text()) if path.is_file() else None


def _pr_plot(plt: Any, results: Any, out: Path) -> None:
    figure, axis = plt.subplots(figsize=(6, 4.5), dpi=110)
    index = int(np.argmin(np.abs(results.iou_threshs - 0.5)))
    for k, name in enumerate(results.classes):
        curve = results.precision[index, k, :]
        if (curve > -1).any():
            axis.plot(results.recall, np.maximum(curve, 0), label=f"{name} (AP50 {np.mean(curve):.2f})")
    axis.set(xlabel="recall", ylabel="precision", title="PR curves at IoU 0.5", xlim=(0, 1), ylim=(0, 1.02))
    axis.grid(alpha=0.3)
    axis.legend(loc="lower left")
    figure.tight_layout()
    _save(plt, figure, out)


def _confusion_plot(plt: Any, confusion: dict[str, dict[str, int]], out: Path) -> None:
    classes = {*confusion, *(c for row in confusion.values() for c in row)} - {BACKGROUND}
    names = [*sorted(classes), BACKGROUND]
    matrix = np.array([[confusion.get(g, {}).get(p, 0) for p in names] for g in names])
    figure, axis = plt.subplots(figsize=(5.5, 4.5), dpi=110)
    axis.imshow(matrix, cmap="Blues")
    axis.set_xticks(range(len(names)), names, rotation=30, ha="right")
    axis.set_yticks(range(len(names)), names)
    for (i, j), value in np.ndenumerate(matrix):
        axis.text(j, i, str(value), ha="center", va="center", color="black" if value < matrix.max() / 2 else "white")
    axis.set(xlabel="predicted", ylabel="ground truth", title="confusion (IoU match, with background)")
    figure.tight_layout()
    _save(plt, figure, out)


def _ap_plot(plt: Any, summary: ReviewSummary, previous: dict[str, Any], out: Path) -> None:
    names = sorted(set(summary.per_class_ap) | set(previous["per_class_ap"]))
    x = np.arange(len(names))
    figure, axis = plt.subplots(figsize=(6, 4), dpi=110)
    axis.bar(x - 0.2, [previous["per_class_ap"].get(n, 0) for n in names], 0.4, label=previous["run"])
    axis.bar(x + 0.2, [summary.per_class_ap.get(n, 0) for n in names], 0.4, label=summary.run)
    axis.set_xticks(x, names)
    axis.set(ylabel="AP@[.5:.95]", title="AP per class")
    axis.legend()
    figure.tight_layout()
    _save(plt, figure, out)


def _markdown(summary: ReviewSummary, previous: dict[str, Any] | None) -> str:
    lines = [
        f"# Review of run `{summary.run}`",
        "",
        f"{summary.images} images, {summary.ground_truth} ground-truth boxes, {summary.predictions} predictions.",
        f"Predicted on {summary.tiling} (evaluated on the whole frames).",
        "",
        "| metric | value |" + (f" {previous['run']} |" if previous else ""),
        "|---|---|" + ("---|" if previous else ""),
    ]
    for key in ("map", "ap50", "ap75", "precision", "recall", "f1", "best_f1_threshold"):
        old = f" {previous[key]:.3f} |" if previous else ""
        lines.append(f"| {key} | {getattr(summary, key):.3f} |{old}")
    if summary.label_change:
        lines += ["", f"Labels: {summary.label_change}."]
    lines += ["", "## AP@[.5:.95] per class", "", "| class | AP |", "|---|---|"]
    lines += [f"| {name} | {ap:.3f} |" for name, ap in sorted(summary.per_class_ap.items())]
    lines += ["", "## Views to open in the App", "", "| view | samples | open |", "|---|---|---|"]
    lines += [
        f"| {view} | {count} | `fabricdata app --dataset {summary.dataset} --view {view}` |"
        for view, count in summary.views.items()
    ]
    lines += ["", "![PR curves](pr_curves.png)", "", "![confusion](confusion_matrix.png)", ""]
    if previous:
        lines += ["![AP per class](ap_per_class.png)", ""]
    if summary.unmatched_images:
        lines += ["## Predictions whose image is not in the dataset", ""]
        lines += [f"- {image}" for image in summary.unmatched_images] + [""]
    return "\n".join(lines)
