"""Write labels fixed in FiftyOne back to their label files, and export views as LabelImg folders.

Write-back never loses an edit: files are written atomically (temp file + rename) in their own format, through
the format registry (:mod:`fabricdata.formats.registry`); a file whose labels did not change is never touched, and in
a file that is written only what was edited changes (untouched boxes and lines keep their exact bytes, edited ones
the file's own number style), after which the dataset holds what the file says. A file that changed on disk since it
was imported is refused (per file, with a clear message) unless ``force``. A file the system will not let us write
(a full disk, a read-only folder, a FIFO in its place) is listed and the others are written.
"""

from __future__ import annotations

import contextlib
import errno
import json
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fabricdata.core import faults
from fabricdata.core.annotation import ImageAnnotation
from fabricdata.core.errors import OS_FIXES, AnnotationError, ConfigError, WriteBackConflictError
from fabricdata.core.fileio import (
    ChangedOnDiskError,
    atomic_write_bytes,
    atomic_write_text,
    link_or_copy,
    read_limited,
    sha256_bytes,
    unique_name,
)
from fabricdata.formats import registry
from fabricdata.formats.registry import LabelFormat, SampleLabels, Written
from fabricdata.formats.voc import write_voc
from fabricdata.formats.yolo import CLASSES_FILE, write_classes
from fabricdata.store import journal
from fabricdata.store.dataset import (
    F_ANNOTATION_FORMAT,
    F_ANNOTATION_HASH,
    F_ANNOTATION_PATH,
    F_CLASS_FILE,
    F_CLASS_NAMES,
    F_LABELS_HASH,
    F_VERIFIED,
    TAG_PRELABELED,
    TAG_VERIFIED,
    fiftyone,
    in_scope,
    labels_digest,
    load_dataset,
    load_view,
    sample_labels_hash,
    sample_objects,
    sample_size,
)
from fabricdata.store.importer import SIDECAR
from fabricdata.store.journal import FileJournal, Pending, roll_forward
from fabricdata.store.locks import dataset_lock, file_lock


