"""Label versions: content-addressed snapshots of a dataset's labels, stored with the dataset, and restore.

A version freezes what the annotators decided for the original images (augmented variants are made from them,
unverified drafts are a model's guesses): per image its file path, stored size, tags (the splits) and LabelImg's
``verified`` flag, its boxes with their attributes and label tags, and the bookkeeping that write-back and
re-import need (annotation file, format and hashes, proxy, ...). Its id is the sha256 of the labels alone (not of
the bookkeeping, not of FiftyOne's ids), so the same labels always give the same id. A version costs one gzip'd,
column-wise JSON file proportional to the labels, never a copy of an image. Files, beside the dataset's other
managed files (``store.managed_dir``)::

    <FiftyOne dataset dir>/fabricdata/<dataset>/versions/catalog.json   LabelVersion per entry (name -> id)
    <FiftyOne dataset dir>/fabricdata/<dataset>/versions/<id>.json.gz  the labels of one content id

Images are read in bulk (one ``values()`` aggregation), never sample by sample. :func:`restore` makes a new
dataset of a version (the same sample and box ids, so its export is byte-identical to the old one) and never
touches a label file.
"""

from __future__ import annotations

import contextlib
import gc
import gzip
import hashlib
import json
import random
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from fabricdata.core.contracts import ExportManifest, LabelVersion, RunFolder
from fabricdata.core.errors import DatasetError
from fabricdata.core.fileio import atomic_write_bytes
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
    document_shape,
    enable_proxies,
    fiftyone,
    labeled,
    load_dataset,
    managed_dir,
    open_dataset,
)
from fabricdata.store.locks import dataset_lock

FORMAT = "fabricdata-labels/1"
#: a version's name: what ``diff``, ``restore`` and ``runs`` show (``now`` is the dataset's current labels)
NOW = "now"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
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
        with _bulk():
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
                (label, tuple(box), tuple(sorted(tags or ())), repr(tuple(e for e in extra if e[1] is not None)))
            )
        for row in rows:
            row.sort()
        return rows

    def content_id(self) -> str:
        """sha256 of the classes and, per image in file path order, of its path, size, tags, verified flag and
        boxes (see :meth:`box_rows`), written as one JSON document."""
        samples, rows = self.samples, self.box_rows()
        order = sorted(range(len(self)), key=samples["filepath"].__getitem__)
        with _bulk():
            images = [
                [samples["filepath"][i], samples["width"][i], samples["height"][i], sorted(samples["tags"][i] or ()),
                 bool(samples[F_VERIFIED][i]), rows[i]]
                for i in order
            ]  # fmt: skip
        text = json.dumps([self.classes, images], ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


@contextlib.contextmanager
def _bulk() -> Iterator[None]:
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
    return labeled(samples).exists(F_SOURCE_ID, bool=False)


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
    with _bulk():
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


# --- the store -----------------------------------------------------------------------------------------------


class VersionStore:
    """The versions of one dataset: ``catalog.json`` and one ``<id>.json.gz`` per distinct content."""

    def __init__(self, dataset_name: str) -> None:
        self.dataset = dataset_name
        self.folder = managed_dir(dataset_name, "versions")

    @property
    def catalog(self) -> Path:
        return self.folder / "catalog.json"

    def labels_file(self, content: str) -> Path:
        return self.folder / f"{content}.json.gz"

    def versions(self) -> list[LabelVersion]:
        """Every version, oldest first (none: an empty list)."""
        if not self.catalog.is_file():
            return []
        try:
            entries = json.loads(self.catalog.read_text(encoding="utf-8"))["versions"]
            return [LabelVersion.model_validate(entry) for entry in entries]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DatasetError(f"{self.catalog}: unreadable version catalog ({exc.__class__.__name__})") from None

    def write_catalog(self, versions: list[LabelVersion]) -> None:
        text = json.dumps({"versions": [v.model_dump() for v in versions]}, indent=2, ensure_ascii=False)
        atomic_write_bytes(self.catalog, (text + "\n").encode("utf-8"))

    def write_labels(self, content: str, table: LabelTable) -> int:
        """Store the labels of ``content`` (once: the same content is never written twice); its size in bytes."""
        path = self.labels_file(content)
        if not path.is_file():
            payload = {"format": FORMAT, "classes": table.classes, "samples": table.samples, "boxes": table.boxes}
            text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=str)
            atomic_write_bytes(path, gzip.compress(text.encode("utf-8"), compresslevel=3, mtime=0))
        return path.stat().st_size

    def read_labels(self, version: LabelVersion) -> LabelTable:
        """The labels of a version, checked against its id (a damaged or edited file is a DatasetError)."""
        path = self.labels_file(version.id)
        try:
            with _bulk():
                payload = json.loads(gzip.decompress(path.read_bytes()))
            if payload.get("format") != FORMAT:
                raise ValueError(f"format {payload.get('format')!r}, expected {FORMAT}")
            table = LabelTable(list(payload["classes"]), dict(payload["samples"]), dict(payload["boxes"]))
            content = table.content_id()
        except (OSError, ValueError, KeyError, TypeError, EOFError) as exc:
            raise DatasetError(f"{path}: unreadable labels of version {version.name} ({exc})") from None
        if content != version.id:
            raise DatasetError(f"{path}: the labels of version {version.name} changed on disk (id {content[:12]})")
        return table


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _next_name(versions: list[LabelVersion]) -> str:
    numbers = [int(v.name[1:]) for v in versions if re.fullmatch(r"v\d+", v.name)]
    return f"v{max(numbers, default=0) + 1}"


