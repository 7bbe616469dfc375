"""Write labels fixed in FiftyOne back to LabelImg files, and export views as LabelImg folders.

Write-back never loses an edit: files are written atomically (temp file + rename) in their own format; a file
whose labels did not change is never touched; a file that changed on disk since it was imported is refused
(per file, with a clear message) unless ``force``. Coordinates are rounded, never truncated.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fabricdata.core import faults
from fabricdata.core.annotation import ImageAnnotation, LabeledBox
from fabricdata.core.errors import AnnotationError, DatasetError, WriteBackConflictError
from fabricdata.core.fileio import (
    MAX_CREATEML_BYTES,
    ChangedOnDiskError,
    atomic_write_bytes,
    atomic_write_text,
    link_or_copy,
    read_limited,
    sha256_bytes,
    unique_name,
)
from fabricdata.formats.createml import createml_entry, createml_entry_hash, parse_createml
from fabricdata.formats.voc import read_voc, read_voc_bytes, voc_to_bytes, write_voc
from fabricdata.formats.yolo import CLASSES_FILE, read_classes, write_classes, yolo_to_text
from fabricdata.store import journal
from fabricdata.store.dataset import (
    F_ANNOTATION_FORMAT,
    F_ANNOTATION_HASH,
    F_ANNOTATION_PATH,
    F_CLASS_FILE,
    F_LABELS_HASH,
    F_VERIFIED,
    TAG_PRELABELED,
    TAG_VERIFIED,
    fiftyone,
    in_scope,
    labels_digest,
    load_dataset,
    load_view,
    sample_objects,
    sample_size,
)
from fabricdata.store.importer import SIDECAR
from fabricdata.store.journal import Pending, roll_forward
from fabricdata.store.locks import dataset_lock, file_lock


@dataclass(slots=True)
class WriteBackReport:
    written: list[str] = field(default_factory=list)
    unchanged: int = 0
    errors: list[AnnotationError] = field(default_factory=list)
    #: writes a killed write-back had finished, recorded now (see :mod:`fabricdata.store.journal`)
    recovered: int = 0


def writeback(
    dataset_name: str,
    force: bool = False,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
    *,
    samples: Collection[str] | None = None,
) -> WriteBackReport:
    """Write every sample whose labels changed since import back to its annotation file (only the samples with
    the ids ``samples``, when given: the App's current view or selection, read unfiltered from the dataset).

    A transaction per file: the dataset's lock (a second write-back waits for this one), the file's lock, a
    journal entry on the sample, the file's hash checked again just before the atomic rename (a save from
    LabelImg meanwhile wins and is reported), the rename, then the new hashes. A rerun after a crash finishes
    from the journal. ``on_total`` is called once with the number of samples that have an annotation file.
    """
    with dataset_lock(dataset_name, "writeback"):
        dataset = load_dataset(dataset_name)
        report = WriteBackReport(recovered=roll_forward(dataset))
        chosen = dataset if samples is None else dataset.select(list(samples))
        _write_changed(chosen, force, report, progress, on_total)
        _write_verified_drafts(dataset, chosen, report)
    return report


def _write_changed(
    dataset: Any,
    force: bool,
    report: WriteBackReport,
    progress: Callable[[int], None] | None,
    on_total: Callable[[int], None] | None,
) -> None:
    fo = fiftyone()
    imported = dataset.exists(F_ANNOTATION_PATH).match(fo.ViewField(F_ANNOTATION_PATH) != "")
    if on_total is not None:
        on_total(len(imported))
    pending: dict[str, list[_Edited]] = defaultdict(list)  # CreateML: one file, many samples
    for sample in imported.iter_samples():
        if progress:
            progress(1)
        objects = sample_objects(sample)
        edited = _Edited(sample, objects, labels_digest(objects))
        if edited.digest == sample[F_LABELS_HASH]:
            report.unchanged += 1
        elif sample[F_ANNOTATION_FORMAT] == "createml":
            pending[sample[F_ANNOTATION_PATH]].append(edited)
        else:
            try:
                _write_one(edited, force)
            except AnnotationError as exc:
                report.errors.append(exc)
                continue
            report.written.append(sample[F_ANNOTATION_PATH])
    for path, samples in pending.items():
        _write_createml(Path(path), samples, force, report)


@dataclass(frozen=True, slots=True)
class _Edited:
    """A sample whose labels differ from its file's: the labels and their digest."""

    sample: Any
    objects: list[LabeledBox]
    digest: str


_GONE = "annotation file no longer exists"