@dataclass(slots=True)
class WriteBackReport:
    written: list[str] = field(default_factory=list)
    unchanged: int = 0
    errors: list[AnnotationError] = field(default_factory=list)
    #: writes a killed write-back had finished, recorded now (see :mod:`fabricdata.store.journal`)
    recovered: int = 0
    #: edited samples whose file did not change in its own number style (a box moved by a fraction of a pixel in
    #: a file of integers): the dataset now holds what the file says
    rounded: int = 0


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
    journal entry (in a file beside the dataset and on the sample), the file's hash checked again just before the
    atomic rename (a save from LabelImg meanwhile wins and is reported), the rename, then the new hashes and what
    the file now says. A rerun after a crash (of this process or of the database) finishes from the journal. A file
    that cannot be written (changed on disk, gone, a FIFO, a full or read-only disk) is one error in the report and
    the other files are written. ``on_total`` is called once with the number of samples that have a label file.

    Raises:
        DatasetError: the dataset does not exist.
    """
    with dataset_lock(dataset_name, "writeback"):
        dataset = load_dataset(dataset_name)
        report = WriteBackReport(recovered=roll_forward(dataset))
        chosen = dataset if samples is None else dataset.select(list(samples))
        ledger = FileJournal(dataset_name)
        _write_changed(chosen, force, report, progress, on_total, ledger)
        _write_verified_drafts(dataset, chosen, report, ledger)
    return report


def _write_changed(
    dataset: Any,
    force: bool,
    report: WriteBackReport,
    progress: Callable[[int], None] | None,
    on_total: Callable[[int], None] | None,
    ledger: FileJournal,
) -> None:
    fo = fiftyone()
    imported = dataset.exists(F_ANNOTATION_PATH).match(fo.ViewField(F_ANNOTATION_PATH) != "")
    if on_total is not None:
        on_total(len(imported))
    files: dict[str, list[Any]] = defaultdict(list)  # a file of many images: all its edited samples at once
    for sample in imported.iter_samples():
        if progress:
            progress(1)
        if sample_labels_hash(sample) == sample[F_LABELS_HASH]:
            report.unchanged += 1
        else:
            files[sample[F_ANNOTATION_PATH]].append(sample)
    for path, edited in files.items():
        _write_file(Path(path), edited, force, report, ledger)


_GONE = "annotation file no longer exists"
_CHANGED = "changed on disk since it was imported; re-import it first or use --force"


def _write_file(path: Path, samples: list[Any], force: bool, report: WriteBackReport, ledger: FileJournal) -> None:
    """Write the edits of ``samples`` (all of the file ``path``) into it; every problem is one error of the
    report, naming the file."""
    try:
        fmt = registry.get(samples[0][F_ANNOTATION_FORMAT])
        with file_lock(path):
            data = read_limited(path, fmt.max_bytes)
            before = registry.hashes(fmt, data, path)
            edits = []
            for sample in samples:
                if registry.unit_hash(before, Path(sample.filepath)) != sample[F_ANNOTATION_HASH] and not force:
                    report.errors.append(WriteBackConflictError(path, "file", _CHANGED))
                    continue
                edits.append((sample, sample_labels(sample)))
            if edits:
                _apply(fmt, path, data, before, edits, report, ledger)
    except FileNotFoundError:
        report.errors.append(WriteBackConflictError(path, "file", _GONE))
    except AnnotationError as exc:
        report.errors.append(exc)
    except ConfigError as exc:  # a format this version does not know
        report.errors.append(WriteBackConflictError(path, "format", str(exc)))
    except OSError as exc:
        report.errors.append(os_fault(path, exc))


def _apply(
    fmt: LabelFormat,
    path: Path,
    data: bytes,
    before: str | dict[str, str],
    edits: list[tuple[Any, SampleLabels]],
    report: WriteBackReport,
    ledger: FileJournal,
) -> None:
    """The format's write-back of ``edits`` into ``data``; the file replaced when its text changed, and every
    sample recorded as the file now says."""
    result = fmt.write_back(data, path, [edit for _, edit in edits])
    staged: list[tuple[Any, Pending]] = []
    changed: list[str] = []
    for sample, edit in edits:
        outcome = result.results[edit.image]
        if isinstance(outcome, AnnotationError):
            report.errors.append(outcome)
            continue
        staged.append((sample, _pending(outcome, edit)))
        if outcome.annotation_hash == registry.unit_hash(before, edit.image):
            report.rounded += 1
        else:
            changed.append(str(path) if fmt.hash_unit == "file" else f"{path}#{edit.image.name}")
    if not staged:
        return
    for companion, content in result.companions:
        atomic_write_bytes(companion, content)
    if result.data == data:
        for sample, pending in staged:  # nothing to write: the dataset takes what the file says
            journal.commit(sample, pending)
    else:
        _replace(path, result.data, sha256_bytes(data), staged, ledger)
    report.written.extend(changed)


def sample_labels(sample: Any) -> SampleLabels:
    """What the dataset holds for ``sample``, as the format registry takes it."""
    class_file = sample[F_CLASS_FILE] if sample.has_field(F_CLASS_FILE) else None
    class_names = sample[F_CLASS_NAMES] if sample.has_field(F_CLASS_NAMES) else None
    channels = sample.metadata.num_channels if sample.metadata is not None else None
    return SampleLabels(
        image=Path(sample.filepath),
        size=sample_size(sample),
        objects=tuple(sample_objects(sample)),
        verified=bool(sample[F_VERIFIED]) if sample.has_field(F_VERIFIED) else False,
        channels=int(channels or 3),
        class_file=Path(class_file) if class_file else None,
        class_names=tuple(class_names) if class_names else None,
    )


def _pending(written: Written, edit: SampleLabels, path: Path | None = None, fmt: str | None = None) -> Pending:
    return Pending(
        written.annotation_hash,
        path=str(path) if path is not None else None,
        format=fmt,
        class_file=str(written.class_file) if written.class_file is not None else None,
        objects=journal.rows(written.objects, edit.size),
    )


def os_fault(path: Path, exc: OSError) -> AnnotationError:
    """An operating-system error on one label file as one error line naming it (and the fix where known)."""
    code = errno.errorcode.get(exc.errno or 0, str(exc.errno))
    fix = OS_FIXES.get(exc.errno or 0)
    problem = f"cannot be written: {exc.strerror or exc.__class__.__name__} [{code}]" + (f": {fix}" if fix else "")
    return AnnotationError(exc.filename or path, "file", problem)


def _replace(
    path: Path, data: bytes, read_hash: str | None, staged: Sequence[tuple[Any, Pending]], ledger: FileJournal
) -> None:
    """Journal, write ``path`` (replacing it unless it changed since it was read with hash ``read_hash``; with
    ``read_hash`` None, creating it, never over an existing file: FileExistsError), settle."""
    journal.begin(ledger, staged)
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


def _write_verified_drafts(dataset: Any, chosen: Any, report: WriteBackReport, ledger: FileJournal) -> None:
    """A new label file for every draft of ``chosen`` an annotator tagged ``verified``, in the format of the
    dataset's other files, beside its image as its tools save it; never over an existing file. Unverified drafts
    are never written."""
    fo = fiftyone()
    drafts = chosen.match_tags(TAG_PRELABELED).match_tags(TAG_VERIFIED)
    drafts = drafts.match(fo.ViewField(F_ANNOTATION_PATH) == None)  # noqa: E711 (a MongoDB query)
    if not len(drafts):
        return
    formats = Counter({k: v for k, v in dataset.count_values(F_ANNOTATION_FORMAT).items() if k})
    fmt = registry.get(formats.most_common(1)[0][0] if formats else "voc")
    classes = tuple(dataset.default_classes or ())
    for sample in drafts.iter_samples():
        draft = replace(sample_labels(sample), verified=True, class_names=classes)
        target = draft.image
        try:
            new = fmt.new_file(draft)
            target = new.path
            for companion, content in new.companions:
                atomic_write_bytes(companion, content)
            entry = _pending(new.written, draft, new.path, fmt.name)
            with file_lock(new.path) if new.replaces is not None else contextlib.nullcontext():
                _replace(new.path, new.data, new.replaces, [(sample, entry)], ledger)
        except AnnotationError as exc:
            report.errors.append(exc)
            continue
        except FileExistsError as exc:
            problem = "exists already (made since prelabel): import it instead of writing the draft"
            report.errors.append(WriteBackConflictError(Path(exc.filename2 or exc.filename), "file", problem))
            continue
        except OSError as exc:
            report.errors.append(os_fault(target, exc))
            continue
        report.written.append(str(new.path))


# --- export labelimg -------------------------------------------------------------------------------------


def _source_annotation(sample: Any) -> ImageAnnotation:
    """What the sample's own label file says beyond the boxes (VOC: database, segmented, unknown elements);
    ``<depth>`` is the image's real channel count (never what an XML claimed)."""
    channels = sample.metadata.num_channels if sample.metadata is not None else None
    path = sample[F_ANNOTATION_PATH] if sample.has_field(F_ANNOTATION_PATH) else None
    if path and sample[F_ANNOTATION_FORMAT]:
        try:
            fmt = registry.get(sample[F_ANNOTATION_FORMAT])
            source = fmt.read_annotation(Path(path), Path(sample.filepath), sample_size(sample))
            return replace(source, depth=int(channels)) if channels else source
        except (AnnotationError, ConfigError):
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
