"""The bulk insert of import: new samples written as MongoDB documents of FiftyOne's own layout.

``fo.Dataset.add_samples`` spends most of its time rebuilding in-memory samples nobody uses. Here the first
new sample goes through ``add_samples`` (schema, media type, document layout); its stored document is the
reference, and when a document built by :func:`sample_document` for the same item has exactly its shape, the
others are inserted directly. If FiftyOne's layout ever differs, import warns and stays on ``add_samples``;
``tests/test_store.py::test_bulk_import_stores_exactly_what_fiftyones_add_samples_stores`` compares what both
paths store field by field, so an upgrade that changes the layout fails a test, never data.
"""

from __future__ import annotations

import contextlib
import random
import warnings
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fabricdata.core import faults
from fabricdata.core.boxes import box_to_fiftyone
from fabricdata.core.errors import DatasetError
from fabricdata.formats import FolderItem
from fabricdata.store.dataset import (
    F_ANNOTATION_FORMAT,
    F_ANNOTATION_HASH,
    F_ANNOTATION_PATH,
    F_CATEGORY,
    F_CLASS_FILE,
    F_CLASS_NAMES,
    F_LABELS_HASH,
    F_PROXY,
    F_SOURCE_FOLDER,
    F_SPLIT_SOURCE,
    F_VERIFIED,
    GT_FIELD,
    detection_extras,
    document_shape,
    fiftyone,
    labels_hash,
    objects_to_detections,
)


def new_sample(item: FolderItem, root: Path) -> Any:
    fo = fiftyone()
    ann = item.annotation
    return fo.Sample(
        filepath=str(item.image_path),
        tags=_tags(item),
        metadata=fo.ImageMetadata(
            width=ann.size.width,
            height=ann.size.height,
            num_channels=item.channels,
            size_bytes=item.image_path.stat().st_size,
        ),
        **label_fields(item),
        **_placement_fields(item, root),
    )


def _tags(item: FolderItem) -> list[str]:
    return [item.placement.split] if item.placement.split else []


def _placement_fields(item: FolderItem, root: Path) -> dict[str, Any]:
    return {
        F_SOURCE_FOLDER: str(root),
        F_SPLIT_SOURCE: item.placement.source,
        F_CATEGORY: item.placement.category,
        F_PROXY: str(item.proxy or item.image_path),
        F_CLASS_FILE: str(item.class_file) if item.class_file else None,
    }


def label_fields(item: FolderItem, detections: Any = None) -> dict[str, Any]:
    ann = item.annotation
    return {
        GT_FIELD: objects_to_detections(ann.objects, ann.size) if detections is None else detections,
        F_ANNOTATION_PATH: str(item.annotation_path),
        F_ANNOTATION_FORMAT: item.format,
        F_ANNOTATION_HASH: item.content_hash,
        F_LABELS_HASH: labels_hash(ann.objects, ann.size),
        F_VERIFIED: ann.verified,
        F_CLASS_NAMES: list(item.class_names) if item.class_names is not None else None,
    }


def bulk_add(dataset: Any, items: Sequence[FolderItem], root: Path, progress: Callable[[int], None] | None) -> None:
    """Add new samples in bulk.

    The first sample goes through FiftyOne's own ``add_samples`` (schema, media type, document layout). Its
    stored document is the reference: when a document we build for the same item has exactly its shape, the
    others are inserted directly as documents of that shape (``add_samples`` spends most of its time on
    rebuilding in-memory samples we never use). If the layout ever differs, we stay on ``add_samples``.
    """
    if not items:
        return
    ordered = sorted(items, key=lambda item: not item.annotation.objects)  # a first item with boxes
    first, rest = ordered[0], ordered[1:]
    dataset.add_samples([new_sample(first, root)], progress=False)
    faults.point("import.added")
    if progress:
        progress(1)
    reference = dataset._sample_collection.find_one({"filepath": str(first.image_path)})
    dataset_id = reference["_dataset_id"]
    if document_shape(sample_document(first, root, dataset_id)) != document_shape(reference):
        warnings.warn("FiftyOne's sample layout changed: importing through add_samples", stacklevel=2)
        _add_samples_in_batches(dataset, [new_sample(item, root) for item in rest], progress)
        return
    for start in range(0, len(rest), _BATCH):
        chunk = rest[start : start + _BATCH]
        dataset._sample_collection.insert_many(
            [sample_document(item, root, dataset_id) for item in chunk], ordered=True
        )
        faults.point("import.added")
        if progress:
            progress(len(chunk))


_BATCH = 1000


def _add_samples_in_batches(dataset: Any, samples: list[Any], progress: Callable[[int], None] | None) -> None:
    for start in range(0, len(samples), _BATCH):
        chunk = samples[start : start + _BATCH]
        dataset.add_samples(chunk, progress=False)
        if progress:
            progress(len(chunk))


def sample_document(item: FolderItem, root: Path, dataset_id: Any) -> dict[str, Any]:
    """The MongoDB document FiftyOne would store for ``new_sample(item, root)`` (tests/test_store.py compares
    the two field by field)."""
    from bson import ObjectId

    ann = item.annotation
    now = datetime.now(UTC).replace(tzinfo=None)  # naive UTC, as FiftyOne stores it (MongoDB keeps milliseconds)
    detections = []
    for obj in ann.objects:
        det: dict[str, Any] = {
            "_id": ObjectId(),
            "_cls": "Detection",
            "tags": [],
            "label": obj.label,
            "bounding_box": box_to_fiftyone(obj.box, ann.size),
            "difficult": obj.difficult,
            "truncated": int(obj.truncated),
            "attributes": {},
        }
        det.update(detection_extras(obj))
        detections.append(det)
    fields = label_fields(item, detections={"_cls": "Detections", "detections": detections})
    return {
        "_id": ObjectId(),
        "filepath": str(item.image_path),
        "tags": _tags(item),
        "metadata": {
            "_cls": "ImageMetadata",
            "size_bytes": item.image_path.stat().st_size,
            "width": ann.size.width,
            "height": ann.size.height,
            "num_channels": item.channels,
        },
        "_media_type": "image",
        "_rand": random.random() * 0.001 + 0.999,
        # FiftyOne stores no key for a field that is None
        **{key: value for key, value in fields.items() if value is not None},
        **{key: value for key, value in _placement_fields(item, root).items() if value is not None},
        "_dataset_id": dataset_id,
        "created_at": now,
        "last_modified_at": now,
    }


@contextlib.contextmanager
def refusing_duplicates(dataset: Any) -> Iterator[None]:
    """Turn the unique ``filepath`` index's refusal (another program added an image meanwhile, without the
    dataset's lease) into one error naming the image; the samples inserted before it stay, and a rerun of the
    import adds the rest (it is idempotent)."""
    from pymongo.errors import BulkWriteError

    try:
        yield
    except (BulkWriteError, ValueError) as exc:
        errors = exc.details.get("writeErrors", []) if isinstance(exc, BulkWriteError) else []
        duplicate = next((e for e in errors if e.get("code") == 11000), None)
        if duplicate is None and "E11000" not in str(exc):
            raise
        path = (duplicate or {}).get("keyValue", {}).get("filepath") or _duplicate_key(str(exc))
        raise DatasetError(
            f"{path}: already in dataset {dataset.name!r}: another program added it during this import "
            "(without fabricdata's dataset lease); run the import again"
        ) from None


def _duplicate_key(message: str) -> str:
    """The file path in MongoDB's ``E11000 ... dup key: { filepath: "PATH" }`` message."""
    _, _, rest = message.partition('filepath: "')
    return rest.rpartition('" }')[0] or "an image"