def _replace(path: Path, data: bytes, read_hash: str | None, staged: Sequence[tuple[Any, Pending]]) -> None:
    """Journal, write ``path`` (replacing it unless it changed since it was read with hash ``read_hash``; with
    ``read_hash`` None, creating it, never over an existing file: FileExistsError), settle."""
    for sample, entry in staged:
        journal.begin(sample, entry)
    faults.point("writeback.journaled")
    try:
        if read_hash is None:
            atomic_write_bytes(path, data, overwrite=False)
        else:
            atomic_write_bytes(path, data, expect=read_hash)
    except ChangedOnDiskError:
        for sample, _ in staged:
            journal.abort(sample)
        raise WriteBackConflictError(
            path, "file", "was saved by another program during write-back: left as saved; re-import it"
        ) from None
    except BaseException:
        for sample, _ in staged:
            journal.abort(sample)
        raise
    faults.point("writeback.renamed")
    for sample, entry in staged:
        journal.commit(sample, entry)


# --- verified drafts (prelabel) ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _NewLabels:
    """What a verified draft becomes: ``data`` at ``path`` (CreateML: the whole file, the entry's hash)."""

    path: Path
    data: bytes
    annotation_hash: str
    class_file: str | None = None
    #: CreateML: the hash the existing file was read with (None: a new file, never over an existing one)
    replaces: str | None = None


def _write_verified_drafts(dataset: Any, chosen: Any, report: WriteBackReport) -> None:
    """A new label file for every draft of ``chosen`` an annotator tagged ``verified``, in the format of the
    dataset's other files, beside its image as LabelImg saves it; never over an existing file. Unverified drafts
    are never written."""
    fo = fiftyone()
    drafts = chosen.match_tags(TAG_PRELABELED).match_tags(TAG_VERIFIED)
    drafts = drafts.match(fo.ViewField(F_ANNOTATION_PATH) == None)  # noqa: E711 (a MongoDB query)
    if not len(drafts):
        return
    formats = Counter({k: v for k, v in dataset.count_values(F_ANNOTATION_FORMAT).items() if k})
    fmt = formats.most_common(1)[0][0] if formats else "voc"
    for sample in drafts.iter_samples():
        objects = sample_objects(sample)
        image = Path(sample.filepath)
        channels = sample.metadata.num_channels or 3
        annotation = ImageAnnotation(
            image.name, sample_size(sample), tuple(objects), depth=int(channels), folder=image.parent.name,
            path=str(image), verified=True,
        )  # fmt: skip
        try:
            new = _NEW_FILE_WRITERS[fmt](annotation, image, dataset)
            entry = Pending(new.annotation_hash, labels_digest(objects), str(new.path), fmt, new.class_file)
            with file_lock(new.path) if new.replaces is not None else contextlib.nullcontext():
                _replace(new.path, new.data, new.replaces, [(sample, entry)])
        except AnnotationError as exc:
            report.errors.append(exc)
            continue
        except FileExistsError as exc:
            problem = "exists already (made since prelabel): import it instead of writing the draft"
            report.errors.append(WriteBackConflictError(Path(exc.filename2 or exc.filename), "file", problem))
            continue
        report.written.append(str(new.path))


def _new_voc(annotation: ImageAnnotation, image: Path, dataset: Any) -> _NewLabels:
    data = voc_to_bytes(annotation)
    return _NewLabels(image.with_suffix(".xml"), data, sha256_bytes(data))


def _new_yolo(annotation: ImageAnnotation, image: Path, dataset: Any) -> _NewLabels:
    path = image.with_suffix(".txt")
    if path.exists():
        raise FileExistsError(0, "exists", str(path))
    classes_path = image.parent / CLASSES_FILE
    classes = list(read_classes(classes_path)) if classes_path.is_file() else list(dataset.default_classes or [])
    wanted = classes + [label for label in dict.fromkeys(annotation.labels) if label not in classes]
    if wanted != classes or not classes_path.is_file():
        write_classes(classes_path, wanted)
    data = yolo_to_text(annotation, wanted).encode("utf-8")
    return _NewLabels(path, data, sha256_bytes(data), class_file=str(classes_path))


def _new_createml(annotation: ImageAnnotation, image: Path, dataset: Any) -> _NewLabels:
    path = image.parent / "annotations.json"
    exists = path.is_file()
    raw = read_limited(path, MAX_CREATEML_BYTES) if exists else b"[]"
    entries = parse_createml(raw, path)
    if any(entry.get("image") == image.name for entry in entries):
        raise WriteBackConflictError(path, image.name, "has an entry for this image already: import it instead")
    entry = createml_entry(annotation)
    data = json.dumps([*entries, entry], ensure_ascii=False).encode("utf-8")
    return _NewLabels(path, data, createml_entry_hash(entry), replaces=sha256_bytes(raw) if exists else None)