def check_name(name: str) -> str:
    if name == NOW or not _NAME.fullmatch(name):
        raise DatasetError(
            f"--name {name!r}: a version name is letters, digits, '.', '_' or '-' (64 at most), and not {NOW!r}"
        )
    return name


def store_version(
    dataset_name: str,
    table: LabelTable,
    name: str | None = None,
    message: str = "",
    taken_by: Literal["snapshot", "export"] = "snapshot",
) -> tuple[LabelVersion, bool]:
    """The version of ``table`` in the dataset's store, and whether it is new. Labels a version already holds
    give that version (the latest of that id) unless a new ``name`` is asked for; a name in use for other labels
    is a DatasetError."""
    content = table.content_id()
    store = VersionStore(dataset_name)
    with dataset_lock(f"{dataset_name}\0versions"):
        versions = store.versions()
        same = [v for v in versions if (v.name == name if name else v.id == content)]
        if same and same[-1].id != content:
            raise DatasetError(
                f"version {name} already names other labels (id {same[-1].id[:12]}); choose another --name"
            )
        if same:
            return same[-1], False
        version = LabelVersion(
            id=content,
            name=check_name(name) if name else _next_name(versions),
            message=message,
            created=_now(),
            dataset=dataset_name,
            taken_by=taken_by,
            samples=len(table),
            boxes=len(table.boxes["sample"]),
            classes=table.classes,
            stored_bytes=store.write_labels(content, table),
        )
        store.write_catalog([*versions, version])
    return version, True


def snapshot(dataset_name: str, name: str | None = None, message: str = "") -> tuple[LabelVersion, bool]:
    """``fabricdata snapshot``: freeze the labels of the dataset now (see :func:`store_version`)."""
    return store_version(dataset_name, read_labels(load_dataset(dataset_name)), name, message)


def export_version(dataset: Any) -> LabelVersion:
    """The version of the labels an export is about to read: the existing one when they did not change."""
    return store_version(dataset.name, read_labels(dataset), taken_by="export")[0]


def find_version(dataset_name: str, ref: str) -> LabelVersion:
    """A version by name, or by id or an unambiguous id prefix of at least 4 hex digits.

    Raises:
        DatasetError: no such version (the message lists the dataset's versions), or an ambiguous prefix.
    """
    versions = VersionStore(dataset_name).versions()
    named = [v for v in versions if v.name == ref]
    if named:
        return named[-1]
    if re.fullmatch(r"[0-9a-f]{4,64}", ref):
        ids = {v.id for v in versions if v.id.startswith(ref)}
        if len(ids) > 1:
            raise DatasetError(f"version id {ref} is ambiguous: {', '.join(sorted(i[:12] for i in ids))}")
        if ids:
            return next(v for v in versions if v.id in ids)
    known = ", ".join(v.name for v in versions) or "none; 'fabricdata snapshot' takes one"
    raise DatasetError(f"dataset {dataset_name!r} has no label version {ref!r} (versions: {known})")


def load_version(dataset_name: str, ref: str) -> tuple[LabelVersion, LabelTable]:
    version = find_version(dataset_name, ref)
    return version, VersionStore(dataset_name).read_labels(version)


def run_version(folder: Path) -> LabelVersion | None:
    """The label version a run trained on (its copy of the export manifest names it); None for a run trained
    before versions were recorded, or without a manifest.

    Raises:
        DatasetError: the manifest names a version its dataset's store does not hold (or is unreadable).
    """
    path = RunFolder(folder).export_manifest
    if not path.is_file():
        return None
    try:
        manifest = ExportManifest.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: unreadable export manifest ({exc.__class__.__name__})") from None
    if manifest.labels_version is None:
        return None
    return find_version(manifest.dataset, manifest.labels_version)


# --- restore -------------------------------------------------------------------------------------------------


def restore(dataset_name: str, ref: str, new_name: str) -> tuple[LabelVersion, Any]:
    """``fabricdata restore VERSION --as NEW``: a new dataset holding exactly the labels of a version, with the
    same sample and box ids (so its export is byte-identical to one made from that version), the same classes
    and label schema. Reads the version's file only: no label file is read or written.

    Raises:
        DatasetError: ``new_name`` exists, no such version, or images of the version are missing (nothing made).
    """
    fo = fiftyone()
    if fo.dataset_exists(new_name):
        raise DatasetError(f"--as {new_name}: a dataset of that name exists; choose a new name")
    version, table = load_version(dataset_name, ref)
    missing = [path for path in table.samples["filepath"] if not Path(path).is_file()]
    if missing:
        raise DatasetError(
            f"{missing[0]}: missing, with {len(missing) - 1} more of the {len(table)} images of version "
            f"{version.name}; nothing restored"
        )
    dataset = open_dataset(new_name, table.classes)
    try:
        insert_labels(dataset, table)
        if any(p not in (None, f) for p, f in zip(table.samples[F_PROXY], table.samples["filepath"], strict=True)):
            enable_proxies(dataset)
    except BaseException:
        fo.delete_dataset(new_name)
        raise
    return version, dataset


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
