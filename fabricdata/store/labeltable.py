"""The labels of a dataset's original images as one column-wise table: read from FiftyOne in one aggregation,
identified by a content hash, and written back as FiftyOne's own documents (with their ids).

What a table holds (what a label version freezes, ``store.versions``): per original image (augmented variants are
made from originals, unverified drafts are a model's guesses) its file path, stored size, tags (the splits) and
LabelImg's ``verified`` flag, its boxes with their attributes and label tags, and the bookkeeping that write-back
and re-import need (annotation file, its format and hashes, proxy, ...). :meth:`LabelTable.content_id` covers the
labels alone (not the bookkeeping, not FiftyOne's ids), so the same labels always give the same id.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import random
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fabricdata.store.dataset import (
    F_ANNOTATION_FORMAT,
    F_ANNOTATION_HASH,
    F_ANNOTATION_PATH,
    F_CATEGORY,
    F_CLASS_FILE,
    F_LABELS_HASH,
    F_PRELABEL_CONFIDENCE,
    F_PRELABEL_RUN,
    F_PROXY,
    F_SOURCE_FOLDER,
    F_SOURCE_ID,
    F_SPLIT_SOURCE,
    F_VERIFIED,
    GT_FIELD,
    annotated,
    document_shape,
    fiftyone,
)

#: sample fields a version keeps besides file path, tags and metadata (write-back and re-import need them)
SAMPLE_FIELDS = (
    F_VERIFIED, F_ANNOTATION_PATH, F_ANNOTATION_FORMAT, F_ANNOTATION_HASH, F_LABELS_HASH, F_SOURCE_FOLDER,
    F_SPLIT_SOURCE, F_CATEGORY, F_PROXY, F_CLASS_FILE, F_PRELABEL_RUN, F_PRELABEL_CONFIDENCE,
)  # fmt: skip
METADATA = ("width", "height", "num_channels", "size_bytes", "mime_type")
#: every box has these; its attributes follow
BOX = ("id", "label", "bounding_box", "tags")
#: attributes of the data model (DESIGN.md); those of the App's label schema are kept too
KNOWN_ATTRIBUTES = ("difficult", "truncated", "pose", "caption", "extra_xml", "proposal", "confidence")
_SAMPLE_COLUMNS = ("id", "filepath", "tags", *METADATA, *SAMPLE_FIELDS)


@dataclass(slots=True)
class LabelTable:
    """The labels of a dataset's original images, column by column: ``samples`` has one entry per image (in
    file path order) for each of ``id, filepath, tags, width, height, num_channels, size_bytes, mime_type`` and
    :data:`SAMPLE_FIELDS`; ``boxes`` one per box for ``sample`` (the index of its image), :data:`BOX` and each
    attribute (None where a box has none). Boxes are FiftyOne's relative ``[x, y, w, h]``, as stored."""

    classes: list[str]
    samples: dict[str, list[Any]]
    boxes: dict[str, list[Any]]
    _rows: list[list[tuple[Any, ...]]] | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.samples["filepath"])

    @property
    def attributes(self) -> list[str]:
        return [name for name in self.boxes if name not in ("sample", *BOX)]

    def box_rows(self) -> list[list[tuple[Any, ...]]]:
        """Per image, a canonical tuple per box (label, box, tags, attributes), sorted: equal lists mean equal
        boxes, whatever their order or ids. Computed once per table."""
        if self._rows is not None:
            return self._rows
        with without_gc():
            self._rows = self._make_rows()
        return self._rows

    def _make_rows(self) -> list[list[tuple[Any, ...]]]:
        boxes, attributes = self.boxes, self.attributes
        columns = [boxes[name] for name in attributes]
        rows: list[list[tuple[Any, ...]]] = [[] for _ in range(len(self))]
        for index, (sample, label, box, tags) in enumerate(
            zip(boxes["sample"], boxes["label"], boxes["bounding_box"], boxes["tags"], strict=True)
        ):
            extra = tuple((name, column[index]) for name, column in zip(attributes, columns, strict=True))
            rows[sample].append(
                (label, tuple(box or ()), tuple(sorted(tags or ())), repr(tuple(e for e in extra if e[1] is not None)))
            )
        for row in rows:
            row.sort()
        return rows

    def content_id(self) -> str:
        """sha256 of the classes and, per image in file path order, of its path, size, tags, verified flag and
        boxes (see :meth:`box_rows`), written as one JSON document."""
        samples, rows = self.samples, self.box_rows()
        order = sorted(range(len(self)), key=samples["filepath"].__getitem__)
        with without_gc():
            images = [
                [samples["filepath"][i], samples["width"][i], samples["height"][i], sorted(samples["tags"][i] or ()),
                 bool(samples[F_VERIFIED][i]), rows[i]]
                for i in order
            ]  # fmt: skip
        text = json.dumps([self.classes, images], ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


@contextlib.contextmanager
def without_gc() -> Iterator[None]:
    """No cyclic garbage collection while a table's hundreds of thousands of small lists and tuples are built (it
    would run again and again over all of them; none of them form cycles)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# --- reading the dataset's labels ----------------------------------------------------------------------------


def originals(samples: Any) -> Any:
    """The images whose labels a version holds: annotators' labels (no unverified drafts), no augmented variant."""
    return annotated(samples).exists(F_SOURCE_ID, bool=False)


def box_attributes(dataset: Any) -> list[str]:
    """The data model's box attributes and those the App's label schema lets annotators edit; never what an
    evaluation or a brain run writes on the boxes (``eval_r1``, ``eval_r1_iou``, ``mistakenness_r1``)."""
    schema = (dataset.label_schemas or {}).get(GT_FIELD) or {}
    editable = [
        str(item["name"]) for item in schema.get("attributes") or () if isinstance(item, dict) and "name" in item
    ]
    return list(dict.fromkeys([*KNOWN_ATTRIBUTES, *editable]))


def read_labels(dataset: Any) -> LabelTable:
    """The labels of the dataset's originals now (see :class:`LabelTable`): one aggregation of the stored documents,
    projected to what a version holds (FiftyOne's ``values()`` over these twenty-odd paths took 2.5x longer)."""
    attributes = box_attributes(dataset)
    detections = f"{GT_FIELD}.detections"
    projection = {name: True for name in ("filepath", "tags", "metadata", *SAMPLE_FIELDS)}
    projection.update({f"{detections}.{name}": True for name in ("_id", *BOX[1:], *attributes)})
    samples: dict[str, list[Any]] = {name: [] for name in _SAMPLE_COLUMNS}
    boxes: dict[str, list[Any]] = {name: [] for name in ("sample", *BOX, *attributes)}
    view = originals(dataset).sort_by("filepath")
    with without_gc():
        for row, document in enumerate(view._aggregate(post_pipeline=[{"$project": projection}])):
            _add(samples, boxes, row, document, attributes)
    for name in attributes:  # an attribute no box has is no column
        if all(value is None for value in boxes[name]):
            del boxes[name]
    return LabelTable(list(dataset.default_classes or []), samples, boxes)


def _add(
    samples: dict[str, list[Any]], boxes: dict[str, list[Any]], row: int, document: Any, attributes: list[str]
) -> None:
    """One stored sample document into the columns of a table."""
    metadata = document.get("metadata") or {}
    for name, value in (("id", str(document["_id"])), ("filepath", document["filepath"])):
        samples[name].append(value)
    samples["tags"].append(list(document.get("tags") or []))
    for name in METADATA:
        samples[name].append(metadata.get(name))
    for name in SAMPLE_FIELDS:
        samples[name].append(document.get(name))
    for box in (document.get(GT_FIELD) or {}).get("detections") or ():
        boxes["sample"].append(row)
        boxes["id"].append(str(box["_id"]))
        for name in (*BOX[1:], *attributes):
            boxes[name].append(box.get(name))


# --- writing a table as FiftyOne documents ---------------------------------------------------------------------


def insert_labels(dataset: Any, table: LabelTable) -> None:
    """Add the images of ``table`` to ``dataset`` with their sample and box ids, as FiftyOne's own documents,
    in batches. The first goes through ``add_samples`` and is the reference layout (as in ``store.bulk``); when
    it differs from ours, the rest do too (with new ids)."""
    if not len(table):
        return
    detections = image_boxes(table)
    first = next((row for row, found in enumerate(detections) if found), 0)
    dataset.add_samples([_sample(table, first, detections[first])], progress=False)
    reference = dataset._sample_collection.find_one({"filepath": table.samples["filepath"][first]})
    documents = [_document(table, row, detections[row], reference["_dataset_id"]) for row in range(len(table))]
    if document_shape(documents[first]) != document_shape(reference):
        warnings.warn("FiftyOne's sample layout changed: restoring through add_samples (new ids)", stacklevel=2)
        rest = [_sample(table, row, detections[row]) for row in range(len(table)) if row != first]
        dataset.add_samples(rest, progress=False)
        return
    dataset._sample_collection.delete_one({"_id": reference["_id"]})
    for start in range(0, len(documents), 1000):
        dataset._sample_collection.insert_many(documents[start : start + 1000], ordered=True)


def image_boxes(table: LabelTable) -> list[list[dict[str, Any]]]:
    """Per image, its boxes as ``{"id", "label", "bounding_box", "tags", attribute: value}`` (no None values)."""
    boxes, attributes = table.boxes, table.attributes
    per_sample: list[list[dict[str, Any]]] = [[] for _ in range(len(table))]
    for index, sample in enumerate(boxes["sample"]):
        box = {name: boxes[name][index] for name in (*BOX, *attributes) if boxes[name][index] is not None}
        box["tags"] = list(box.get("tags") or [])
        per_sample[sample].append(box)
    return per_sample


def _fields(table: LabelTable, row: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The metadata and the sample fields of one image (no None values: FiftyOne stores no key for them)."""
    samples = table.samples
    metadata = {name: samples[name][row] for name in METADATA if samples[name][row] is not None}
    return metadata, {name: samples[name][row] for name in SAMPLE_FIELDS if samples[name][row] is not None}


def _sample(table: LabelTable, row: int, boxes: list[dict[str, Any]]) -> Any:
    fo = fiftyone()
    metadata, fields = _fields(table, row)
    detections = [fo.Detection(**{k: v for k, v in box.items() if k != "id"}) for box in boxes]
    return fo.Sample(
        filepath=table.samples["filepath"][row],
        tags=list(table.samples["tags"][row] or []),
        metadata=fo.ImageMetadata(**metadata),
        **{GT_FIELD: fo.Detections(detections=detections)},
        **fields,
    )


def _document(table: LabelTable, row: int, boxes: list[dict[str, Any]], dataset_id: Any) -> dict[str, Any]:
    """The MongoDB document ``_sample`` would be stored as, with the version's sample and box ids."""
    from bson import ObjectId

    metadata, fields = _fields(table, row)
    now = datetime.now(UTC).replace(tzinfo=None)
    detections = [detection_document(box) for box in boxes]
    return {
        "_id": ObjectId(table.samples["id"][row]),
        "filepath": table.samples["filepath"][row],
        "tags": list(table.samples["tags"][row] or []),
        "metadata": {"_cls": "ImageMetadata", **metadata},
        "_media_type": "image",
        "_rand": random.random() * 0.001 + 0.999,
        GT_FIELD: {"_cls": "Detections", "detections": detections},
        **fields,
        "_dataset_id": dataset_id,
        "created_at": now,
        "last_modified_at": now,
    }


def detection_document(box: dict[str, Any], new_id: bool = False) -> dict[str, Any]:
    """The stored form of a ``Detection`` of one of :func:`image_boxes`'s boxes (its own id, or a new one)."""
    from bson import ObjectId

    fields = {key: value for key, value in box.items() if key != "id"}
    return {"_id": ObjectId() if new_id else ObjectId(box["id"]), "_cls": "Detection", "attributes": {}, **fields}
