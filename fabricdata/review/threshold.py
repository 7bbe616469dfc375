"""Precision, recall and F1 per class at any confidence threshold, read from a stored evaluation.

``review`` runs FiftyOne's ``evaluate_detections`` once (COCO matching at the review's IoU, every stored prediction
in it) and FiftyOne writes the outcome onto the labels under the eval key: each prediction ``tp``/``fp``, each
ground-truth box ``tp``/``fn``. Raising the confidence threshold to ``t`` only removes predictions, so the counts at
``t`` follow from those marks without evaluating again: the predictions kept are those with confidence >= ``t``, a
kept ``tp`` is still a hit, and every box whose match fell below ``t`` becomes a miss (recall's denominator, the
evaluated boxes, never changes). This is the same reading as :func:`fabricdata.review.mistakes.best_f1`, so at the
run's best-F1 confidence it gives ``review.json``'s precision, recall and F1 (where no two predictions share that
confidence). The evaluation is matched greedily by confidence, as COCO does, so a higher threshold never turns a
removed prediction's box into a match of another one: the figures are exact, not an approximation.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fabricdata.review.mistakes import OTHER
from fabricdata.store.dataset import GT_FIELD

#: the row of every class together (micro-averaged: the figures of review.json)
ALL = "(all)"
#: slider values are floats from a browser: a prediction at exactly the threshold is kept
_EPSILON = 1e-9


@dataclass(frozen=True, slots=True)
class ClassFigures:
    """One class at one threshold: boxes of the class evaluated, predictions kept, hits among them."""

    label: str
    truths: int
    predicted: int
    hits: int

    @property
    def precision(self) -> float:
        return self.hits / self.predicted if self.predicted else 0.0

    @property
    def recall(self) -> float:
        return self.hits / self.truths if self.truths else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


@dataclass(frozen=True, slots=True)
class StoredEvaluation:
    """The marks an evaluation left, flattened: (label, outcome) per evaluated box, (label, confidence, outcome)
    per prediction (outcome: ``tp``/``fn`` for boxes, ``tp``/``fp`` for predictions)."""

    truths: list[tuple[str, str]]
    predictions: list[tuple[str, float, str]]


def read_evaluation(samples: Any, pred_field: str, eval_key: str) -> StoredEvaluation:
    """The marks of the evaluation ``eval_key`` of ``pred_field`` on ``samples`` (a dataset or view), in one
    aggregation (FiftyOne's ``values``). Boxes the evaluation never saw (no mark) are left out."""
    columns = samples.values(
        [
            f"{GT_FIELD}.detections.label",
            f"{GT_FIELD}.detections.{eval_key}",
            f"{pred_field}.detections.label",
            f"{pred_field}.detections.confidence",
            f"{pred_field}.detections.{eval_key}",
        ]
    )
    truths: list[tuple[str, str]] = []
    predictions: list[tuple[str, float, str]] = []
    for gt_labels, gt_marks, labels, confidences, marks in zip(*columns, strict=True):
        truths += [(lab, mark) for lab, mark in zip(gt_labels or [], gt_marks or [], strict=True) if mark]
        predictions += [
            (lab, float(conf or 0.0), mark)
            for lab, conf, mark in zip(labels or [], confidences or [], marks or [], strict=True)
            if mark
        ]
    return StoredEvaluation(truths, predictions)


def figures_at(evaluation: StoredEvaluation, threshold: float, classes: Sequence[str]) -> list[ClassFigures]:
    """Per class (``classes`` first, then other labels of boxes; predicted labels that are no class in one
    ``(other)`` row), then ``(all)``: the figures with only the predictions whose confidence is >= ``threshold``."""
    known = set(classes)
    truths = Counter(label for label, _ in evaluation.truths)
    kept = [(label, mark) for label, conf, mark in evaluation.predictions if conf >= threshold - _EPSILON]
    predicted = Counter(label if label in known or label in truths else OTHER for label, _ in kept)
    hits = Counter(label for label, mark in kept if mark == "tp")
    order = list(dict.fromkeys([*classes, *sorted(truths)]))
    rows = [ClassFigures(label, truths[label], predicted[label], hits[label]) for label in order]
    if predicted[OTHER]:
        rows.append(ClassFigures(OTHER, 0, predicted[OTHER], 0))
    rows.append(ClassFigures(ALL, len(evaluation.truths), len(kept), sum(hits.values())))
    return rows
