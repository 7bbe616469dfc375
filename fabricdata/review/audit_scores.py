"""Label-quality scores of an audit: cleanlab's object-detection scores fed with the real, calibrated confidences
of out-of-fold predictions, plus FiftyOne Brain's rules where cleanlab has no notion. Pure numpy (no FiftyOne).

Per image ``i`` the labels are ``(L, 4)`` pixel boxes ``xmin, ymin, xmax, ymax`` with ``(L,)`` class indices, the
predictions ``(M, 4)`` boxes, ``(M,)`` class indices and ``(M,)`` confidences in ``[0, 1]`` from a model that never
saw the image. What is computed, in order:

1. **Matching** (COCO's rule): each prediction, most confident first, takes the free label box of its class it
   overlaps most at IoU >= 0.5.
2. **Calibration**: Florence-2's confidence (the geometric mean probability of a box's tokens) is no probability of
   being right, while cleanlab's thresholds are. An isotonic regression (scikit-learn) of "matched" on confidence,
   over every prediction of the audit, turns each confidence into the measured precision of predictions as sure.
   The labels are mostly right, so this is the model's precision, capped by the share of wrong labels.
3. **Evidence** (``review``'s order: FiftyOne's matching first, then the leftovers): a matched pair tells only
   about each other (the model confirms the box); a leftover prediction tells about the leftover boxes it overlaps
   at IoU >= 0.1 (FiftyOne Brain's and ``review``'s "near"). Without this rule a neighbouring defect's detection,
   touching a box, makes it look badly located or swapped (measured on synthetic fabric, where defects overlap).
4. **cleanlab** (``cleanlab.object_detection.rank``): ``compute_swap_box_scores`` and ``compute_badloc_box_scores``
   per label box and ``compute_overlooked_box_scores`` per prediction, on cleanlab's own similarity matrices with
   the non-evidence pairs zeroed, and the image's label quality pooled from them as ``get_label_quality_scores``
   pools (softmin per kind, weighted geometric mean). Every score is in ``[0, 1]``, lower is worse.
5. **Missing boxes** are ranked by the larger of cleanlab's overlooked score and the model's doubt (1 - calibrated
   confidence): cleanlab's score only says how near a box of the same class is (about 0 for every prediction
   farther than a few pixels from one), so on its own it ranks a barely sure prediction beside a certain one.
6. **FiftyOne Brain's rules** where cleanlab says nothing: a label box no prediction is evidence for is possibly
   spurious (its score: the best evidence, IoU x confidence, 0 when none); a sure leftover prediction
   that tells about no box is possibly missing (cleanlab skips any prediction that touches a box at all), scored
   by cleanlab's overlooked rule (similarity to the nearest box of its class).

Sources: Tkachenko et al., "ObjectLab: Automated Diagnosis of Mislabeled Images in Object Detection Data" (2023),
implemented in cleanlab 2.9; FiftyOne Brain's ``compute_mistakenness`` (possible missing / spurious).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Issue = Literal["missing", "swapped", "mislocated", "spurious"]
ISSUES: tuple[Issue, ...] = ("missing", "swapped", "mislocated", "spurious")
FloatArray = np.ndarray
#: a prediction matches a label box of its class at this IoU (COCO, FiftyOne)
MATCH_IOU = 0.5
#: below this IoU a prediction is not near a box (FiftyOne Brain's and review's MIN_MISLOCATED_IOU)
NEAR_IOU = 0.1


@dataclass(frozen=True, slots=True)
class ImageBoxes:
    """The label boxes of one image (``confidences`` None) or its predictions: pixel ``xyxy`` boxes ``(N, 4)``,
    class indices ``(N,)`` and, for predictions, confidences ``(N,)``."""

    boxes: FloatArray
    classes: np.ndarray
    confidences: FloatArray | None = None

    @classmethod
    def of(cls, rows: Sequence[tuple[int, Sequence[float]]], confidences: Sequence[float] | None = None) -> ImageBoxes:
        """From ``(class index, (xmin, ymin, xmax, ymax))`` rows."""
        boxes = np.asarray([box for _, box in rows], dtype=float).reshape(-1, 4)
        classes = np.asarray([index for index, _ in rows], dtype=int)
        return cls(boxes, classes, None if confidences is None else np.asarray(confidences, dtype=float))

    def __len__(self) -> int:
        return len(self.classes)


@dataclass(frozen=True, slots=True)
class AuditOptions:
    """Thresholds, on the calibrated scale (the measured precision of predictions as confident)."""

    #: a prediction this sure can say a box is missing or of another class (cleanlab's high_probability_threshold;
    #: its default 0.95 is out of reach when a few per cent of the labels calibrated against are wrong)
    sure: float = 0.8
    #: a prediction this sure can say where a box belongs (cleanlab's low_probability_threshold)
    located: float = 0.1
    #: swapped and mislocated boxes are flagged below this score (a similarity of 0.5 is about IoU 0.5)
    flag_below: float = 0.5
    calibrate: bool = True


@dataclass(slots=True)
class ImageScores:
    """What the audit says about one image: per label box and per prediction (in the input order)."""

    #: cleanlab's label quality of the image (overlooked, swapped, badly located), 1.0 = no doubt
    quality: float
    swap: FloatArray
    badloc: FloatArray
    #: best evidence per label box (IoU x confidence), 0.0 = no prediction near it
    support: FloatArray
    #: per prediction: overlooked score, NaN where the prediction says nothing missing
    overlooked: FloatArray
    calibrated: FloatArray
    #: per prediction: whether it matches a label box of its class (COCO's rule at IoU 0.5)
    matched: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    #: per prediction: how unlikely it is to be a missing box, the larger of cleanlab's overlooked score and the
    #: model's doubt (1 - calibrated confidence); NaN where it says nothing missing
    missing: FloatArray = field(default_factory=lambda: np.zeros(0))
    #: per label box: its issue (or None) and that issue's score; the prediction it is disputed by (or -1)
    issues: list[Issue | None] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    disputed_by: list[int] = field(default_factory=list)


@dataclass(slots=True)
class AuditScores:
    images: list[ImageScores]
    options: AuditOptions
    #: the isotonic map actually used: confidences and what they became (for the report)
    calibration: tuple[FloatArray, FloatArray]
    #: AP at IoU 0.5 of the predictions against the labels (all classes pooled): how good the model is
    ap50: float


def score_images(
    labels: Sequence[ImageBoxes], predictions: Sequence[ImageBoxes], classes: int, options: AuditOptions | None = None
) -> AuditScores:
    """Score every image (see the module docstring). ``classes`` is the number of class indices.

    Raises:
        ValueError: when the two sequences differ in length or a prediction has no confidences.
    """
    options = options or AuditOptions()
    if len(labels) != len(predictions):
        raise ValueError(f"{len(labels)} label sets but {len(predictions)} prediction sets")
    if any(p.confidences is None for p in predictions):
        raise ValueError("every prediction needs a confidence")
    aux = _auxiliary(labels, predictions, classes)
    owners = [_match(a) for a in aux]
    calibration, ap50 = _calibrate(aux, owners, options.calibrate)
    raw = [a["pred_label_probs"] for a in aux]
    for a in aux:
        a["pred_label_probs"] = (
            np.interp(a["pred_label_probs"], *calibration) if options.calibrate else a["pred_label_probs"]
        )
    evidence = [_evidence(a, owner) for a, owner in zip(aux, owners, strict=True)]
    images = _cleanlab_scores(aux, evidence, owners, options)
    for image, a, keep, confidences, owner in zip(images, aux, evidence, raw, owners, strict=True):
        image.support = _support(a, keep, confidences)
        image.matched = _flags(len(confidences), owner)
    for image, a, keep, prediction in zip(images, aux, evidence, predictions, strict=True):
        _decide(image, a, keep, options)
        _to_input_order(image, prediction)
        image.missing = np.where(np.isnan(image.overlooked), np.nan, np.maximum(image.overlooked, 1 - image.calibrated))
    return AuditScores(images, options, calibration, ap50)


def sure_from(scores: AuditScores) -> float | None:
    """The least raw confidence whose calibrated value reaches ``options.sure`` (None: no prediction is that sure)."""
    knots, values = scores.calibration
    reached = np.nonzero(values >= scores.options.sure)[0]
    return float(knots[reached[0]]) if len(reached) else None


def _to_input_order(image: ImageScores, prediction: ImageBoxes) -> None:
    """cleanlab orders an image's predictions by class (its input is one array per class): back to their order."""
    order = np.argsort(prediction.classes, kind="stable")  # cleanlab's position t holds input prediction order[t]
    back = np.empty_like(order)
    back[order] = np.arange(len(order))
    image.overlooked, image.calibrated, image.matched = (
        image.overlooked[back],
        image.calibrated[back],
        image.matched[back],
    )
    image.disputed_by = [int(order[t]) if t >= 0 else -1 for t in image.disputed_by]


