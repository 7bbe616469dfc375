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

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fabricdata.core import faults
from fabricdata.core.contracts import PredictionRecord, RunFolder
from fabricdata.core.errors import DatasetError
from fabricdata.review.mistakes import (
    Mistakes,
    SampleRow,
    best_f1,
    cross_matches,
    evaluated_rows,
    find_mistakes,
    view_counts,
)
from fabricdata.review.predictions import (
    STAGED,
    discard_staged,
    load_predictions,
    match_samples,
    publish,
    save_views,
    slug,
    store_predictions,
)
from fabricdata.review.report import previous_summary, write_report
from fabricdata.store.dataset import GT_FIELD, fiftyone, load_dataset, scope
from fabricdata.store.labeldiff import Side, diff_tables, statement
from fabricdata.store.locks import holds_dataset
from fabricdata.store.versions import VersionStore, run_version

#: predictions below this confidence are not stored (a random model's junk would swamp evaluation)
MIN_CONFIDENCE = 0.05


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
    #: how the frames were predicted: "whole frames", or the tiling of a sliced prediction (merged onto the frame)
    tiling: str = "whole frames"
    #: with a compared run: the label change between the two runs' versions beside the change of mAP
    label_change: str | None = None


def _ap_at(results: Any, thresh: float) -> tuple[float, dict[str, float]]:
    index = int(np.argmin(np.abs(results.iou_threshs - thresh)))
    per_class = {}
    for k, name in enumerate(results.classes):
        curve = results.precision[index, k, :]
        if (curve > -1).any():
            per_class[str(name)] = float(np.mean(curve))
    return (float(np.mean(list(per_class.values()))) if per_class else 0.0), per_class


@holds_dataset("review")
def review(
    dataset_name: str,
    run_folder: str | Path,
    compare: str | Path | None = None,
    iou_threshold: float = 0.5,
    progress: Callable[[str], None] | None = None,
    name: str | None = None,
    min_confidence: float = MIN_CONFIDENCE,
) -> ReviewSummary:
    """Review a run; ``name`` (default: the run folder's name) names its field, eval key and views. Predictions
    below ``min_confidence`` are not stored, so review time tracks real detections.

    The new review is built beside an earlier review of the run and replaces it only when complete
    (:func:`fabricdata.review.predictions.publish`), under the dataset's lease (two reviews of one run take turns).

    Raises:
        InvalidValueError: a line of ``predictions.jsonl`` is unusable (not UTF-8, not a record, oversize).
        DatasetError: nothing to review, or ``compare`` was never reviewed here.
    """
    folder = Path(run_folder)
    name = name or folder.name
    pred_field, eval_key = f"pred_{slug(name)}", f"eval_{slug(name)}"
    staged = (pred_field + STAGED, eval_key + STAGED)
    dataset = load_dataset(dataset_name)
    say = progress or (lambda _: None)
    # 1. the run's <OD> predictions, checked and matched to samples, stored beside any earlier review of R
    matched, unmatched = _read_run(dataset, folder)
    if (within := scope()) is not None:  # a view's samples only (fabricdata.api)
        matched = {sid: record for sid, record in matched.items() if sid in within}
    discard_staged(dataset, pred_field, eval_key)
    say("storing predictions")
    dropped = store_predictions(dataset, staged[0], matched, min_confidence)
    classes = list(dataset.default_classes or [])
    view = dataset.select(list(matched))
    # 2. FiftyOne's COCO-style evaluation, and the mistakes read back from it
    say("evaluating (COCO-style)")
    results = view.evaluate_detections(
        staged[0], gt_field=GT_FIELD, eval_key=staged[1], compute_mAP=True, iou=iou_threshold, classwise=True,
        progress=False,
    )  # fmt: skip
    rows = evaluated_rows(view, *staged)
    mistakes = find_mistakes(rows, cross_matches(view, rows, staged[0], iou_threshold), classes)
    threshold, precision, recall, f1 = best_f1(rows)
    extra = _comparison_ids(dataset, view, (staged[1], staged[0], threshold), compare)
    faults.point("review.stored")
    # 3. the swap, then one saved view per kind of mistake (and against an earlier run), each over the old one
    publish(dataset, name, pred_field, eval_key)
    views, counts = _mistake_views(view, pred_field, eval_key, rows, mistakes)
    for kind, ids in extra.items():
        views[kind], counts[kind] = view.select(ids), len(ids)
    save_views(dataset, name, views)
    saved = {f"{name}-{kind}": counts[kind] for kind in views}
    # 4. the summary and the report
    summary = ReviewSummary(
        dataset=dataset_name,
        run=name,
        pred_field=pred_field,
        eval_key=eval_key,
        images=len(matched),
        **_figures(results, rows, classes),
        best_f1_threshold=threshold,
        precision=precision,
        recall=recall,
        f1=f1,
        confusion=mistakes.confusion,
        views=saved,
        unmatched_images=unmatched,
        compare=str(compare) if compare is not None else None,
        below_min_confidence=dropped,
        tiling=predicted_tiling(matched.values()),
    )
    if compare is not None:
        summary.label_change = label_change(folder, Path(compare), name, summary.map)
    write_report(folder, summary, results, compare)
    return summary


def predicted_tiling(records: Iterable[PredictionRecord]) -> str:
    """How a run's frames were predicted: "whole frames", or its sliced predictions' tiling(s), merged back
    onto the whole frame before evaluation (``+ whole frame`` where a whole-frame pass was merged in)."""
    kinds = set()
    for record in records:
        sliced = record.sliced
        if sliced is None:
            kinds.add("whole frames")
        else:
            kinds.add(f"tiles {sliced.tiling.describe()}" + (" + whole frame" if sliced.full_frame else ""))
    return "; ".join(sorted(kinds)) or "whole frames"


