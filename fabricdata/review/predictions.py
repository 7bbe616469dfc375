"""A run's predictions into the dataset: read and checked (``predictions.jsonl``), matched to samples, stored as
``pred_R`` Detections with their confidences; and the swap that replaces an earlier review of the run.

A review is built beside the earlier one (field ``pred_R__next``, evaluation ``eval_R__next``) and swapped in only
when complete (:func:`publish`): a refused file, a crash or a failure while storing or evaluating leaves the earlier
review, its views and its evaluation as they were; a killed review's staged fields are removed by the next."""

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


#: suffix of the field and evaluation key a review builds before it replaces the run's earlier ones
STAGED = "__next"
#: a MongoDB document holds at most 16 MiB: no longer line is read, and no image's boxes may take half of it
#: (its ground truth and the evaluation's fields share the document)
MAX_LINE_BYTES = 16 * 1024 * 1024
MAX_STORED_BYTES = 8 * 1024 * 1024
#: more boxes than a model can mean for one image (import allows 10 000 ground-truth boxes)
MAX_BOXES = 10_000
#: the stored size of one box besides its label (ids, class names, box, confidence, evaluation fields), bytes
_BOX_BYTES = 240


def load_predictions(path: Path) -> list[PredictionRecord]:
    """The records of ``predictions.jsonl``; every problem, an oversize record included, is one error naming the
    file and the line, raised before anything in the dataset changes."""
    if not path.is_file():
        raise DatasetError(f"{path}: no predictions; run 'fabricdata predict' for this run first")
    return list(read_jsonl(path, "a prediction record", _prediction, max_line_bytes=MAX_LINE_BYTES))


def _prediction(data: dict[str, Any]) -> PredictionRecord:
    record = PredictionRecord.model_validate(data)
    if len(record.detections) > MAX_BOXES:
        raise LineError("detections", f"more than {MAX_BOXES} boxes for one image", len(record.detections))
    stored = sum(_BOX_BYTES + len(det.label.encode("utf-8")) for det in record.detections)
    if stored > MAX_STORED_BYTES:
        problem = (
            f"its boxes would take {stored} bytes of the 16 MiB a MongoDB document holds (at most {MAX_STORED_BYTES})"
        )
        raise LineError("detections", problem)
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
    """Remove the evaluation and the fields an earlier review of this run left (its saved views stay: the new
    review overwrites them, so they are never missing)."""
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


def discard_staged(dataset: Any, pred_field: str, eval_key: str) -> None:
    """Remove what a review killed before its swap left (the staged field and evaluation)."""
    if dataset.has_evaluation(eval_key + STAGED):
        dataset.delete_evaluation(eval_key + STAGED)
    if pred_field + STAGED in dataset.get_field_schema():
        dataset.delete_sample_field(pred_field + STAGED)


def publish(dataset: Any, name: str, pred_field: str, eval_key: str) -> None:
    """Swap the staged review in: the earlier evaluation and fields go, the staged evaluation and field take
    their names (the evaluation's config names the final field). A few metadata updates, after everything that
    can fail was done."""
    from fiftyone.core.evaluation import EvaluationMethod

    clear_review(dataset, name, pred_field, eval_key)
    dataset.rename_evaluation(eval_key + STAGED, eval_key)  # first: it renames its fields inside the staged one
    dataset.rename_sample_field(pred_field + STAGED, pred_field)
    config = dataset.get_evaluation_info(eval_key).config
    config.pred_field = pred_field
    EvaluationMethod.update_run_config(dataset, eval_key, config)
    if f"{pred_field}.detections.{eval_key}" not in dataset.get_field_schema(flat=True):
        raise DatasetError(f"review of {name!r}: FiftyOne did not rename the evaluation {eval_key + STAGED!r}")


def save_views(dataset: Any, name: str, views: dict[str, Any]) -> None:
    """Save each ``R-KIND`` view over the earlier one (never deleted first) and drop the kinds this review has
    none of (``R-regressions`` without ``--compare``)."""
    for kind, view in views.items():
        dataset.save_view(f"{name}-{kind}", view, overwrite=True)
    for kind in VIEW_KINDS:
        if kind not in views and dataset.has_saved_view(f"{name}-{kind}"):
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
