"""The FiftyOne dataset: opening it, its schema, and converting labels between annotations and FiftyOne.

The database is FiftyOne's own: the bundled MongoDB by default, a shared server when
``FIFTYONE_DATABASE_URI`` is set. fiftyone is imported inside functions, never at module load.
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fabricdata.core.annotation import LabeledBox
from fabricdata.core.boxes import ImageSize, box_to_fiftyone, box_to_voc, fiftyone_to_box
from fabricdata.core.errors import DatasetError

if TYPE_CHECKING:
    import fiftyone as fo

DEFAULT_DATASET = "fabric"
GT_FIELD = "ground_truth"
SPLITS: tuple[str, ...] = ("train", "val", "test")

# the data model: every name below has a row in docs/ARCHITECTURE.md (tests/test_architecture.py checks it)
F_ANNOTATION_PATH = "annotation_path"
F_ANNOTATION_FORMAT = "annotation_format"
F_ANNOTATION_HASH = "annotation_hash"
F_LABELS_HASH = "labels_hash"
F_VERIFIED = "verified"
F_SOURCE_FOLDER = "source_folder"
#: where the authors' split came from (folder names, a list file, data.yaml, fabricdata split)
F_SPLIT_SOURCE = "split_source"
#: the folder an image sits in below the import folder (``stain/``, ``defect_free/``), when it names one
F_CATEGORY = "category"
#: a browser-viewable copy for the App (the image itself when browsers can show it)
F_PROXY = "proxy_filepath"
#: YOLO: the file its class names came from (classes.txt, *.names, data.yaml), for write-back
F_CLASS_FILE = "class_file"
#: YOLO read with ``--classes`` (no names file): the names by index (write-back writes them to a classes.txt)
F_CLASS_NAMES = "class_names"
#: prelabel: the run whose model drafted a sample's boxes, and the confidence of its best box (None: no box)
F_PRELABEL_RUN = "prelabel_run"
F_PRELABEL_CONFIDENCE = "prelabel_confidence"
#: sample tags of model-assisted labeling: drafted by a model, and confirmed by an annotator in the App
TAG_PRELABELED = "prelabeled"
TAG_VERIFIED = "verified"
#: detection attribute of a drafted box (with the box's ``confidence``)
ATTR_PROPOSAL = "proposal"
#: write-back's journal: set before a file is replaced, cleared once the new hashes are recorded (JSON)
F_WRITEBACK_PENDING = "writeback_pending"
#: the image's near-duplicate fingerprint (core/similar.py) and what it was computed from
#: ("VERSION:size:mtime_ns:sha256" of the file): recomputed only when the file's bytes change
F_FINGERPRINT = "fingerprint"
F_FINGERPRINT_KEY = "fingerprint_key"
#: set on augmented variants: the id of the sample they were made from
F_SOURCE_ID = "source_id"
#: the rest of a variant's lineage (docs/ARCHITECTURE.md): recipe name and digest, seed, copy index
F_RECIPE = "aug_recipe"
F_RECIPE_HASH = "aug_recipe_hash"
F_SEED = "aug_seed"
F_COPY = "aug_copy"
#: recipe digest, seed, copy and source id: what makes a variant unique (re-running augment adds nothing)
F_KEY = "aug_key"
#: audit (``fabricdata audit``): per sample its label quality (cleanlab's, 1.0 = no doubt), the fold it was held out
#: in and the run (or predictions file) that predicted it; the out-of-fold predictions as their own label field
F_AUDIT_SCORE = "audit_score"
F_AUDIT_FOLD = "audit_fold"
F_AUDIT_RUN = "audit_run"
F_AUDIT_PREDICTIONS = "audit_predictions"
#: audit attributes of a box (ground truth and audit predictions): its issue (missing, swapped, mislocated,
#: spurious or None) and that issue's score (lower is worse); on a disputed box, the prediction disputing it
ATTR_AUDIT_ISSUE = "audit_issue"
ATTR_AUDIT_SCORE = "audit_score"
ATTR_AUDIT_DISPUTED_BY = "audit_disputed_by"
#: every score of a ground-truth box (swapped, mislocated, support) and a prediction's calibrated confidence
ATTR_AUDIT_SWAP = "audit_swap"
ATTR_AUDIT_BADLOC = "audit_badloc"
ATTR_AUDIT_SUPPORT = "audit_support"
ATTR_AUDIT_CALIBRATED = "audit_calibrated"
VARIANT_FIELDS: dict[str, str] = {
    F_RECIPE: "string",
    F_RECIPE_HASH: "string",
    F_SEED: "int",
    F_COPY: "int",
    F_KEY: "string",
}


def fiftyone() -> Any:
    """Import fiftyone on first use (it takes seconds and starts no database until a dataset is touched)."""
    import fiftyone as fo

    return fo


def dataset_exists(name: str) -> bool:
    return bool(fiftyone().dataset_exists(name))


def load_dataset(name: str = DEFAULT_DATASET) -> fo.Dataset:
    """An existing dataset, or a clear error naming the datasets there are."""
    fo = fiftyone()
    if not fo.dataset_exists(name):
        known = ", ".join(fo.list_datasets()) or "none"
        raise DatasetError(f"dataset {name!r} does not exist (datasets: {known}); run 'fabricdata import' first")
    dataset = fo.load_dataset(name)
    ensure_schema(dataset, ())  # datasets made by an older fabricdata get the fields they lack
    return dataset


def load_view(name: str, view_name: str | None) -> tuple[fo.Dataset, Any]:
    """A dataset and one of its saved views (the whole dataset when ``view_name`` is None)."""
    dataset = load_dataset(name)
    if view_name is None:
        return dataset, dataset
    if not dataset.has_saved_view(view_name):
        known = ", ".join(dataset.list_saved_views()) or "none"
        raise DatasetError(f"dataset {name!r} has no saved view {view_name!r} (saved views: {known})")
    return dataset, dataset.load_saved_view(view_name)


def open_dataset(name: str = DEFAULT_DATASET, classes: Sequence[str] | None = None) -> fo.Dataset:
    """Load or create the persistent dataset ``name`` with the project's fields and label schema.

    Raises:
        DatasetError: ``name`` is new but FiftyOne cannot tell it from an existing dataset (names that differ
            only in case or punctuation share one URL slug).
    """
    fo = fiftyone()
    if not fo.dataset_exists(name):
        _check_name_free(name)
    dataset = fo.load_dataset(name) if fo.dataset_exists(name) else fo.Dataset(name, persistent=True)
    ensure_schema(dataset, classes or ())
    return dataset


def _check_name_free(name: str) -> None:
    import fiftyone.core.utils as fou

    try:
        slug = fou.to_slug(name)
    except ValueError as exc:
        raise DatasetError(f"dataset name {name!r} cannot be used ({exc})") from None
    for other in fiftyone().list_datasets():
        if fou.to_slug(other) == slug:
            raise DatasetError(
                f"dataset name {name!r} clashes with the existing dataset {other!r}: FiftyOne cannot tell names "
                f"apart that differ only in case or punctuation; use --dataset {other} or another name"
            )


def ensure_schema(dataset: fo.Dataset, classes: Sequence[str]) -> None:
    """Declare fields and classes; activate a label schema so the App's Annotate tab can edit boxes."""
    fo = fiftyone()
    merged = list(dataset.default_classes or [])
    merged += [name for name in classes if name not in merged]
    if merged != list(dataset.default_classes or []):
        dataset.default_classes = merged
    schema = dataset.get_field_schema(flat=True)
    wanted: dict[str, Any] = {
        GT_FIELD: (fo.EmbeddedDocumentField, {"embedded_doc_type": fo.Detections}),
        f"{GT_FIELD}.detections.difficult": (fo.BooleanField, {}),
        f"{GT_FIELD}.detections.truncated": (fo.IntField, {}),
        f"{GT_FIELD}.detections.caption": (fo.StringField, {}),
        F_ANNOTATION_PATH: (fo.StringField, {}),
        F_ANNOTATION_FORMAT: (fo.StringField, {}),
        F_ANNOTATION_HASH: (fo.StringField, {}),
        F_LABELS_HASH: (fo.StringField, {}),
        F_VERIFIED: (fo.BooleanField, {}),
        F_SOURCE_FOLDER: (fo.StringField, {}),
        F_SOURCE_ID: (fo.StringField, {}),
        F_SPLIT_SOURCE: (fo.StringField, {}),
        F_CATEGORY: (fo.StringField, {}),
        F_PROXY: (fo.StringField, {}),
        F_CLASS_FILE: (fo.StringField, {}),
        F_CLASS_NAMES: (fo.ListField, {"subfield": fo.StringField}),
        F_PRELABEL_RUN: (fo.StringField, {}),
        F_PRELABEL_CONFIDENCE: (fo.FloatField, {}),
        F_WRITEBACK_PENDING: (fo.StringField, {}),
        F_FINGERPRINT: (fo.VectorField, {}),
        F_FINGERPRINT_KEY: (fo.StringField, {}),
        f"{GT_FIELD}.detections.{ATTR_PROPOSAL}": (fo.BooleanField, {}),
        **{name: (fo.IntField if kind == "int" else fo.StringField, {}) for name, kind in VARIANT_FIELDS.items()},
    }
    for path, (ftype, kwargs) in wanted.items():
        if path not in schema:
            dataset.add_sample_field(path, ftype, **kwargs)
    activate_label_schema(dataset, merged)
    ensure_unique_filepaths(dataset)


