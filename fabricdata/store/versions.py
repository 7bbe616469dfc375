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

import gzip
import hashlib
import json
import random
import re
import warnings
from dataclasses import dataclass
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

    def __len__(self) -> int:
        return len(self.samples["filepath"])

    @property
    def attributes(self) -> list[str]:
        return [name for name in self.boxes if name not in ("sample", *BOX)]

    def box_rows(self) -> list[list[str]]:
        """Per image, the canonical text of each of its boxes (label, box, tags, attributes), sorted: equal
        lists mean equal boxes, whatever their order or ids."""
        rows: list[list[str]] = [[] for _ in range(len(self))]
        attributes = self.attributes
        columns = [self.boxes[name] for name in attributes]
        boxes = self.boxes
        for index, sample in enumerate(boxes["sample"]):
            extra = {name: column[index] for name, column in zip(attributes, columns, strict=True)}
            row = [
                boxes["label"][index],
                boxes["bounding_box"][index],
                sorted(boxes["tags"][index] or []),
                {name: value for name, value in extra.items() if value is not None},
            ]
            rows[sample].append(json.dumps(row, sort_keys=True, ensure_ascii=False))
        for row_list in rows:
            row_list.sort()
        return rows

    def sample_lines(self) -> list[str]:
        """Per image, the canonical text of everything its version id covers."""
        samples = self.samples
        return [
            json.dumps([path, width, height, sorted(tags or []), bool(verified), boxes], ensure_ascii=False)
            for path, width, height, tags, verified, boxes in zip(
                samples["filepath"], samples["width"], samples["height"], samples["tags"], samples[F_VERIFIED],
                self.box_rows(), strict=True,
            )
        ]  # fmt: skip

    def content_id(self) -> str:
        """sha256 of the classes and of every image's labels (see :meth:`sample_lines`), in sorted order."""
        digest = hashlib.sha256(json.dumps(self.classes, ensure_ascii=False).encode("utf-8"))
        for line in sorted(self.sample_lines()):  # order-independent: each line starts with its file path
            digest.update(b"\n" + line.encode("utf-8"))
        return digest.hexdigest()


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
    """The labels of the dataset's originals now, in one aggregation (see :class:`LabelTable`)."""
    attributes = box_attributes(dataset)
    box_columns = (*BOX, *attributes)
    paths = ["id", "filepath", "tags", *(f"metadata.{name}" for name in METADATA), *SAMPLE_FIELDS]
    paths += [f"{GT_FIELD}.detections.{name}" for name in box_columns]
    columns = originals(dataset).sort_by("filepath").values(paths)
    samples = {name: list(column) for name, column in zip(_SAMPLE_COLUMNS, columns, strict=False)}
    per_box = columns[len(_SAMPLE_COLUMNS) :]
    counts = [len(ids or ()) for ids in per_box[0]]
    boxes: dict[str, list[Any]] = {"sample": [index for index, count in enumerate(counts) for _ in range(count)]}
    for name, column in zip(box_columns, per_box, strict=True):
        values = [value for per_sample in column for value in (per_sample or ())]
        if name in BOX or any(value is not None for value in values):
            boxes[name] = values
    return LabelTable(list(dataset.default_classes or []), samples, boxes)


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
            atomic_write_bytes(path, gzip.compress(text.encode("utf-8"), compresslevel=6, mtime=0))
        return path.stat().st_size

    def read_labels(self, version: LabelVersion) -> LabelTable:
        """The labels of a version, checked against its id (a damaged or edited file is a DatasetError)."""
        path = self.labels_file(version.id)
        try:
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
        _insert(dataset, table)
        if any(p not in (None, f) for p, f in zip(table.samples[F_PROXY], table.samples["filepath"], strict=True)):
            enable_proxies(dataset)
    except BaseException:
        fo.delete_dataset(new_name)
        raise
    return version, dataset


def _insert(dataset: Any, table: LabelTable) -> None:
    """Insert the samples of ``table`` as FiftyOne's own documents. The first goes through ``add_samples`` and is
    the reference layout (as in ``store.bulk``); when it differs from ours, the rest do too (new ids)."""
    if not len(table):
        return
    detections = _detections(table)
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


def _detections(table: LabelTable) -> list[list[dict[str, Any]]]:
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
    detections = [
        {
            "_id": ObjectId(box["id"]),
            "_cls": "Detection",
            "attributes": {},
            **{k: v for k, v in box.items() if k != "id"},
        }
        for box in boxes
    ]
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
