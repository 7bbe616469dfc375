"""The mistakes of an evaluated run, read back from FiftyOne's evaluation in one bulk read: which unmatched
prediction confuses a box of another class or mislocates one of its own, the label suspects (FiftyOne Brain's
mistakenness rules), the confusion matrix with background, and the best-F1 confidence.

FiftyOne's ``evaluate_detections`` (classwise) marks every box tp/fp/fn; the cross-class and low-IoU matching
among its leftovers is done here, on the rows already read, instead of two more evaluations (each as costly as
the first: ``classwise=False`` and a pass at IoU 0.1).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from fabricdata.boxes import Box, ImageSize, fiftyone_to_box, iou
from fabricdata.review_report import BACKGROUND
from fabricdata.store import GT_FIELD, stored_size

#: an unmatched prediction overlapping a box of its class at least this much (and below the IoU threshold)
#: mislocates it
MIN_MISLOCATED_IOU = 0.1
#: predicted labels that are not classes of the dataset, as one row/column of the confusion matrix
OTHER = "(other)"


class Truth(NamedTuple):
    """A ground-truth box as the evaluation left it (``match``: tp or fn)."""

    id: str
    label: str
    box: Box
    match: str


class Guess(NamedTuple):
    """A predicted box as the evaluation left it (``match``: tp or fp)."""

    id: str
    label: str
    box: Box
    match: str
    confidence: float


class SampleRow(NamedTuple):
    id: str
    size: ImageSize
    truths: list[Truth]
    guesses: list[Guess]


def evaluated_rows(view: Any, pred_field: str, eval_key: str) -> list[SampleRow]:
    """Every sample of ``view`` with its ground truth and predictions as the evaluation ``eval_key`` marked them
    (one bulk read)."""
    columns = view.values(
        [
            "id",
            "filepath",
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
    for sid, path, w, h, gid, glab, gbox, gev, pid, plab, pbox, pev, pconf in zip(*columns, strict=True):
        size = stored_size(path, w, h)
        gts = [
            Truth(i, lab, fiftyone_to_box(b, size), e)
            for i, lab, b, e in zip(gid or [], glab or [], gbox or [], gev or [], strict=True)
        ]
        preds = [
            Guess(i, lab, fiftyone_to_box(b, size), e, c)
            for i, lab, b, e, c in zip(pid or [], plab or [], pbox or [], pev or [], pconf or [], strict=True)
        ]
        rows.append(SampleRow(sid, size, gts, preds))
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


def find_mistakes(rows: list[SampleRow], threshold: float, classes: Sequence[str]) -> Mistakes:
    """Mislocated and confused label ids, label suspects, and the class confusion matrix (with background;
    predicted labels that are no class of the dataset count in one ``(other)`` column)."""
    found = Mistakes()
    mislocated, confused = found.mislocated, found.confused
    known = set(classes)
    matrix: dict[str, Counter[str]] = defaultdict(Counter)

    def column(label: str) -> str:
        return label if label in known else OTHER

    for row in rows:
        free = [g for g in row.truths if g.match == "fn"]
        for g in row.truths:
            if g.match == "tp":
                matrix[g.label][g.label] += 1
        used: set[str] = set()
        for p in sorted(row.guesses, key=lambda guess: -guess.confidence):
            if p.match == "tp":
                continue
            same = [(iou(p.box, g.box), g) for g in free if g.label == p.label and g.id not in used]
            other = [(iou(p.box, g.box), g) for g in free if g.label != p.label and g.id not in used]
            overlap_same, nearest_same = max(same, default=(0.0, None), key=lambda x: x[0])
            overlap_other, nearest_other = max(other, default=(0.0, None), key=lambda x: x[0])
            if nearest_other is not None and overlap_other >= threshold:
                confused += [p.id, nearest_other.id]
                used.add(nearest_other.id)
                matrix[nearest_other.label][column(p.label)] += 1
            elif nearest_same is not None and MIN_MISLOCATED_IOU <= overlap_same < threshold:
                mislocated += [p.id, nearest_same.id]
                used.add(nearest_same.id)
                matrix[BACKGROUND][column(p.label)] += 1
                matrix[nearest_same.label][BACKGROUND] += 1
            else:
                matrix[BACKGROUND][column(p.label)] += 1
                if p.confidence > SURE_CONFIDENCE:
                    found.possible_missing.append(p.id)
        for g in free:
            if g.id not in used:
                matrix[g.label][BACKGROUND] += 1
                if not any(iou(g.box, p.box) >= MIN_MISLOCATED_IOU for p in row.guesses):
                    found.possible_spurious.append(g.id)
    found.confusion = {gt: dict(row) for gt, row in matrix.items()}
    return found


def best_f1(rows: list[SampleRow]) -> tuple[float, float, float, float]:
    """The confidence threshold with the best F1, and its precision, recall and F1."""
    scored = sorted(((p.confidence, p.match == "tp") for row in rows for p in row.guesses), key=lambda x: -x[0])
    total_gt = sum(len(row.truths) for row in rows)
    best = (1.0, 0.0, 0.0, 0.0)  # threshold, precision, recall, f1
    tp = 0
    for rank, (confidence, hit) in enumerate(scored, start=1):
        tp += hit
        precision, recall = tp / rank, tp / total_gt if total_gt else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        if f1 > best[3]:
            best = (confidence, precision, recall, f1)
    return best


def view_counts(rows: list[SampleRow], mistakes: Mistakes) -> dict[str, int]:
    """Samples in each view, counted from the evaluation already read (no query per view)."""
    sample_of: dict[str, str] = {}
    counts = {"false-positives": 0, "missed": 0}
    for row in rows:
        sample_of.update({g.id: row.id for g in row.truths})
        sample_of.update({p.id: row.id for p in row.guesses})
        counts["false-positives"] += any(p.match == "fp" for p in row.guesses)
        counts["missed"] += any(g.match == "fn" for g in row.truths)
    kinds = {
        "mislocated": mistakes.mislocated,
        "confused": mistakes.confused,
        "possible-missing": mistakes.possible_missing,
        "possible-spurious": mistakes.possible_spurious,
    }
    counts.update({kind: len({sample_of[i] for i in ids}) for kind, ids in kinds.items()})
    return counts