def ensure_unique_filepaths(dataset: fo.Dataset) -> None:
    """A unique index on ``filepath``: the database itself refuses a second sample of one image, whatever
    program inserts it. A dataset that already holds duplicates (left by concurrent imports of fabricdata 0.x)
    keeps FiftyOne's plain index, with a warning naming them (FiftyOne would drop the plain one and fail)."""
    if (dataset.get_index_information().get("filepath") or {}).get("unique"):
        return
    twice = list(
        dataset._sample_collection.aggregate(
            [{"$group": {"_id": "$filepath", "n": {"$sum": 1}}}, {"$match": {"n": {"$gt": 1}}}, {"$limit": 3}]
        )
    )
    if twice:
        listed = ", ".join(f"{row['_id']} ({row['n']} samples)" for row in twice)
        warnings.warn(
            f"dataset {dataset.name!r} holds images more than once ({listed}{', ...' if len(twice) == 3 else ''}): "
            "delete the extra samples (in the App, or with dataset.delete_samples) so that the database can refuse "
            "duplicates",
            stacklevel=3,
        )
        return
    quiet = logging.getLogger("fiftyone.core.collections")
    level = quiet.level
    quiet.setLevel(logging.WARNING)  # "Converting existing index 'filepath' to unique": once per dataset
    try:
        dataset.create_index("filepath", unique=True)
    finally:
        quiet.setLevel(level)