def _auxiliary(labels: Sequence[ImageBoxes], predictions: Sequence[ImageBoxes], classes: int) -> list[dict[str, Any]]:
    """cleanlab's per-image inputs (class arrays, IoU and similarity matrices), computed once for every score."""
    from cleanlab.internal.constants import ALPHA
    from cleanlab.object_detection.rank import _get_valid_inputs_for_compute_scores

    cl_labels = [{"bboxes": image.boxes, "labels": image.classes} for image in labels]
    cl_predictions = [cleanlab_predictions(image, classes) for image in predictions]
    return list(_get_valid_inputs_for_compute_scores(ALPHA, cl_labels, cl_predictions))


def cleanlab_predictions(image: ImageBoxes, classes: int) -> list[FloatArray]:
    """cleanlab's prediction format: per class index an ``(M_k, 5)`` array ``xmin, ymin, xmax, ymax, confidence``."""
    assert image.confidences is not None
    rows = np.column_stack([image.boxes, image.confidences]) if len(image) else np.zeros((0, 5))
    return [rows[image.classes == k].reshape(-1, 5) for k in range(classes)]


def _match(a: dict[str, Any]) -> dict[int, int]:
    """Prediction index -> label index: COCO's greedy matching, most confident first, same class, IoU >= 0.5."""
    owner: dict[int, int] = {}
    iou, lab, pred = a["iou_matrix"], a["lab_labels"], a["pred_labels"]
    if not len(lab):
        return owner
    free = np.ones(len(lab), bool)
    for j in np.argsort(-a["pred_label_probs"], kind="stable"):
        overlap = np.where(free & (lab == pred[j]), iou[:, j], -1.0)
        best = int(np.argmax(overlap))
        if overlap[best] >= MATCH_IOU:
            owner[int(j)] = best
            free[best] = False
    return owner


