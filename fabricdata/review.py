"""Error review after a fine-tune: predictions into FiftyOne, COCO-style evaluation, misdetection views.

``runs/R/predictions.jsonl`` becomes the field ``pred_R`` (Detections with their real confidences), evaluated with
FiftyOne's ``evaluate_detections`` under ``eval_R``. The mistakes become saved views the annotators open in the
App (``R-false-positives``, ``R-missed``, ``R-mislocated``, ``R-confused``; with a previous run,
``R-regressions`` and ``R-fixed``; label suspects ``R-possible-missing`` (a sure prediction with no box under it:
the annotator may have missed a defect) and ``R-possible-spurious`` (a box no prediction comes near, in any class
or place: it may not be a defect), FiftyOne Brain's mistakenness rules computed from the same evaluation), plus
``runs/R/report.md`` and plots. Reviewing a run again replaces all of it.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fabricdata.boxes import Box, ImageSize, box_to_fiftyone, corners_ordered, fiftyone_to_box, iou
from fabricdata.errors import DatasetError
from fabricdata.fileio import atomic_write_text
from fabricdata.jsonl import LineError, read_jsonl
from fabricdata.models import PredictionRecord
from fabricdata.store import GT_FIELD, detections_document, detections_layout_matches, fiftyone, load_dataset

MIN_MISLOCATED_IOU = 0.1
BACKGROUND = "(background)"
#: predicted labels that are not classes of the dataset, as one row/column of the confusion matrix
OTHER = "(other)"
#: predictions below this confidence are not stored (a random model's junk would swamp evaluation)
MIN_CONFIDENCE = 0.05
VIEW_KINDS = (
    "false-positives",
    "missed",
    "mislocated",
    "confused",
    "regressions",
    "fixed",
    "possible-missing",
    "possible-spurious",
)


def slug(run: str) -> str:
    """A run name usable in field names: ``run 1.2`` -> ``run_1_2``."""
    return re.sub(r"[^A-Za-z0-9_]", "_", run)


@dataclass(slots=True)
class ReviewSummary:
    run: str
    pred_field: str
    eval_key: str
    images: int
    predictions: int
    ground_truth: int
    map: float  # mAP@[.5:.95], COCO-style
    ap50: float
    ap75: float
    per_class_ap: dict[str, float]
    best_f1_threshold: float
    precision: float
    recall: float
    f1: float
    confusion: dict[str, dict[str, int]]
    views: dict[str, int] = field(default_factory=dict)
    unmatched_images: list[str] = field(default_factory=list)
    compare: str | None = None
    #: the dataset the run was reviewed in (the App commands of the report name it)
    dataset: str = ""
    #: predictions not stored because their confidence was below the floor
    below_min_confidence: int = 0
    #: stored predictions whose label is not one of the dataset's classes (the "(other)" row)
    outside_classes: int = 0


def load_predictions(path: Path) -> list[PredictionRecord]:
    if not path.is_file():
        raise DatasetError(f"{path}: no predictions; run 'fabricdata predict' for this run first")
    return list(read_jsonl(path, "a prediction record", _prediction))


def _prediction(data: dict[str, Any]) -> PredictionRecord:
    record = PredictionRecord.model_validate(data)
    for index, det in enumerate(record.detections):
        if not corners_ordered(det.bbox):
            raise LineError(f"detections[{index}].bbox", "corners out of order", det.bbox)
    return record


def _match_samples(dataset: Any, records: list[PredictionRecord]) -> tuple[dict[str, PredictionRecord], list[str]]:
    """Sample id -> its <OD> prediction, by original file path (else by file name); and the unmatched images."""
    ids, paths = dataset.values(["id", "filepath"])
    by_path = dict(zip(paths, ids, strict=True))
    by_name: dict[str, list[str]] = defaultdict(list)
    for path, sid in by_path.items():
        by_name[Path(path).name].append(sid)
    matched: dict[str, PredictionRecord] = {}
    unmatched = []
    for record in records:
        if record.task != "<OD>":
            continue
        sid = by_path.get(record.filepath or "")
        if sid is None and len(by_name.get(record.image, [])) == 1:
            sid = by_name[record.image][0]
        if sid is None:
            unmatched.append(record.filepath or record.image)
        else:
            matched[sid] = record
    return matched, unmatched


def _clear(dataset: Any, name: str, pred_field: str, eval_key: str) -> None:
    """Remove everything an earlier review of this run left, so reviewing twice replaces, never duplicates."""
    if dataset.has_evaluation(eval_key):
        dataset.delete_evaluation(eval_key)
    for key in (f"mistakenness_{slug(name)}",):
        if key in dataset.list_brain_runs():
            dataset.delete_brain_run(key)
    schema = dataset.get_field_schema(flat=True)
    for path in (
        pred_field,
        f"{GT_FIELD}.detections.mistakenness_{slug(name)}",
        f"{GT_FIELD}.detections.mistakenness_{slug(name)}_loc",
        f"{GT_FIELD}.detections.possible_spurious_{slug(name)}",
    ):
        if path in schema:
            dataset.delete_sample_field(path)
    for kind in VIEW_KINDS:
        if dataset.has_saved_view(f"{name}-{kind}"):
            dataset.delete_saved_view(f"{name}-{kind}")


def _store(dataset: Any, pred_field: str, matched: dict[str, PredictionRecord], min_confidence: float) -> int:
    """Store the predictions at or above ``min_confidence``; returns how many were below it.

    Written as documents (``set_values`` without re-validation; the values are built typed right here) when
    their layout is FiftyOne's own, else through FiftyOne's objects.
    """
    fo = fiftyone()
    rows: dict[str, list[tuple[str, list[float], float]]] = {}
    dropped = 0
    ids, widths, heights = dataset.select(list(matched)).values(["id", "metadata.width", "metadata.height"])
    for sid, width, height in zip(ids, widths, heights, strict=True):
        size = ImageSize(int(width), int(height))
        kept = [d for d in matched[sid].detections if d.confidence >= min_confidence]
        dropped += len(matched[sid].detections) - len(kept)
        rows[sid] = [(d.label, box_to_fiftyone(Box(*d.bbox), size), d.confidence) for d in kept]
    if detections_layout_matches():
        dataset.add_sample_field(pred_field, fo.EmbeddedDocumentField, embedded_doc_type=fo.Detections)
        values: dict[str, Any] = {sid: detections_document(sample_rows) for sid, sample_rows in rows.items()}
    else:
        values = {
            sid: fo.Detections(
                detections=[fo.Detection(label=lab, bounding_box=box, confidence=c) for lab, box, c in sample_rows]
            )
            for sid, sample_rows in rows.items()
        }
    dataset.set_values(pred_field, values, key_field="id", validate=False)
    return dropped


def _ap_at(results: Any, thresh: float) -> tuple[float, dict[str, float]]:
    index = int(np.argmin(np.abs(results.iou_threshs - thresh)))
    per_class = {}
    for k, name in enumerate(results.classes):
        curve = results.precision[index, k, :]
        if (curve > -1).any():
            per_class[str(name)] = float(np.mean(curve))
    return (float(np.mean(list(per_class.values()))) if per_class else 0.0), per_class


def _rows(view: Any, pred_field: str, eval_key: str) -> list[tuple[str, ImageSize, list[Any], list[Any]]]:
    """Per sample: id, size, ground truth as (id, label, box, eval), predictions as (id, label, box, eval, conf)."""
    columns = view.values(
        [
            "id",
            "metadata.width",
            "metadata.height",
            f"{GT_FIELD}.detections.id",
            f"{GT_FIELD}.detections.label",
            f"{GT_FIELD}.detections.bounding_box",
            f"{GT_FIELD}.detections.{eval_key}",
            f"{pred_field}.detections.id",
            f"{pred_field}.detections.label",
            f"{pred_field}.detections.bounding_box",
            f"{pred_field}.detections.{eval_key}",
            f"{pred_field}.detections.confidence",
        ]
    )
    rows = []
    for sid, w, h, gid, glab, gbox, gev, pid, plab, pbox, pev, pconf in zip(*columns, strict=True):
        size = ImageSize(int(w), int(h))
        gts = [
            (i, lab, fiftyone_to_box(b, size), e)
            for i, lab, b, e in zip(gid or [], glab or [], gbox or [], gev or [], strict=True)
        ]
        preds = [
            (i, lab, fiftyone_to_box(b, size), e, c)
            for i, lab, b, e, c in zip(pid or [], plab or [], pbox or [], pev or [], pconf or [], strict=True)
        ]
        rows.append((sid, size, gts, preds))
    return rows


@dataclass(slots=True)
class Mistakes:
    """Label ids of each kind of mistake, and the confusion matrix."""

    mislocated: list[str] = field(default_factory=list)
    confused: list[str] = field(default_factory=list)
    #: unmatched predictions above SURE_CONFIDENCE that no ground-truth box explains
    possible_missing: list[str] = field(default_factory=list)
    #: unmatched ground-truth boxes that no prediction comes near
    possible_spurious: list[str] = field(default_factory=list)
    confusion: dict[str, dict[str, int]] = field(default_factory=dict)


#: a false positive this sure suggests a missing label (FiftyOne Brain's threshold)
SURE_CONFIDENCE = 0.95


def _mistakes(rows: list[Any], threshold: float, classes: Sequence[str]) -> Mistakes:
    """Mislocated and confused label ids, label suspects, and the class confusion matrix (with background;
    predicted labels that are no class of the dataset count in one ``(other)`` column)."""
    found = Mistakes()
    mislocated, confused = found.mislocated, found.confused
    known = set(classes)
    matrix: dict[str, Counter[str]] = defaultdict(Counter)

    def column(label: str) -> str:
        return label if label in known else OTHER

    for _, _, gts, preds in rows:
        free_gts = [g for g in gts if g[3] == "fn"]
        for g in gts:
            if g[3] == "tp":
                matrix[g[1]][g[1]] += 1
        used: set[str] = set()
        for pid, plabel, pbox, peval, confidence in sorted(preds, key=lambda p: -p[4]):
            if peval == "tp":
                continue
            same = [(iou(pbox, g[2]), g) for g in free_gts if g[1] == plabel and g[0] not in used]
            other = [(iou(pbox, g[2]), g) for g in free_gts if g[1] != plabel and g[0] not in used]
            best_same = max(same, default=(0.0, None), key=lambda x: x[0])
            best_other = max(other, default=(0.0, None), key=lambda x: x[0])
            if best_other[1] is not None and best_other[0] >= threshold:
                confused += [pid, best_other[1][0]]
                used.add(best_other[1][0])
                matrix[best_other[1][1]][column(plabel)] += 1
            elif best_same[1] is not None and MIN_MISLOCATED_IOU <= best_same[0] < threshold:
                mislocated += [pid, best_same[1][0]]
                used.add(best_same[1][0])
                matrix[BACKGROUND][column(plabel)] += 1
                matrix[best_same[1][1]][BACKGROUND] += 1
            else:
                matrix[BACKGROUND][column(plabel)] += 1
                if confidence > SURE_CONFIDENCE:
                    found.possible_missing.append(pid)
        for g in free_gts:
            if g[0] not in used:
                matrix[g[1]][BACKGROUND] += 1
                if not any(iou(g[2], p[2]) >= MIN_MISLOCATED_IOU for p in preds):
                    found.possible_spurious.append(g[0])
    found.confusion = {gt: dict(row) for gt, row in matrix.items()}
    return found


def _best_f1(rows: list[Any]) -> tuple[float, float, float, float]:
    scored = sorted(((p[4], p[3] == "tp") for _, _, _, preds in rows for p in preds), key=lambda x: -x[0])
    total_gt = sum(len(gts) for _, _, gts, _ in rows)
    best = (1.0, 0.0, 0.0, 0.0)  # threshold, precision, recall, f1
    tp = 0
    for rank, (confidence, hit) in enumerate(scored, start=1):
        tp += hit
        precision, recall = tp / rank, tp / total_gt if total_gt else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        if f1 > best[3]:
            best = (confidence, precision, recall, f1)
    return best


def review(
    dataset_name: str,
    run_folder: str | Path,
    compare: str | Path | None = None,
    iou_threshold: float = 0.5,
    progress: Callable[[str], None] | None = None,
    name: str | None = None,
    min_confidence: float = MIN_CONFIDENCE,
) -> ReviewSummary:
    """Review a run; ``name`` (default: the run folder's name) names its field, eval key and views.

    Predictions below ``min_confidence`` are not stored, so review time tracks real detections."""

    fo = fiftyone()
    F = fo.ViewField  # noqa: N806 - FiftyOne's own idiom
    folder = Path(run_folder)
    name = name or folder.name
    pred_field, eval_key = f"pred_{slug(name)}", f"eval_{slug(name)}"
    dataset = load_dataset(dataset_name)
    records = load_predictions(folder / "predictions.jsonl")
    if not records:
        raise DatasetError(
            f"{folder}/predictions.jsonl is empty: the split it predicted had no images (an empty export split)"
        )
    tasks = sorted({record.task for record in records} - {"<OD>"})
    if tasks and all(record.task != "<OD>" for record in records):
        raise DatasetError(
            f"{folder}/predictions.jsonl holds {', '.join(tasks)} predictions; review evaluates <OD>: "
            "run 'fabricdata predict --task od' for this run first"
        )
    matched, unmatched = _match_samples(dataset, records)
    if not matched:
        raise DatasetError(f"{folder}/predictions.jsonl: none of its images is in dataset {dataset_name!r}")
    say = progress or (lambda _: None)
    _clear(dataset, name, pred_field, eval_key)
    say("storing predictions")
    dropped = _store(dataset, pred_field, matched, min_confidence)
    classes = list(dataset.default_classes or [])
    view = dataset.select(list(matched))
    say("evaluating (COCO-style)")
    results = view.evaluate_detections(
        pred_field,
        gt_field=GT_FIELD,
        eval_key=eval_key,
        compute_mAP=True,
        iou=iou_threshold,
        classwise=True,
        progress=False,
    )
    rows = _rows(view, pred_field, eval_key)
    mistakes = _mistakes(rows, iou_threshold, classes)
    mislocated, confused = mistakes.mislocated, mistakes.confused
    threshold, precision, recall, f1 = _best_f1(rows)
    ap50, _ = _ap_at(results, 0.5)
    ap75, _ = _ap_at(results, 0.75)
    classwise = {str(c): float(a) for c, a in zip(results.classes, results._classwise_AP, strict=True) if a > -1}
    conf = F(f"{pred_field}.detections.confidence").max()
    views: dict[str, Any] = {
        "false-positives": view.filter_labels(pred_field, F(eval_key) == "fp").sort_by(conf, reverse=True),
        "missed": view.filter_labels(GT_FIELD, F(eval_key) == "fn"),
        "mislocated": view.select_labels(ids=mislocated, fields=[GT_FIELD, pred_field]),
        "confused": view.select_labels(ids=confused, fields=[GT_FIELD, pred_field]),
        "possible-missing": _only(view, pred_field, mistakes.possible_missing).sort_by(conf, reverse=True),
        "possible-spurious": _only(view, GT_FIELD, mistakes.possible_spurious).sort_by(
            F(f"{GT_FIELD}.detections").length(), reverse=True
        ),
    }
    counts = _view_counts(rows, mistakes)
    if compare is not None:
        old = _previous_summary(compare) or {}
        old_name = str(old.get("run") or Path(compare).name)
        worse, better = _comparison(
            dataset,
            view,
            (eval_key, pred_field, threshold),
            (f"eval_{slug(old_name)}", f"pred_{slug(old_name)}", float(old.get("best_f1_threshold") or 0.0)),
        )
        views.update({"regressions": view.select(worse), "fixed": view.select(better)})
        counts.update({"regressions": len(worse), "fixed": len(better)})
    saved = {}
    for kind, kind_view in views.items():
        if kind in ("mislocated", "confused") and not (mislocated if kind == "mislocated" else confused):
            kind_view = view.limit(0)
        dataset.save_view(f"{name}-{kind}", kind_view, overwrite=True)
        saved[f"{name}-{kind}"] = counts[kind]
    summary = ReviewSummary(
        dataset=dataset_name,
        run=name,
        pred_field=pred_field,
        eval_key=eval_key,
        images=len(matched),
        predictions=sum(len(p) for _, _, _, p in rows),
        ground_truth=sum(len(g) for _, _, g, _ in rows),
        map=float(results.mAP()),
        ap50=ap50,
        ap75=ap75,
        per_class_ap=classwise,
        best_f1_threshold=threshold,
        precision=precision,
        recall=recall,
        f1=f1,
        confusion=mistakes.confusion,
        views=saved,
        unmatched_images=unmatched,
        compare=str(compare) if compare is not None else None,
        below_min_confidence=dropped,
        outside_classes=sum(1 for _, _, _, preds in rows for p in preds if p[1] not in classes),
    )
    write_report(folder, summary, results, compare)
    return summary


def _view_counts(rows: list[Any], mistakes: Mistakes) -> dict[str, int]:
    """Samples in each view, counted from the evaluation already read (no query per view)."""
    sample_of: dict[str, str] = {}
    counts = {"false-positives": 0, "missed": 0}
    for sid, _, gts, preds in rows:
        sample_of.update({g[0]: sid for g in gts})
        sample_of.update({p[0]: sid for p in preds})
        counts["false-positives"] += any(p[3] == "fp" for p in preds)
        counts["missed"] += any(g[3] == "fn" for g in gts)
    kinds = {
        "mislocated": mistakes.mislocated,
        "confused": mistakes.confused,
        "possible-missing": mistakes.possible_missing,
        "possible-spurious": mistakes.possible_spurious,
    }
    counts.update({kind: len({sample_of[i] for i in ids}) for kind, ids in kinds.items()})
    return counts


def _only(view: Any, field: str, ids: list[str]) -> Any:
    """Samples with any of the labels ``ids`` in ``field``, showing only those of that field (others stay)."""
    from bson import ObjectId

    fo = fiftyone()
    return view.filter_labels(field, fo.ViewField("_id").is_in([ObjectId(i) for i in ids]))


def _comparison(
    dataset: Any, view: Any, new: tuple[str, str, float], old: tuple[str, str, float]
) -> tuple[list[str], list[str]]:
    """Per ground-truth box and per confident prediction, against an earlier run (each given as eval key,
    prediction field, best-F1 confidence). ``fixed``: a box found now and missed before. ``regressions``: a box
    missed now and found before, or more false positives above the run's best-F1 confidence than the earlier
    run had above its own. A run that predicts nothing fixes nothing."""
    (new_key, new_pred, new_conf), (old_key, old_pred, old_conf) = new, old
    if not dataset.has_evaluation(old_key):
        raise DatasetError(f"--compare: run {old_key[5:]!r} has not been reviewed on this dataset (no {old_key})")
    columns = view.values(
        [
            "id",
            f"{GT_FIELD}.detections.{new_key}",
            f"{GT_FIELD}.detections.{old_key}",
            f"{new_pred}.detections.{new_key}",
            f"{new_pred}.detections.confidence",
            f"{old_pred}.detections.{old_key}",
            f"{old_pred}.detections.confidence",
        ]
    )
    worse: list[str] = []
    better: list[str] = []
    for sid, gt_new, gt_old, p_new, c_new, p_old, c_old in zip(*columns, strict=True):
        if gt_old is None and p_old is None:
            continue  # the earlier run did not see this image
        pairs = list(zip(gt_new or [], gt_old or [], strict=False))
        fixed = any(n == "tp" and o == "fn" for n, o in pairs)
        lost = any(n == "fn" and o == "tp" for n, o in pairs)
        fp_new = sum(e == "fp" and c >= new_conf for e, c in zip(p_new or [], c_new or [], strict=True))
        fp_old = sum(e == "fp" and c >= old_conf for e, c in zip(p_old or [], c_old or [], strict=True))
        if lost or fp_new > fp_old:
            worse.append(sid)
        if fixed:
            better.append(sid)
    return worse, better


# --- report ----------------------------------------------------------------------------------------------


def write_report(folder: Path, summary: ReviewSummary, results: Any, compare: str | Path | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    previous = _previous_summary(compare)
    (folder / "review.json").write_text(json.dumps(asdict(summary), indent=2) + "\n", encoding="utf-8")
    _pr_plot(plt, results, folder / "pr_curves.png")
    _confusion_plot(plt, summary.confusion, folder / "confusion_matrix.png")
    if previous is not None:
        _ap_plot(plt, summary, previous, folder / "ap_per_class.png")
    atomic_write_text(folder / "report.md", _markdown(summary, previous))


def _previous_summary(compare: str | Path | None) -> dict[str, Any] | None:
    if compare is None:
        return None
    path = Path(compare) / "review.json"
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
    figure.savefig(out)
    plt.close(figure)


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
    figure.savefig(out)
    plt.close(figure)


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
    figure.savefig(out)
    plt.close(figure)


def _markdown(summary: ReviewSummary, previous: dict[str, Any] | None) -> str:
    lines = [
        f"# Review of run `{summary.run}`",
        "",
        f"{summary.images} images, {summary.ground_truth} ground-truth boxes, {summary.predictions} predictions.",
        "",
        "| metric | value |" + (f" {previous['run']} |" if previous else ""),
        "|---|---|" + ("---|" if previous else ""),
    ]
    for key in ("map", "ap50", "ap75", "precision", "recall", "f1", "best_f1_threshold"):
        old = f" {previous[key]:.3f} |" if previous else ""
        lines.append(f"| {key} | {getattr(summary, key):.3f} |{old}")
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