def ensure_audit_schema(dataset: fo.Dataset) -> None:
    """Declare the audit's fields (only on datasets that are audited, so the App shows them only there)."""
    fo = fiftyone()
    schema = dataset.get_field_schema(flat=True)
    gt, pred = f"{GT_FIELD}.detections", f"{F_AUDIT_PREDICTIONS}.detections"
    wanted: dict[str, Any] = {
        F_AUDIT_SCORE: (fo.FloatField, {}),
        F_AUDIT_FOLD: (fo.IntField, {}),
        F_AUDIT_RUN: (fo.StringField, {}),
        F_AUDIT_PREDICTIONS: (fo.EmbeddedDocumentField, {"embedded_doc_type": fo.Detections}),
        **{f"{gt}.{name}": (fo.StringField, {}) for name in (ATTR_AUDIT_ISSUE, ATTR_AUDIT_DISPUTED_BY)},
        **{f"{gt}.{name}": (fo.FloatField, {}) for name in (ATTR_AUDIT_SCORE, ATTR_AUDIT_SWAP, ATTR_AUDIT_BADLOC)},
        f"{gt}.{ATTR_AUDIT_SUPPORT}": (fo.FloatField, {}),
        f"{pred}.{ATTR_AUDIT_ISSUE}": (fo.StringField, {}),
        f"{pred}.{ATTR_AUDIT_SCORE}": (fo.FloatField, {}),
        f"{pred}.{ATTR_AUDIT_CALIBRATED}": (fo.FloatField, {}),
    }
    for path, (ftype, kwargs) in wanted.items():
        if path not in schema:
            dataset.add_sample_field(path, ftype, **kwargs)
            schema = dataset.get_field_schema(flat=True)


def pending_drafts(samples: Any) -> Any:
    """The samples whose boxes a model drafted and no annotator has verified yet."""
    return samples.match_tags(TAG_PRELABELED).match_tags(TAG_VERIFIED, bool=False)


def annotated(samples: Any) -> Any:
    """The samples whose labels are an annotator's: everything but unverified drafts (whatever the scope)."""
    fo = fiftyone()
    tags = fo.ViewField("tags")
    return samples.match(~(tags.contains(TAG_PRELABELED) & ~tags.contains(TAG_VERIFIED)))


def labeled(samples: Any) -> Any:
    """The samples a verb works on: the annotators' labels (everything but unverified drafts, so a model's guesses
    never train a model), within the caller's scope (:func:`scoped`). Statistics, splits, augmentation,
    validation, audits and exports read these."""
    return in_scope(annotated(samples))