def label_change(folder: Path, earlier: Path, name: str, new_map: float) -> str:
    """``r4 trained on v7, r3 on v5: 41 boxes changed (...) in 30 images; mAP +0.060 (0.512 vs 0.452)``: the
    labels each run trained on (their export manifests name the versions) and the box-level change between them."""
    old = previous_summary(earlier) or {}
    old_name = str(old.get("run") or earlier.name)
    old_map = old.get("map")
    metric = (
        f"mAP {new_map - old_map:+.3f} ({new_map:.3f} vs {old_map:.3f})" if old_map is not None else "no earlier mAP"
    )
    try:
        new_version, old_version = run_version(folder), run_version(earlier)
    except DatasetError as exc:
        return f"{name} vs {old_name}: labels not compared ({exc}); {metric}"
    missing = [run for run, version in ((name, new_version), (old_name, old_version)) if version is None]
    if missing or new_version is None or old_version is None:
        return f"{' and '.join(missing)}: label version not recorded (exported before versions); {metric}"
    if new_version.id == old_version.id:
        return f"{name} and {old_name} trained on the same labels ({new_version.name}); {metric}"
    try:
        before, after = (Side(v.name, v.id, VersionStore(v.dataset).read_labels(v)) for v in (old_version, new_version))
    except DatasetError as exc:
        return f"{name} vs {old_name}: labels not compared ({exc}); {metric}"
    change = statement(diff_tables(new_version.dataset, before, after))
    return f"{name} trained on {new_version.name}, {old_name} on {old_version.name}: {change}; {metric}"


def _figures(results: Any, rows: list[SampleRow], classes: Sequence[str]) -> dict[str, Any]:
    """What the evaluation measured: box counts, mAP, AP50, AP75 and AP per class (FiftyOne's public API)."""
    return {
        "predictions": sum(len(row.guesses) for row in rows),
        "ground_truth": sum(len(row.truths) for row in rows),
        "map": float(results.mAP()),
        "ap50": _ap_at(results, 0.5)[0],
        "ap75": _ap_at(results, 0.75)[0],
        "per_class_ap": {str(c): float(results.mAP([c])) for c in results.classes if results.mAP([c]) > -1},
        "outside_classes": sum(1 for row in rows for p in row.guesses if p.label not in classes),
    }


def _read_run(dataset: Any, folder: Path) -> tuple[dict[str, PredictionRecord], list[str]]:
    """The run's <OD> predictions by sample id, and the images the dataset does not hold; a run with nothing
    to review is one clear error."""
    records = load_predictions(RunFolder(folder).predictions)
    if not records:
        raise DatasetError(
            f"{RunFolder(folder).predictions} is empty: the split it predicted had no images (an empty export split)"
        )
    tasks = sorted({record.task for record in records} - {"<OD>"})
    if tasks and all(record.task != "<OD>" for record in records):
        raise DatasetError(
            f"{folder}/predictions.jsonl holds {', '.join(tasks)} predictions; review evaluates <OD>: "
            "run 'fabricdata predict --task od' for this run first"
        )
    matched, unmatched = match_samples(dataset, records)
    if not matched:
        raise DatasetError(f"{folder}/predictions.jsonl: none of its images is in dataset {dataset.name!r}")
    return matched, unmatched


def _mistake_views(
    view: Any, pred_field: str, eval_key: str, rows: list[SampleRow], mistakes: Mistakes
) -> tuple[dict[str, Any], dict[str, int]]:
    """The view of each kind of mistake, and how many samples each holds."""
    fo = fiftyone()
    F = fo.ViewField  # noqa: N806 - FiftyOne's own idiom
    conf = F(f"{pred_field}.detections.confidence").max()

    def pairs(ids: list[str]) -> Any:  # an empty id list would select every label: an empty view instead
        return view.select_labels(ids=ids, fields=[GT_FIELD, pred_field]) if ids else view.limit(0)

    views: dict[str, Any] = {
        "false-positives": view.filter_labels(pred_field, F(eval_key) == "fp").sort_by(conf, reverse=True),
        "missed": view.filter_labels(GT_FIELD, F(eval_key) == "fn"),
        "mislocated": pairs(mistakes.mislocated),
        "confused": pairs(mistakes.confused),
        "possible-missing": _only(view, pred_field, mistakes.possible_missing).sort_by(conf, reverse=True),
        "possible-spurious": _only(view, GT_FIELD, mistakes.possible_spurious).sort_by(
            F(f"{GT_FIELD}.detections").length(), reverse=True
        ),
    }
    return views, view_counts(rows, mistakes)


def _comparison_ids(
    dataset: Any, view: Any, new: tuple[str, str, float], compare: str | Path | None
) -> dict[str, list[str]]:
    """The samples of the ``regressions`` and ``fixed`` views against the earlier run reviewed from the folder
    ``compare`` (nothing without one)."""
    if compare is None:
        return {}
    old = previous_summary(compare) or {}
    old_name = str(old.get("run") or Path(compare).name)
    old_key = (f"eval_{slug(old_name)}", f"pred_{slug(old_name)}", float(old.get("best_f1_threshold") or 0.0))
    worse, better = _comparison(dataset, view, new, old_key)
    return {"regressions": worse, "fixed": better}


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