def _flags(count: int, owner: dict[int, int]) -> np.ndarray:
    """``(count,)`` booleans: which predictions are matched."""
    flags = np.zeros(count, bool)
    flags[list(owner)] = True
    return flags


def _calibrate(
    aux: list[dict[str, Any]], owners: list[dict[int, int]], enabled: bool
) -> tuple[tuple[FloatArray, FloatArray], float]:
    """The isotonic map confidence -> precision (as knots for ``np.interp``) and the AP50 of the predictions."""
    confidences = np.concatenate([a["pred_label_probs"] for a in aux] or [np.zeros(0)])
    matched = np.concatenate(
        [_flags(len(a["pred_labels"]), o) for a, o in zip(aux, owners, strict=True)] or [np.zeros(0, bool)]
    )
    truths = sum(len(a["lab_labels"]) for a in aux)
    ap50 = average_precision(confidences, matched, truths)
    if not enabled or len(confidences) == 0:
        return (np.array([0.0, 1.0]), np.array([0.0, 1.0])), ap50
    from sklearn.isotonic import IsotonicRegression

    model = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(confidences, matched.astype(float))
    return (np.asarray(model.X_thresholds_, float), np.asarray(model.y_thresholds_, float)), ap50


def average_precision(confidences: FloatArray, matched: np.ndarray, truths: int) -> float:
    """AP of ranked detections (VOC/COCO style, all points): mean over the label boxes of the precision at the rank
    where each is found; a box never found counts 0."""
    if truths == 0 or len(confidences) == 0:
        return 0.0
    hits = np.asarray(matched, bool)[np.argsort(-confidences, kind="stable")]
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]  # interpolated: the best precision at this recall or more
    return float(envelope[hits].sum() / truths)


def _evidence(a: dict[str, Any], owner: dict[int, int]) -> np.ndarray:
    """``(L, M)`` booleans, what a prediction tells about a box: a matched pair only about each other (the model
    confirms the box), a leftover prediction about the leftover boxes it overlaps at IoU >= 0.1."""
    keep = np.asarray(a["iou_matrix"] >= NEAR_IOU)
    for j, i in owner.items():
        keep[:, j] = False
        keep[i, :] = False
    for j, i in owner.items():
        keep[i, j] = True
    return keep