#: the sample ids of the view a Python API caller passed (fabricdata.api); None: the whole dataset
_SCOPE: ContextVar[frozenset[str] | None] = ContextVar("fabricdata_scope", default=None)


@contextmanager
def scoped(sample_ids: Iterable[str]) -> Iterator[None]:
    """Within the block, the verbs read only these samples of their dataset (:func:`labeled`, :func:`in_scope`):
    how ``fabricdata.api`` runs a verb on an ``fo.DatasetView``."""
    token = _SCOPE.set(frozenset(sample_ids))
    try:
        yield
    finally:
        _SCOPE.reset(token)


def scope() -> frozenset[str] | None:
    """The sample ids of the current scope (:func:`scoped`); None outside one."""
    return _SCOPE.get()


def in_scope(samples: Any) -> Any:
    """``samples`` restricted to the current scope (unchanged outside one)."""
    ids = _SCOPE.get()
    return samples if ids is None else samples.select(sorted(ids))


def managed_dir(dataset_name: str, kind: str) -> Path:
    """A folder of files fabricdata makes for a dataset (variants, proxies), under FiftyOne's dataset dir and
    never beside the user's files."""
    return Path(fiftyone().config.default_dataset_dir) / "fabricdata" / dataset_name / kind


def enable_proxies(dataset: fo.Dataset) -> None:
    """Show ``proxy_filepath`` in the App's grid and modal (samples without one show their own file)."""
    config = dataset.app_config
    if config.grid_media_field == F_PROXY and config.modal_media_field == F_PROXY:
        return
    fo = fiftyone()
    missing = dataset.match(fo.ViewField(F_PROXY) == None)  # noqa: E711 (a MongoDB query, not a comparison)
    missing.set_values(F_PROXY, missing.values("filepath"))
    config.media_fields = list(dict.fromkeys([*(config.media_fields or ["filepath"]), F_PROXY]))
    config.grid_media_field = F_PROXY
    config.modal_media_field = F_PROXY
    dataset.save()


def activate_label_schema(dataset: fo.Dataset, classes: Sequence[str]) -> None:
    """The App's Annotate tab: draw, move and relabel boxes with exactly these classes and attributes."""
    schema = {
        GT_FIELD: {
            "type": "detections",
            "component": "dropdown",
            "classes": list(classes),
            "attributes": [
                {"name": "difficult", "type": "bool", "component": "checkbox"},
                {"name": "truncated", "type": "int", "component": "radio", "values": [0, 1]},
            ],
        }
    }
    if (dataset.label_schemas or {}).get(GT_FIELD) != schema[GT_FIELD]:
        dataset.set_label_schemas(schema)
    if GT_FIELD not in (dataset.active_label_schemas or []):
        dataset.activate_label_schemas(GT_FIELD)


# --- labels <-> FiftyOne ---------------------------------------------------------------------------------


def detection_extras(obj: LabeledBox) -> dict[str, Any]:
    """Attributes a detection carries only when they say something (pose, caption, unknown VOC elements)."""
    extra: dict[str, Any] = {}
    if obj.pose != "Unspecified":
        extra["pose"] = obj.pose
    if obj.caption is not None:
        extra["caption"] = obj.caption
    if obj.extra_xml:
        extra["extra_xml"] = list(obj.extra_xml)
    return extra


def objects_to_detections(objects: Iterable[LabeledBox], size: ImageSize) -> fo.Detections:
    fo = fiftyone()
    detections = []
    for obj in objects:
        detections.append(
            fo.Detection(
                label=obj.label,
                bounding_box=box_to_fiftyone(obj.box, size),
                difficult=obj.difficult,
                truncated=int(obj.truncated),
                **detection_extras(obj),
            )
        )
    return fo.Detections(detections=detections)


def detections_to_objects(detections: Any, size: ImageSize) -> list[LabeledBox]:
    """FiftyOne Detections (or None) to labelled boxes in pixels, keeping the VOC attributes."""
    if detections is None:
        return []
    objects = []
    for det in detections.detections:
        objects.append(
            LabeledBox(
                label=det.label,
                box=fiftyone_to_box(det.bounding_box, size),
                difficult=bool(_attr(det, "difficult", False)),
                truncated=bool(_attr(det, "truncated", 0)),
                pose=str(_attr(det, "pose", "Unspecified") or "Unspecified"),
                caption=_attr(det, "caption", None),
                extra_xml=tuple(_attr(det, "extra_xml", None) or ()),
            )
        )
    return objects


