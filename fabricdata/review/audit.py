"""An audit's results in the dataset: out-of-fold predictions stored as their own label field, every label scored
(``review.audit_scores``), the scores stored per sample and per box with the fold and run that produced them, and
the saved views the annotators open, worst first.

Fields (``store.dataset``): per sample ``audit_score`` (label quality, 1.0 = no doubt), ``audit_fold``,
``audit_run``; the field ``audit_predictions`` (each box with its ``confidence``, ``audit_calibrated`` and, when it
says a box is missing, ``audit_issue`` and ``audit_score``); per ground-truth box ``audit_issue``, ``audit_score``,
``audit_disputed_by`` (the prediction shown beside it) and every kind's score (``audit_swap``, ``audit_badloc``,
``audit_support``). Views: ``audit-missing``, ``audit-swapped``, ``audit-mislocated``, ``audit-spurious`` (the
disputed boxes with the predictions that dispute them) and ``audit-worst`` (images by label quality). Scoring
again (``fabricdata audit --rescore``, after fixes in the App) reads the stored predictions and the current labels.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from fabricdata.core.boxes import Box, box_to_fiftyone
from fabricdata.core.contracts import PredictionRecord
from fabricdata.core.errors import DatasetError
from fabricdata.review.audit_scores import (
    ISSUES,
    AuditOptions,
    AuditScores,
    ImageBoxes,
    average_precision,
    score_images,
    sure_from,
)
from fabricdata.review.review import MIN_CONFIDENCE
from fabricdata.store.columns import StoredSample, read_samples
from fabricdata.store.dataset import (
    ATTR_AUDIT_BADLOC,
    ATTR_AUDIT_CALIBRATED,
    ATTR_AUDIT_DISPUTED_BY,
    ATTR_AUDIT_ISSUE,
    ATTR_AUDIT_SCORE,
    ATTR_AUDIT_SUPPORT,
    ATTR_AUDIT_SWAP,
    F_AUDIT_FOLD,
    F_AUDIT_PREDICTIONS,
    F_AUDIT_RUN,
    F_AUDIT_SCORE,
    GT_FIELD,
    ensure_audit_schema,
    fiftyone,
    load_dataset,
)

#: the saved views of an audit (one audit per dataset: a new one replaces them)
VIEW_PREFIX = "audit-"
VIEWS: tuple[str, ...] = (*(f"{VIEW_PREFIX}{issue}" for issue in ISSUES), f"{VIEW_PREFIX}worst")
#: a fold whose model reaches less than this AP50 on its held-out images says little about their labels
WEAK_AP50 = 0.1


@dataclass(slots=True)
class FoldInfo:
    """Who predicted one fold, and how much that model knew."""

    fold: int
    #: the run folder (or predictions file) whose predictions the fold's images got
    source: str
    held_out: int
    train_images: int | None = None
    valid_images: int | None = None
    best_val_loss: float | None = None
    #: AP at IoU 0.5 of its predictions against the current labels of the held-out images
    ap50: float | None = None


@dataclass(slots=True)
class AuditSummary:
    dataset: str
    name: str
    images: int
    boxes: int
    predictions: int
    #: issue -> class -> boxes (missing: the predicted class; the others: the label's class)
    counts: dict[str, dict[str, int]]
    #: saved view -> samples in it
    views: dict[str, int]
    folds: list[FoldInfo]
    ap50: float
    #: the least raw confidence counted as sure (None: no prediction was)
    sure_confidence: float | None
    options: dict[str, float]
    warnings: list[str] = field(default_factory=list)


# --- predictions in ------------------------------------------------------------------------------------------


def store_predictions(
    dataset_name: str, matched: dict[str, tuple[PredictionRecord, int, str]], min_confidence: float = MIN_CONFIDENCE
) -> tuple[int, int]:
    """Store each sample's out-of-fold prediction (sample id -> record, fold, run or file) as ``audit_predictions``
    with ``audit_fold`` and ``audit_run``; an earlier audit's predictions and scores are removed first. Boxes below
    ``min_confidence`` are not stored (``review``'s floor: a weak model's junk would swamp the scores). Returns the
    boxes stored and the boxes below the floor."""
    fo = fiftyone()
    dataset = load_dataset(dataset_name)
    ensure_audit_schema(dataset)
    _clear(dataset)
    values: dict[str, Any] = {}
    stored = dropped = 0
    for sample in read_samples(dataset.select(list(matched)), boxes={}):
        kept = [d for d in matched[sample.id][0].detections if d.confidence >= min_confidence]
        dropped += len(matched[sample.id][0].detections) - len(kept)
        size = sample.size
        detections = [
            fo.Detection(label=d.label, bounding_box=box_to_fiftyone(Box(*d.bbox), size), confidence=d.confidence)
            for d in kept
        ]
        values[sample.id] = fo.Detections(detections=detections)
        stored += len(detections)
    view = dataset.select(list(values))
    view.set_values(F_AUDIT_PREDICTIONS, values, key_field="id")
    view.set_values(F_AUDIT_FOLD, {sid: matched[sid][1] for sid in values}, key_field="id")
    view.set_values(F_AUDIT_RUN, {sid: matched[sid][2] for sid in values}, key_field="id")
    return stored, dropped


def _clear(dataset: Any) -> None:
    """What an earlier audit stored per sample, and its views (the boxes' scores are rewritten when scored)."""
    for name in VIEWS:
        if dataset.has_saved_view(name):
            dataset.delete_saved_view(name)
    earlier = dataset.select(dataset.exists(F_AUDIT_PREDICTIONS).values("id"))
    for name in (F_AUDIT_PREDICTIONS, F_AUDIT_SCORE, F_AUDIT_FOLD, F_AUDIT_RUN):
        earlier.set_values(name, [None] * len(earlier))


# --- scoring ---------------------------------------------------------------------------------------------------


def rescore(
    dataset_name: str,
    name: str,
    folds: Sequence[FoldInfo],
    options: AuditOptions | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[AuditSummary, AuditScores]:
    """Score every sample with stored audit predictions against its current labels and store the scores and views.

    Raises:
        DatasetError: no sample has audit predictions (run the audit first).
    """
    say = progress or (lambda _: None)
    dataset = load_dataset(dataset_name)
    ensure_audit_schema(dataset)
    audited = dataset.exists(F_AUDIT_PREDICTIONS)
    if not len(audited):
        raise DatasetError(f"dataset {dataset_name!r} has no audit predictions; run 'fabricdata audit' first")
    say("reading labels and predictions")
    samples, classes, labels, predictions = audit_inputs(dataset)
    say("scoring (cleanlab)")
    scores = score_images(labels, predictions, len(classes), options)
    say("storing scores and views")
    disputing = _store_scores(dataset, samples, scores)
    _save_views(dataset, audited, disputing)
    summary = AuditSummary(
        dataset=dataset_name,
        name=name,
        images=len(samples),
        boxes=sum(len(image) for image in labels),
        predictions=sum(len(image) for image in predictions),
        counts=_counts(samples, scores),
        views=_view_counts(scores),
        folds=_fold_figures(folds, samples, predictions, scores),
        ap50=scores.ap50,
        sure_confidence=sure_from(scores),
        options={
            "sure": scores.options.sure,
            "located": scores.options.located,
            "flag_below": scores.options.flag_below,
        },
    )
    summary.warnings = limits(summary)
    return summary, scores


def audit_inputs(dataset: Any) -> tuple[list[StoredSample], list[str], list[ImageBoxes], list[ImageBoxes]]:
    """The audited samples (one bulk read), the class list, and per sample its labels and predictions as arrays."""
    audited = dataset.exists(F_AUDIT_PREDICTIONS)
    samples = list(read_samples(audited, {GT_FIELD: (), F_AUDIT_PREDICTIONS: ("confidence",)}, fields=[F_AUDIT_FOLD]))
    classes = _classes(dataset, samples)
    return (samples, classes, *_arrays(samples, classes))


def _classes(dataset: Any, samples: list[StoredSample]) -> list[str]:
    """The dataset's classes, then any other label found (kept, so no box goes unscored)."""
    classes = list(dataset.default_classes or [])
    seen = {b.label for sample in samples for boxes in sample.boxes.values() for b in boxes}
    return classes + sorted(seen - set(classes))


def _arrays(samples: list[StoredSample], classes: list[str]) -> tuple[list[ImageBoxes], list[ImageBoxes]]:
    index = {name: k for k, name in enumerate(classes)}
    labels = [ImageBoxes.of([(index[b.label], b.box.as_tuple()) for b in s.boxes[GT_FIELD]]) for s in samples]
    predictions = [
        ImageBoxes.of(
            [(index[b.label], b.box.as_tuple()) for b in s.boxes[F_AUDIT_PREDICTIONS]],
            [float(b.attributes[0] if b.attributes[0] is not None else 0.0) for b in s.boxes[F_AUDIT_PREDICTIONS]],
        )
        for s in samples
    ]
    return labels, predictions


def _store_scores(dataset: Any, samples: list[StoredSample], scores: AuditScores) -> dict[str, list[str]]:
    """Per sample its label quality; per box its issue, scores and disputing prediction. Returns, per issue, the ids
    of the predictions that dispute a box."""
    dataset.select([s.id for s in samples]).set_values(
        F_AUDIT_SCORE, {s.id: image.quality for s, image in zip(samples, scores.images, strict=True)}, key_field="id"
    )
    truth: dict[str, list[dict[str, Any]]] = defaultdict(list)
    guess: dict[str, list[dict[str, Any]]] = defaultdict(list)
    disputing: dict[str, list[str]] = defaultdict(list)
    for sample, image in zip(samples, scores.images, strict=True):
        preds = sample.boxes[F_AUDIT_PREDICTIONS]
        for i, box in enumerate(sample.boxes[GT_FIELD]):
            by = image.disputed_by[i]
            if by >= 0 and image.issues[i] is not None:
                disputing[str(image.issues[i])].append(preds[by].id)
            row = {
                ATTR_AUDIT_ISSUE: image.issues[i],
                ATTR_AUDIT_SCORE: image.scores[i],
                ATTR_AUDIT_DISPUTED_BY: preds[by].id if by >= 0 else None,
                ATTR_AUDIT_SWAP: float(image.swap[i]),
                ATTR_AUDIT_BADLOC: float(image.badloc[i]),
                ATTR_AUDIT_SUPPORT: float(image.support[i]),
            }
            for attr, value in row.items():
                truth[attr].append({"sample_id": sample.id, "label_id": box.id, "value": value})
        for j, box in enumerate(preds):
            missing = not np.isnan(image.missing[j])
            row = {
                ATTR_AUDIT_ISSUE: "missing" if missing else None,
                ATTR_AUDIT_SCORE: float(image.missing[j]) if missing else None,
                ATTR_AUDIT_CALIBRATED: float(image.calibrated[j]),
            }
            for attr, value in row.items():
                guess[attr].append({"sample_id": sample.id, "label_id": box.id, "value": value})
    _set_box_values(dataset, truth, guess)
    return disputing


def _set_box_values(
    dataset: Any, truth: dict[str, list[dict[str, Any]]], guess: dict[str, list[dict[str, Any]]]
) -> None:
    """Write the boxes' audit attributes, one bulk update per attribute (only these attributes change)."""
    for attr, rows in truth.items():
        dataset.set_label_values(f"{GT_FIELD}.detections.{attr}", rows)
    for attr, rows in guess.items():
        dataset.set_label_values(f"{F_AUDIT_PREDICTIONS}.detections.{attr}", rows)


# --- views -------------------------------------------------------------------------------------------------------


def _save_views(dataset: Any, audited: Any, disputing: dict[str, list[str]]) -> None:
    """One saved view per issue (the disputed boxes beside the predictions disputing them, worst first) and the
    images by label quality."""
    from bson import ObjectId

    F = fiftyone().ViewField  # noqa: N806 - FiftyOne's own idiom

    def issue_is(issue: str) -> Any:
        return F(ATTR_AUDIT_ISSUE) == issue

    views: dict[str, Any] = {
        "missing": audited.filter_labels(F_AUDIT_PREDICTIONS, issue_is("missing")).sort_by(
            F(f"{F_AUDIT_PREDICTIONS}.detections.{ATTR_AUDIT_SCORE}").min()
        )
    }
    for issue in ("swapped", "mislocated", "spurious"):
        disputed = audited.filter_labels(GT_FIELD, issue_is(issue))
        if issue != "spurious":  # beside each box, the prediction that disputes it
            shown = F("_id").is_in([ObjectId(i) for i in disputing.get(issue, [])])
            disputed = disputed.filter_labels(F_AUDIT_PREDICTIONS, shown, only_matches=False)
        views[issue] = disputed.sort_by([(F(f"{GT_FIELD}.detections.{ATTR_AUDIT_SCORE}").min(), 1), (F_AUDIT_SCORE, 1)])
    views["worst"] = audited.sort_by(F_AUDIT_SCORE)
    for issue, view in views.items():
        dataset.save_view(f"{VIEW_PREFIX}{issue}", view, overwrite=True)


def _view_counts(scores: AuditScores) -> dict[str, int]:
    """Samples in each view, from the scores (no query per view)."""
    counts = dict.fromkeys(VIEWS, 0)
    for image in scores.images:
        found = set(filter(None, image.issues))
        found |= {"missing"} if np.any(~np.isnan(image.missing)) else set()
        for issue in found:
            counts[f"{VIEW_PREFIX}{issue}"] += 1
    counts[f"{VIEW_PREFIX}worst"] = len(scores.images)
    return counts


def _counts(samples: list[StoredSample], scores: AuditScores) -> dict[str, dict[str, int]]:
    """Issue -> class -> boxes."""
    found: dict[str, Counter[str]] = {issue: Counter() for issue in ISSUES}
    for sample, image in zip(samples, scores.images, strict=True):
        for box, issue in zip(sample.boxes[GT_FIELD], image.issues, strict=True):
            if issue is not None:
                found[issue][box.label] += 1
        for box, missing in zip(sample.boxes[F_AUDIT_PREDICTIONS], image.missing, strict=True):
            if not np.isnan(missing):
                found["missing"][box.label] += 1
    return {issue: dict(sorted(counter.items())) for issue, counter in found.items()}


def _fold_figures(
    folds: Sequence[FoldInfo], samples: list[StoredSample], predictions: list[ImageBoxes], scores: AuditScores
) -> list[FoldInfo]:
    """Each fold's held-out images and the AP50 of its predictions against the current labels."""
    by_fold: dict[int, list[int]] = defaultdict(list)
    for index, sample in enumerate(samples):
        by_fold[int(sample.values[0] if sample.values[0] is not None else -1)].append(index)
    figures = []
    for info in folds:
        rows = by_fold.get(info.fold, [])
        confidences = np.concatenate(
            [predictions[i].confidences for i in rows if predictions[i].confidences is not None] or [np.zeros(0)]
        )
        matched = np.concatenate([scores.images[i].matched for i in rows] or [np.zeros(0, bool)])
        truths = sum(len(samples[i].boxes[GT_FIELD]) for i in rows)
        ap50 = average_precision(confidences, matched, truths) if rows else None
        figures.append(replace(info, held_out=len(rows), ap50=ap50))
    return figures


def limits(summary: AuditSummary) -> list[str]:
    """What the scores cannot say: folds whose model is too weak, no sure prediction at all."""
    lines = []
    for info in summary.folds:
        if info.ap50 is not None and info.ap50 < WEAK_AP50:
            lines.append(
                f"fold {info.fold}: its model reaches AP50 {info.ap50:.2f} on its held-out images: too weak for the "
                "scores of those images to mean much; train longer or with more data (--set epochs=...) and rerun"
            )
    if summary.sure_confidence is None and summary.predictions:
        lines.append(
            f"no prediction is sure enough (measured precision >= {summary.options['sure']:g}): nothing can be "
            "called missing or swapped"
        )
    return lines
