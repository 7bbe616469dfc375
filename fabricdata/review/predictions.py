"""A run's predictions into the dataset: read and checked (``predictions.jsonl``), matched to samples, stored as
``pred_R`` Detections with their confidences; and what an earlier review of the run left, removed."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from fabricdata.core.boxes import Box, box_to_fiftyone, corners_ordered
from fabricdata.core.contracts import PredictionRecord
from fabricdata.core.errors import DatasetError
from fabricdata.core.jsonl import LineError, read_jsonl
from fabricdata.store.columns import read_samples
from fabricdata.store.dataset import GT_FIELD, detections_document, detections_layout_matches, fiftyone

#: the saved views a review makes, per run (``R-KIND``)
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


def match_samples(dataset: Any, records: list[PredictionRecord]) -> tuple[dict[str, PredictionRecord], list[str]]:
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


def clear_review(dataset: Any, name: str, pred_field: str, eval_key: str) -> None:
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


def store_predictions(
    dataset: Any, pred_field: str, matched: dict[str, PredictionRecord], min_confidence: float
) -> int:
    """Store the predictions at or above ``min_confidence``; returns how many were below it.

    Written as documents (``set_values`` without re-validation; the values are built typed right here) when
    their layout is FiftyOne's own, else through FiftyOne's objects.
    """
    fo = fiftyone()
    rows: dict[str, list[tuple[str, list[float], float]]] = {}
    dropped = 0
    for sample in read_samples(dataset.select(list(matched)), boxes={}):
        sid, size = sample.id, sample.size
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
