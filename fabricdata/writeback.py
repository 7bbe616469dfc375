"""Write labels fixed in FiftyOne back to LabelImg files, and export views as LabelImg folders.

Write-back never loses an edit: files are written atomically (temp file + rename) in their own format; a file
whose labels did not change is never touched; a file that changed on disk since it was imported is refused
(per file, with a clear message) unless ``force``. Coordinates are rounded, never truncated.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fabricdata.annotation import ImageAnnotation, LabeledBox
from fabricdata.errors import AnnotationError, DatasetError, WriteBackConflictError
from fabricdata.fileio import (
    atomic_write_bytes,
    atomic_write_text,
    link_or_copy,
    sha256_bytes,
    sha256_file,
    unique_name,
)
from fabricdata.formats.createml import createml_entry, createml_entry_hash, load_createml
from fabricdata.formats.voc import read_voc, read_voc_bytes, voc_to_bytes, write_voc
from fabricdata.formats.yolo import CLASSES_FILE, read_classes, write_classes, yolo_to_text
from fabricdata.importer import SIDECAR
from fabricdata.store import (
    ATTR_PROPOSAL,
    F_ANNOTATION_FORMAT,
    F_ANNOTATION_HASH,
    F_ANNOTATION_PATH,
    F_CLASS_FILE,
    F_LABELS_HASH,
    F_VERIFIED,
    GT_FIELD,
    TAG_PRELABELED,
    TAG_VERIFIED,
    fiftyone,
    labels_digest,
    load_dataset,
    load_view,
    sample_objects,
    sample_size,
)


@dataclass(slots=True)
class WriteBackReport:
    written: list[str] = field(default_factory=list)
    unchanged: int = 0
    errors: list[AnnotationError] = field(default_factory=list)


def writeback(
    dataset_name: str,
    force: bool = False,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> WriteBackReport:
    """Write every sample whose labels changed since import back to its annotation file.

    ``on_total`` is called once with the number of samples that have an annotation file (variants have none).
    """
    fo = fiftyone()
    dataset = load_dataset(dataset_name)
    report = WriteBackReport()
    imported = dataset.exists(F_ANNOTATION_PATH).match(fo.ViewField(F_ANNOTATION_PATH) != "")
    if on_total is not None:
        on_total(len(imported))
    pending: dict[str, list[tuple[Any, list[LabeledBox]]]] = defaultdict(list)  # CreateML: one file, many samples
    for sample in imported.iter_samples(autosave=True):
        if progress:
            progress(1)
        objects = sample_objects(sample)
        digest = labels_digest(objects)
        if digest == sample[F_LABELS_HASH]:
            report.unchanged += 1
            continue
        if sample[F_ANNOTATION_FORMAT] == "createml":
            pending[sample[F_ANNOTATION_PATH]].append((sample, objects))
            continue
        try:
            _write_one(sample, objects, force)
        except AnnotationError as exc:
            report.errors.append(exc)
            continue
        sample[F_LABELS_HASH] = digest
        report.written.append(sample[F_ANNOTATION_PATH])
    for path, samples in pending.items():
        _write_createml(Path(path), samples, force, report)
    _write_verified_drafts(dataset, report)
    return report


# --- verified drafts (prelabel) ---------------------------------------------------------------------------


def _write_verified_drafts(dataset: Any, report: WriteBackReport) -> None:
    """A new label file for every draft an annotator tagged ``verified``, in the format of the dataset's other
    files, beside its image as LabelImg saves it; never over an existing file. Unverified drafts are never
    written."""
    fo = fiftyone()
    drafts = dataset.match_tags(TAG_PRELABELED).match_tags(TAG_VERIFIED)
    drafts = drafts.match(fo.ViewField(F_ANNOTATION_PATH) == None)  # noqa: E711 (a MongoDB query)
    if not len(drafts):
        return
    formats = Counter({k: v for k, v in dataset.count_values(F_ANNOTATION_FORMAT).items() if k})
    fmt = formats.most_common(1)[0][0] if formats else "voc"
    for sample in drafts.iter_samples(autosave=True):
        objects = sample_objects(sample)
        image = Path(sample.filepath)
        channels = sample.metadata.num_channels or 3
        annotation = ImageAnnotation(
            image.name, sample_size(sample), tuple(objects), depth=int(channels), folder=image.parent.name,
            path=str(image), verified=True,
        )  # fmt: skip
        try:
            path, digest = _NEW_FILE_WRITERS[fmt](annotation, image, dataset, sample)
        except AnnotationError as exc:
            report.errors.append(exc)
            continue
        except FileExistsError as exc:
            problem = "exists already (made since prelabel): import it instead of writing the draft"
            report.errors.append(WriteBackConflictError(Path(exc.filename2 or exc.filename), "file", problem))
            continue
        sample[F_ANNOTATION_PATH] = str(path)
        sample[F_ANNOTATION_FORMAT] = fmt
        sample[F_ANNOTATION_HASH] = digest
        sample[F_LABELS_HASH] = labels_digest(objects)
        sample[F_VERIFIED] = True
        for det in sample[GT_FIELD].detections if sample[GT_FIELD] is not None else ():
            det[ATTR_PROPOSAL] = False
        report.written.append(str(path))


def _new_voc(annotation: ImageAnnotation, image: Path, dataset: Any, sample: Any) -> tuple[Path, str]:
    path = image.with_suffix(".xml")
    data = voc_to_bytes(annotation)
    _create(path, data)
    return path, sha256_bytes(data)


def _new_yolo(annotation: ImageAnnotation, image: Path, dataset: Any, sample: Any) -> tuple[Path, str]:
    path = image.with_suffix(".txt")
    if path.exists():
        raise FileExistsError(0, "exists", str(path))
    classes_path = image.parent / CLASSES_FILE
    classes = list(read_classes(classes_path)) if classes_path.is_file() else list(dataset.default_classes or [])
    wanted = classes + [label for label in dict.fromkeys(annotation.labels) if label not in classes]
    if wanted != classes or not classes_path.is_file():
        write_classes(classes_path, wanted)
    data = yolo_to_text(annotation, wanted).encode("utf-8")
    _create(path, data)
    sample[F_CLASS_FILE] = str(classes_path)
    return path, sha256_bytes(data)


def _new_createml(annotation: ImageAnnotation, image: Path, dataset: Any, sample: Any) -> tuple[Path, str]:
    path = image.parent / "annotations.json"
    entries = load_createml(path) if path.is_file() else []
    if any(entry.get("image") == image.name for entry in entries):
        raise WriteBackConflictError(path, image.name, "has an entry for this image already: import it instead")
    entry = createml_entry(annotation)
    atomic_write_text(path, json.dumps([*entries, entry], ensure_ascii=False))
    return path, createml_entry_hash(entry)


_NEW_FILE_WRITERS: dict[str, Callable[[ImageAnnotation, Path, Any, Any], tuple[Path, str]]] = {
    "voc": _new_voc,
    "yolo": _new_yolo,
    "createml": _new_createml,
}


def _create(path: Path, data: bytes) -> None:
    """Write a new file atomically; FileExistsError (nothing written) when one is there."""
    atomic_write_bytes(path, data, overwrite=False)


def _check_unchanged_on_disk(path: Path, current_hash: str, stored_hash: str, force: bool) -> None:
    if current_hash != stored_hash and not force:
        raise WriteBackConflictError(
            path, "file", "changed on disk since it was imported; re-import it first or use --force"
        )


def _write_one(sample: Any, objects: list[LabeledBox], force: bool) -> None:
    path = Path(sample[F_ANNOTATION_PATH])
    fmt = sample[F_ANNOTATION_FORMAT]
    if not path.exists():
        raise WriteBackConflictError(path, "file", "annotation file no longer exists")
    if fmt == "voc":
        data, on_disk = read_voc_bytes(path)
        _check_unchanged_on_disk(path, sha256_bytes(data), sample[F_ANNOTATION_HASH], force)
        updated = replace(on_disk, objects=tuple(objects), verified=bool(sample[F_VERIFIED]))
        new_bytes = voc_to_bytes(updated)
        atomic_write_bytes(path, new_bytes)
        sample[F_ANNOTATION_HASH] = sha256_bytes(new_bytes)
    elif fmt == "yolo":
        _check_unchanged_on_disk(path, sha256_file(path), sample[F_ANNOTATION_HASH], force)
        named = sample[F_CLASS_FILE] if sample.has_field(F_CLASS_FILE) else None
        classes_path = Path(named) if named else path.parent / CLASSES_FILE
        classes = list(read_classes(classes_path))
        annotation = ImageAnnotation(path.name, sample_size(sample), tuple(objects))
        added = list(dict.fromkeys(obj.label for obj in annotation.objects if obj.label not in classes))
        if added and classes_path.suffix.lower() in (".yaml", ".yml"):
            raise WriteBackConflictError(
                classes_path, "names", f"class {added[0]!r} is not listed; add it to the YAML's names first"
            )
        if added:  # LabelImg appends new classes the same way
            classes += added
            write_classes(classes_path, classes)
        text = yolo_to_text(annotation, classes)
        atomic_write_text(path, text)
        sample[F_ANNOTATION_HASH] = sha256_bytes(text.encode("utf-8"))
    else:
        raise DatasetError(f"{path}: unknown annotation format {fmt!r}")


def _write_createml(
    path: Path, samples: list[tuple[Any, list[LabeledBox]]], force: bool, report: WriteBackReport
) -> None:
    try:
        entries = load_createml(path)
    except AnnotationError as exc:
        report.errors.append(exc)
        return
    by_image = {entry["image"]: index for index, entry in enumerate(entries)}
    for sample, objects in samples:
        name = Path(sample.filepath).name
        index = by_image.get(name)
        if index is None:
            report.errors.append(WriteBackConflictError(path, name, "entry no longer in the file"))
            continue
        try:
            _check_unchanged_on_disk(path, createml_entry_hash(entries[index]), sample[F_ANNOTATION_HASH], force)
        except AnnotationError as exc:
            report.errors.append(exc)
            continue
        annotation = ImageAnnotation(name, sample_size(sample), tuple(objects), verified=bool(sample[F_VERIFIED]))
        entry = createml_entry(annotation)
        entries[index] = entry
        sample[F_ANNOTATION_HASH] = createml_entry_hash(entry)
        sample[F_LABELS_HASH] = labels_digest(annotation.objects)
        sample.save()
        report.written.append(f"{path}#{name}")
    atomic_write_text(path, json.dumps(entries, ensure_ascii=False))


# --- export labelimg -------------------------------------------------------------------------------------


def _source_annotation(sample: Any) -> ImageAnnotation:
    """What the sample's own VOC file says beyond the boxes (depth, database, segmented, unknown elements);
    for other sources, the depth of the image."""
    path = sample[F_ANNOTATION_PATH] if sample.has_field(F_ANNOTATION_PATH) else None
    if path and sample[F_ANNOTATION_FORMAT] == "voc":
        try:
            return read_voc(path)
        except AnnotationError:
            pass  # the file changed into something unreadable: fall back to what the dataset knows
    channels = sample.metadata.num_channels if sample.metadata is not None else None
    return ImageAnnotation("", sample_size(sample), depth=int(channels or 3))


def export_labelimg(
    dataset_name: str,
    out: str | Path,
    view_name: str | None = None,
    tag: str | None = None,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> int:
    """Write a LabelImg folder (images linked or copied, VOC XML, classes.txt) for a saved view or a tag.

    A sidecar records which sample each file came from, so re-importing the folder updates those samples.
    """
    dataset, view = load_view(dataset_name, view_name)
    if tag is not None:
        view = view.match_tags(tag)
    if on_total is not None:
        on_total(len(view))
    target = Path(out)
    target.mkdir(parents=True, exist_ok=True)
    entries: dict[str, dict[str, str]] = {}
    for sample in view.iter_samples():
        name = unique_name(Path(sample.filepath).name, entries)
        link_or_copy(sample.filepath, target / name)
        objects = sample_objects(sample)
        annotation = replace(
            _source_annotation(sample),
            filename=name,
            size=sample_size(sample),
            objects=tuple(objects),
            folder=target.name,
            path=str((target / name).resolve()),
            verified=bool(sample[F_VERIFIED]) if sample.has_field(F_VERIFIED) else False,
        )
        write_voc(annotation, target / f"{Path(name).stem}.xml")
        entries[name] = {"id": sample.id, "labels_hash": labels_digest(objects)}
        if progress:
            progress(1)
    write_classes(target / CLASSES_FILE, list(dataset.default_classes))
    sidecar = {"dataset": dataset_name, "view": view_name, "tag": tag, "samples": entries}
    atomic_write_text(target / SIDECAR, json.dumps(sidecar, indent=1, ensure_ascii=False))
    return len(entries)
