"""The mistakes of an evaluated run: which unmatched prediction confuses a box of another class or mislocates one
of its own (FiftyOne's own matching), the label suspects (FiftyOne Brain's mistakenness rules), the confusion
matrix with background, and the best-F1 confidence.

FiftyOne's ``evaluate_detections`` (classwise) marks every box tp/fp/fn. Its leftovers (fp predictions and fn
boxes) are matched twice more by FiftyOne itself, in memory (no ``eval_key``, nothing written): across classes
at the review's IoU (``classwise=False``: the confusions), then within each class at IoU 0.1 among what is still
free (the mislocations). Both passes see only the leftovers that overlap some other leftover enough to pair.
Everything else is read from the first evaluation in one bulk read.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from fabricdata.core.boxes import Box, ImageSize, iou
from fabricdata.review.report import BACKGROUND
from fabricdata.store.columns import read_samples
from fabricdata.store.dataset import GT_FIELD

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
    rows = []
    for sample in read_samples(view, {GT_FIELD: (eval_key,), pred_field: (eval_key, "confidence")}):
        truths = [Truth(b.id, b.label, b.box, *b.attributes) for b in sample.boxes[GT_FIELD]]
        guesses = [Guess(b.id, b.label, b.box, *b.attributes) for b in sample.boxes[pred_field]]
        rows.append(SampleRow(sample.id, sample.size, truths, guesses))
    return rows


class Pair(NamedTuple):
    """A prediction FiftyOne matched to a box in one of the passes over the leftovers."""

    truth: str
    guess: str


@dataclass(slots=True)
class CrossMatches:
    """The pairs of the passes over the leftovers: other class at the IoU threshold, own class at IoU 0.1."""

    confused: list[Pair] = field(default_factory=list)
    mislocated: list[Pair] = field(default_factory=list)


def cross_matches(view: Any, rows: list[SampleRow], pred_field: str, threshold: float) -> CrossMatches:
    """Match what the evaluation of ``rows`` left unmatched, by FiftyOne's greedy COCO matching (highest
    confidence first): across classes at ``threshold`` (a same-class pair never reaches it, or the evaluation
    would have matched it), then within each class at ``MIN_MISLOCATED_IOU`` among what is still free."""
    found = CrossMatches()
    found.confused = _fiftyone_pairs(view, pred_field, _candidates(rows, threshold, set(), False), threshold, False)
    if threshold > MIN_MISLOCATED_IOU:
        taken = {i for pair in found.confused for i in pair}
        candidates = _candidates(rows, MIN_MISLOCATED_IOU, taken, True)
        found.mislocated = _fiftyone_pairs(view, pred_field, candidates, MIN_MISLOCATED_IOU, True)
    return found


def _candidates(rows: list[SampleRow], min_iou: float, taken: set[str], same_class: bool) -> dict[str, set[str]]:
    """Per sample, the leftover labels (fp predictions, fn boxes, none of ``taken``) in some pair that overlaps
    at least ``min_iou``. Only these can be matched, so handing FiftyOne only these changes none of its
    decisions, and a sample without any is not loaded at all. The margin keeps pairs whose IoU rounds
    differently here than in FiftyOne."""
    found: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        truths = [g for g in row.truths if g.match == "fn" and g.id not in taken]
        for p in row.guesses:
            if p.match == "tp" or p.id in taken:
                continue
            for g in truths:
                if (not same_class or g.label == p.label) and iou(p.box, g.box) >= min_iou - 1e-6:
                    found[row.id] |= {p.id, g.id}
    return found


def _fiftyone_pairs(
    view: Any, pred_field: str, labels: dict[str, set[str]], min_iou: float, classwise: bool
) -> list[Pair]:
    """The (box, prediction) pairs FiftyOne's COCO matching makes among ``labels`` (per sample) at IoU
    ``min_iou``; evaluated without an eval key, so it neither writes to the dataset nor registers a run."""
    if not labels:
        return []
    ids = [i for sample in labels.values() for i in sample]
    subset = view.select(list(labels)).select_labels(ids=ids, fields=[GT_FIELD, pred_field])
    results = subset.evaluate_detections(
        pred_field, gt_field=GT_FIELD, iou=min_iou, classwise=classwise, compute_mAP=False, progress=False
    )
    return [
        Pair(str(truth), str(guess))
        for truth, guess in zip(results.ytrue_ids, results.ypred_ids, strict=True)
        if truth is not None and guess is not None
    ]


@dataclass(slots=True)
class Mistakes:
    """Label ids of each kind of mistake (each pair as prediction, box), and the confusion matrix."""

    mislocated: list[str] = field(default_factory=list)
    confused: list[str] = field(default_factory=list)
    #: unmatched predictions above SURE_CONFIDENCE that no ground-truth box explains
    possible_missing: list[str] = field(default_factory=list)
    #: unmatched ground-truth boxes that no prediction comes near (none when the run predicted nothing at all)
    possible_spurious: list[str] = field(default_factory=list)
    confusion: dict[str, dict[str, int]] = field(default_factory=dict)


#: a false positive this sure suggests a missing label (FiftyOne Brain's threshold)
SURE_CONFIDENCE = 0.95


def find_mistakes(rows: list[SampleRow], pairs: CrossMatches, classes: Sequence[str]) -> Mistakes:
    """Mislocated and confused label ids, label suspects, and the class confusion matrix (with background;
    predicted labels that are no class of the dataset count in one ``(other)`` column)."""
    found = Mistakes()
    known = set(classes)
    matrix: dict[str, Counter[str]] = defaultdict(Counter)

    def column(label: str) -> str:
        return label if label in known else OTHER

    truths = {g.id: g for row in rows for g in row.truths}
    guesses = {p.id: p for row in rows for p in row.guesses}
    for pair in pairs.confused:
        found.confused += [pair.guess, pair.truth]
        matrix[truths[pair.truth].label][column(guesses[pair.guess].label)] += 1
    for pair in pairs.mislocated:
        found.mislocated += [pair.guess, pair.truth]
        matrix[BACKGROUND][column(guesses[pair.guess].label)] += 1
        matrix[truths[pair.truth].label][BACKGROUND] += 1
    paired = {i for pair in (*pairs.confused, *pairs.mislocated) for i in pair}
    # a run that predicted nothing suspects nothing: "no prediction near this box" would hold for every box
    predicted = any(row.guesses for row in rows)
    for row in rows:
        for g in row.truths:
            if g.match == "tp":
                matrix[g.label][g.label] += 1
            elif g.id not in paired:
                matrix[g.label][BACKGROUND] += 1
                if predicted and not any(iou(g.box, p.box) >= MIN_MISLOCATED_IOU for p in row.guesses):
                    found.possible_spurious.append(g.id)
        for p in row.guesses:
            if p.match != "tp" and p.id not in paired:
                matrix[BACKGROUND][column(p.label)] += 1
                if p.confidence > SURE_CONFIDENCE:
                    found.possible_missing.append(p.id)
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