_NEW_FILE_WRITERS: dict[str, Callable[[ImageAnnotation, Path, Any], _NewLabels]] = {
    "voc": _new_voc,
    "yolo": _new_yolo,
    "createml": _new_createml,
}


# --- the samples' own files ---------------------------------------------------------------------------------


def _check_unchanged_on_disk(path: Path, current_hash: str, stored_hash: str, force: bool) -> None:
    if current_hash != stored_hash and not force:
        raise WriteBackConflictError(
            path, "file", "changed on disk since it was imported; re-import it first or use --force"
        )


def _write_one(edited: _Edited, force: bool) -> None:
    sample, objects = edited.sample, edited.objects
    path = Path(sample[F_ANNOTATION_PATH])
    fmt = sample[F_ANNOTATION_FORMAT]
    if fmt not in ("voc", "yolo"):
        raise DatasetError(f"{path}: unknown annotation format {fmt!r}")
    try:
        with file_lock(path):
            if fmt == "voc":
                data, on_disk = read_voc_bytes(path)
                read_hash = sha256_bytes(data)
                _check_unchanged_on_disk(path, read_hash, sample[F_ANNOTATION_HASH], force)
                updated = replace(on_disk, objects=tuple(objects), verified=bool(sample[F_VERIFIED]))
                new_bytes = voc_to_bytes(updated)
            else:
                read_hash = sha256_bytes(read_limited(path))
                _check_unchanged_on_disk(path, read_hash, sample[F_ANNOTATION_HASH], force)
                new_bytes = _yolo_bytes(sample, path, objects)
            _replace(path, new_bytes, read_hash, [(sample, Pending(sha256_bytes(new_bytes), edited.digest))])
    except FileNotFoundError:
        raise WriteBackConflictError(path, "file", _GONE) from None


def _yolo_bytes(sample: Any, path: Path, objects: list[LabeledBox]) -> bytes:
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
    return yolo_to_text(annotation, classes).encode("utf-8")


def _write_createml(path: Path, samples: list[_Edited], force: bool, report: WriteBackReport) -> None:
    """One CreateML file holds many samples: every changed entry is replaced in one write of the file; the
    samples' hashes are recorded only after it (the journal covers a crash in between)."""
    try:
        with file_lock(path):
            raw = read_limited(path, MAX_CREATEML_BYTES)
            entries = parse_createml(raw, path)
            staged = _stage_createml(path, entries, samples, force, report)
            if staged:
                _replace(path, json.dumps(entries, ensure_ascii=False).encode("utf-8"), sha256_bytes(raw), staged)
                report.written.extend(f"{path}#{Path(sample.filepath).name}" for sample, _ in staged)
    except FileNotFoundError:
        report.errors.append(WriteBackConflictError(path, "file", _GONE))
    except AnnotationError as exc:
        report.errors.append(exc)


def _stage_createml(
    path: Path,
    entries: list[dict[str, Any]],
    samples: list[_Edited],
    force: bool,
    report: WriteBackReport,
) -> list[tuple[Any, Pending]]:
    """Replace the changed samples' entries in ``entries``; the samples with what their entries become."""
    by_image = {entry["image"]: index for index, entry in enumerate(entries)}
    staged = []
    for edited in samples:
        sample, name = edited.sample, Path(edited.sample.filepath).name
        index = by_image.get(name)
        if index is None:
            report.errors.append(WriteBackConflictError(path, name, "entry no longer in the file"))
            continue
        try:
            _check_unchanged_on_disk(path, createml_entry_hash(entries[index]), sample[F_ANNOTATION_HASH], force)
        except AnnotationError as exc:
            report.errors.append(exc)
            continue
        verified = bool(sample[F_VERIFIED])
        entries[index] = createml_entry(
            ImageAnnotation(name, sample_size(sample), tuple(edited.objects), verified=verified)
        )
        staged.append((sample, Pending(createml_entry_hash(entries[index]), edited.digest)))
    return staged


# --- export labelimg -------------------------------------------------------------------------------------


def _source_annotation(sample: Any) -> ImageAnnotation:
    """What the sample's own VOC file says beyond the boxes (database, segmented, unknown elements); ``<depth>``
    is the image's real channel count (never what an XML claimed)."""
    channels = sample.metadata.num_channels if sample.metadata is not None else None
    path = sample[F_ANNOTATION_PATH] if sample.has_field(F_ANNOTATION_PATH) else None
    if path and sample[F_ANNOTATION_FORMAT] == "voc":
        try:
            source = read_voc(path)
            return replace(source, depth=int(channels)) if channels else source
        except AnnotationError:
            pass  # the file changed into something unreadable: fall back to what the dataset knows
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
    view = in_scope(view)
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