def _attr(det: Any, name: str, default: Any) -> Any:
    value = det.get_field(name) if det.has_field(name) else None
    return default if value is None else value


def document_shape(value: Any) -> Any:
    """Keys and value types of a MongoDB document, recursively (lists by their first element): the layout check
    behind every place that writes FiftyOne's documents directly (a FiftyOne upgrade that changes the layout
    then falls back to FiftyOne's own objects instead of writing something else)."""
    if isinstance(value, dict):
        return {key: document_shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [document_shape(value[0])] if value else []
    return type(value).__name__


def detections_document(rows: Iterable[tuple[str, list[float], float]]) -> dict[str, Any]:
    """The stored form of a ``Detections`` of (label, relative box, confidence) rows, as ``to_mongo`` writes it."""
    from bson import ObjectId

    detections = [
        {
            "_id": ObjectId(),
            "_cls": "Detection",
            "attributes": {},
            "tags": [],
            "label": label,
            "bounding_box": box,
            "confidence": confidence,
        }
        for label, box, confidence in rows
    ]
    return {"_cls": "Detections", "detections": detections}


def detections_layout_matches() -> bool:
    """True when :func:`detections_document` writes exactly what FiftyOne's own objects store."""
    fo = fiftyone()
    own = fo.Detections(detections=[fo.Detection(label="a", bounding_box=[0.0, 0.0, 1.0, 1.0], confidence=0.5)])
    return bool(
        document_shape(dict(own.to_mongo())) == document_shape(detections_document([("a", [0.0, 0.0, 1.0, 1.0], 0.5)]))
    )


def labels_digest(objects: Iterable[LabeledBox]) -> str:
    """A hash of what a LabelImg file would store for these labels (order-independent, VOC-rounded): how
    ``export labelimg``'s sidecar recognises a file fixed in LabelImg."""
    rows = sorted(
        [obj.label, list(box_to_voc(obj.box)), obj.difficult, obj.truncated, obj.pose, obj.caption or ""]
        for obj in objects
    )
    return hashlib.sha256(json.dumps(rows, ensure_ascii=False).encode("utf-8")).hexdigest()


def labels_hash(objects: Iterable[LabeledBox], size: ImageSize) -> str:
    """The digest of labels exactly as the dataset stores them (``labels_hash``): the relative boxes bit for bit
    (FiftyOne's ``[x, y, w, h]`` of ``size``), labels, flags, pose and caption, in any order. Equal to
    :func:`detections_hash` of the detections made of ``objects``; any App edit, even of a thousandth of a pixel,
    changes it."""
    return _rows_hash(_row(obj, box_to_fiftyone(obj.box, size)) for obj in objects)


def detections_hash(detections: Any, size: ImageSize) -> str:
    """:func:`labels_hash` of stored FiftyOne ``Detections`` (or None), read from their own relative boxes."""
    if detections is None:
        return _rows_hash([])
    objects = detections_to_objects(detections, size)
    return _rows_hash(_row(obj, det.bounding_box) for obj, det in zip(objects, detections.detections, strict=True))


def sample_labels_hash(sample: Any, field: str = GT_FIELD) -> str:
    """:func:`labels_hash` of what a sample holds now (compared with its ``labels_hash``: edited since?)."""
    return detections_hash(sample[field], sample_size(sample))


def _row(obj: LabeledBox, rel: Sequence[float]) -> list[Any]:
    return [obj.label, [float(v).hex() for v in rel], obj.difficult, obj.truncated, obj.pose, obj.caption or ""]


def _rows_hash(rows: Iterable[list[Any]]) -> str:
    return hashlib.sha256(json.dumps(sorted(rows), ensure_ascii=False).encode("utf-8")).hexdigest()


def sample_size(sample: Any) -> ImageSize:
    """The stored image size of a sample (set by import from the image header)."""
    metadata = sample.metadata
    return stored_size(sample.filepath, *((metadata.width, metadata.height) if metadata is not None else (0, 0)))


def stored_size(filepath: str, width: Any, height: Any) -> ImageSize:
    """The image size a sample stores (``metadata.width``/``height``, read in bulk by the caller); a sample
    without one is one DatasetError naming its file, wherever it is read."""
    if not width or not height:
        raise DatasetError(f"{filepath}: sample has no image size metadata; re-import its folder")
    return ImageSize(int(width), int(height))


def sample_objects(sample: Any, field: str = GT_FIELD) -> list[LabeledBox]:
    return detections_to_objects(sample[field], sample_size(sample))