def _cleanlab_scores(
    aux: list[dict[str, Any]], evidence: list[np.ndarray], owners: list[dict[int, int]], options: AuditOptions
) -> list[ImageScores]:
    """cleanlab's per-box scores on the evidence only (overlooked completed by Brain's rule), and the image
    quality pooled from them as cleanlab pools it."""
    from cleanlab.object_detection import rank

    masked = [
        {
            **a,
            "similarity_matrix": np.where(keep, a["similarity_matrix"], 0.0),
            "iou_matrix": np.where(keep, a["iou_matrix"], 0.0),
        }
        for a, keep in zip(aux, evidence, strict=True)
    ]
    overlooked = rank.compute_overlooked_box_scores(auxiliary_inputs=aux, high_probability_threshold=options.sure)
    for scores, a, owner, keep in zip(overlooked, aux, owners, evidence, strict=True):
        _possible_missing(scores, a, owner, keep, options)
    swap = rank.compute_swap_box_scores(auxiliary_inputs=masked, high_probability_threshold=options.sure)
    badloc = rank.compute_badloc_box_scores(auxiliary_inputs=masked, low_probability_threshold=options.located)
    quality = pooled_quality(overlooked, swap, badloc)
    return [
        ImageScores(float(quality[i]), swap[i], badloc[i], np.zeros(len(swap[i])), overlooked[i], a["pred_label_probs"])
        for i, a in enumerate(aux)
    ]


def pooled_quality(overlooked: list[FloatArray], swap: list[FloatArray], badloc: list[FloatArray]) -> FloatArray:
    """Per image: cleanlab's softmin of each kind's box scores, combined by its weighted geometric mean (the
    pooling of ``get_label_quality_scores``)."""
    from cleanlab.internal import constants
    from cleanlab.object_detection.rank import pool_box_scores_per_image

    weighted = (
        (constants.CUSTOM_SCORE_WEIGHT_OVERLOOKED, overlooked),
        (constants.CUSTOM_SCORE_WEIGHT_SWAP, swap),
        (constants.CUSTOM_SCORE_WEIGHT_BADLOC, badloc),
    )
    logs = [weight * np.log(constants.TINY_VALUE + pool_box_scores_per_image(scores)) for weight, scores in weighted]
    return np.asarray(np.exp(sum(logs)), dtype=float)


def _possible_missing(
    scores: FloatArray, a: dict[str, Any], owner: dict[int, int], keep: np.ndarray, options: AuditOptions
) -> None:
    """Brain's possible-missing rule for the sure predictions cleanlab skipped because they touch some box: one that
    matches no box and tells about none (every box it overlaps is another prediction's match) gets cleanlab's
    overlooked score (the similarity to the nearest box of its class, else the dataset's least similarity x
    (1 - confidence))."""
    sim, lab = a["similarity_matrix"], a["lab_labels"]
    for j, (k, p) in enumerate(zip(a["pred_labels"], a["pred_label_probs"], strict=True)):
        if not np.isnan(scores[j]) or j in owner or p < options.sure or keep[:, j].any():
            continue
        same = sim[lab == k, j]
        scores[j] = float(same.max()) if len(same) else float(a["min_possible_similarity"] * (1 - p))


def _support(a: dict[str, Any], keep: np.ndarray, confidences: FloatArray) -> FloatArray:
    """Per label box, its best evidence: IoU x confidence (0.0 where no prediction is evidence). The raw confidence:
    Brain's rule asks whether any prediction is near, and calibration maps the least sure ones to 0."""
    if keep.size == 0:
        return np.zeros(len(a["lab_labels"]))
    support = np.where(keep, a["iou_matrix"] * confidences[None, :], 0.0)
    return np.asarray(support.max(axis=1), dtype=float)


def _decide(image: ImageScores, a: dict[str, Any], keep: np.ndarray, options: AuditOptions) -> None:
    """Each label box's issue (the flagged kind with the lowest score), its score and the prediction it is
    disputed by (the evidence cleanlab's score came from)."""
    sim, p, pred, lab = a["similarity_matrix"], a["pred_label_probs"], a["pred_labels"], a["lab_labels"]
    for i in range(len(lab)):
        flagged: list[tuple[float, Issue, int]] = []
        if image.support[i] <= 0.0:
            flagged.append((0.0, "spurious", -1))
        if image.swap[i] < options.flag_below:
            flagged.append(
                (float(image.swap[i]), "swapped", _best(sim[i], keep[i] & (pred != lab[i]) & (p > options.sure)))
            )
        if image.badloc[i] < options.flag_below:
            flagged.append(
                (
                    float(image.badloc[i]),
                    "mislocated",
                    _best(sim[i], keep[i] & (pred == lab[i]) & (p > options.located)),
                )
            )
        score, issue, by = min(flagged, default=(float(min(image.swap[i], image.badloc[i])), None, -1))
        image.issues.append(issue)
        image.scores.append(score)
        image.disputed_by.append(by)


def _best(similarity: FloatArray, allowed: np.ndarray) -> int:
    """The allowed prediction most similar to the box (-1 when none is allowed)."""
    if not allowed.any():
        return -1
    return int(np.argmax(np.where(allowed, similarity, -1.0)))
