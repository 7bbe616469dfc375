"""Import a LabelImg folder into the FiftyOne dataset: bulk, idempotent, and never losing an App edit.

- New images are added in bulk; unchanged annotation files are skipped (content hash); changed files update
  their sample, unless the sample has App edits that were not written back yet (then it is a conflict).
- Every image's real size is read from its header and checked against the annotation.
- Samples whose files disappeared are reported, and removed only with ``prune``.
- A folder written by ``export labelimg`` carries a sidecar that maps its files to the samples they came from,
  so that re-importing it updates those samples (the edits then reach the original files through write-back).
  A malformed sidecar is one error; the folder is then imported as an ordinary folder.
- Every file ends in the report's ledger (imported, refused or ignored, with the reason); annotation files of
  which fewer than half pair with an image, or none imported, are an error saying where their images probably are.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from fabricdata.core.errors import AnnotationError, DatasetError, InvalidValueError
from fabricdata.core.images import DEFAULT_MAX_PIXELS, check_complete, pixel_limit, write_proxy
from fabricdata.formats import FolderItem, FolderScan, FormatName, read_folder
from fabricdata.formats.discover import CLASS_ORDER_FILE
from fabricdata.formats.names import read_names_file
from fabricdata.store.bulk import bulk_add, label_fields, refusing_duplicates
from fabricdata.store.dataset import (
    F_ANNOTATION_HASH,
    F_LABELS_HASH,
    F_SOURCE_FOLDER,
    F_VERIFIED,
    GT_FIELD,
    TAG_PRELABELED,
    enable_proxies,
    fiftyone,
    labels_digest,
    managed_dir,
    objects_to_detections,
    open_dataset,
    sample_labels_hash,
    sample_objects,
)
from fabricdata.store.import_report import ImportReport, build_ledger
from fabricdata.store.journal import roll_forward
from fabricdata.store.locks import dataset_lock

SIDECAR = ".fabricdata.json"
_OBJECT_ID = re.compile(r"[0-9a-f]{24}")


def import_folder(
    folder: str | Path,
    dataset_name: str,
    fmt: FormatName = "auto",
    classes: Sequence[str] | None = None,
    prune: bool = False,
    force: bool = False,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
    *,
    follow_links: bool = False,
    max_pixels: int | None = None,
    names: str | Path | None = None,
) -> ImportReport:
    """Import (or re-import) the tree ``folder`` into the dataset ``dataset_name``.

    ``on_total`` is called once with the number of images found (for progress bars), before any is imported.
    Links to files outside ``folder`` are refused unless ``follow_links``; images above ``max_pixels`` pixels
    (default :data:`fabricdata.core.images.DEFAULT_MAX_PIXELS`) are refused; new images must be complete (not
    truncated). Every refusal is one error naming the file; the rest of the folder is imported. ``names``: the
    class-name file (data.yaml, obj.data, classes.txt, *.names) every YOLO label uses, where several could apply.

    Raises:
        FormatDetectionError: the tree holds no annotation at all.
        AnnotationError: the ``names`` file is missing or malformed.
        DatasetError: the dataset name clashes with another one, or an export sidecar names another dataset.
    """
    root = Path(folder).resolve()
    chosen = read_names_file(names) if names is not None else None
    # the lease before the scan: a write-back that held it has written its files by then, and the scan sees them
    with dataset_lock(dataset_name, "import"), pixel_limit(DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels):
        scan = read_folder(root, fmt, classes, follow_links=follow_links, names=chosen)
        report = _import_scan(root, scan, dataset_name, classes, prune, force, progress, on_total)
    _judge_import(root, scan, report)
    report.ledger = build_ledger(scan, report.errors)
    return report


def _judge_import(root: Path, scan: FolderScan, report: ImportReport) -> None:
    """No import of a folder holding annotation files ends without an error and with 0 images."""
    imported = report.added + report.updated + report.unchanged
    if scan.annotation_files and not imported and not report.errors:
        guess = scan.guess or f"none of its {scan.annotation_files} annotation files was imported"
        report.errors.append(InvalidValueError(root, "pairing", f"0 images imported: {guess}"))


def _import_scan(
    root: Path,
    scan: FolderScan,
    dataset_name: str,
    classes: Sequence[str] | None,
    prune: bool,
    force: bool,
    progress: Callable[[int], None] | None,
    on_total: Callable[[int], None] | None,
) -> ImportReport:
    if on_total is not None:
        on_total(len(scan.items))
    report = ImportReport.from_scan(root, scan)
    dataset = open_dataset(dataset_name, _class_order(root, scan.items, classes or scan.classes))
    roll_forward(dataset)  # writes a killed write-back finished: their files are the App's labels, not changes
    sidecar = _read_sidecar(root, dataset_name, report.errors)
    if sidecar is not None:
        _update_from_export(dataset, scan.items, sidecar, force, report, progress)
        _used_classes(dataset, report)
        return report
    known = _known_samples(dataset)
    new_items: list[FolderItem] = []
    changed: list[tuple[str, FolderItem]] = []
    for item in scan.items:
        entry = known.get(str(item.image_path))
        if entry is None:
            new_items.append(item)
        elif entry[1] == item.content_hash:
            report.unchanged += 1
            if progress:
                progress(1)
        else:
            changed.append((entry[0], item))
    new_items = _complete(new_items, report.errors)
    report.exif_rotated = [str(i.image_path) for i in new_items if i.image and i.image.orientation not in (0, 1)]
    new_items = _with_proxies(new_items, managed_dir(dataset_name, "proxies"), report.errors)
    report.proxies = sum(item.proxy is not None for item in new_items)
    with refusing_duplicates(dataset):  # the unique filepath index: a program that took no lease added one
        bulk_add(dataset, new_items, root, progress)
    if report.proxies:
        enable_proxies(dataset)
    report.added = len(new_items)
    _apply_changes(dataset, changed, force, report, progress)
    _fingerprint(dataset, root)
    _handle_missing(dataset, root, scan.items, scan.errors, prune, report)
    _used_classes(dataset, report)
    return report


def _used_classes(dataset: Any, report: ImportReport) -> None:
    """The dataset's classes that labels use (declared order first), and the declared ones no label uses."""
    used = set(dataset.distinct(f"{GT_FIELD}.detections.label")) if len(dataset) else set()
    declared = list(dataset.default_classes or [])
    report.classes = [name for name in declared if name in used] + sorted(used - set(declared))
    report.unused_classes = [name for name in declared if name not in used]


def _fingerprint(dataset: Any, root: Path) -> None:
    """Near-duplicate fingerprints of this folder's new images and of those whose file changed (store/fingerprints)."""
    from fabricdata.store.fingerprints import refresh_fingerprints

    refresh_fingerprints(dataset.match(fiftyone().ViewField(F_SOURCE_FOLDER) == str(root)))


def _complete(items: Sequence[FolderItem], errors: list[AnnotationError]) -> list[FolderItem]:
    """The items whose images are whole; a truncated or corrupt image is an error of its own (not imported)."""
    out = []
    for item in items:
        try:
            if item.image is not None:
                check_complete(item.image_path, item.image)
        except AnnotationError as exc:
            errors.append(exc)
            continue
        out.append(item)
    return out


def _with_proxies(items: Sequence[FolderItem], folder: Path, errors: list[AnnotationError]) -> list[FolderItem]:
    """Items whose images browsers cannot show get a PNG proxy in the dataset's managed folder; an image that
    cannot be decoded for it is an error of its own (and is not imported)."""
    out = []
    for item in items:
        if item.viewable:
            out.append(item)
            continue
        try:
            target = proxy_for(item.image_path, folder)
        except (OSError, ValueError) as exc:
            problem = f"cannot be decoded for the App's proxy ({exc.__class__.__name__}: {exc})"
            errors.append(InvalidValueError(item.image_path, "image", problem))
            continue
        out.append(replace(item, proxy=target))
    return out


def proxy_for(image: Path, folder: Path) -> Path:
    """The browser-viewable PNG copy of ``image`` in ``folder``, written when it is not there yet (its name: a
    hash of the image's path and the start of its stem). Raises OSError or ValueError for an undecodable image."""
    digest = hashlib.sha256(str(image).encode("utf-8")).hexdigest()[:16]
    target = folder / f"{digest}_{image.stem[:80]}.png"
    if not target.is_file():
        write_proxy(image, target)
    return target


def _class_order(root: Path, items: Sequence[FolderItem], given: Sequence[str] | None) -> list[str]:
    """The classes: as given, else the folder's classes.txt, else first appearance; then any others found."""
    order: list[str] = list(given or [])
    classes_file = root / CLASS_ORDER_FILE
    if not order and classes_file.is_file():
        from fabricdata.formats.yolo import read_classes

        order = list(read_classes(classes_file))
    for item in items:
        for obj in item.annotation.objects:
            if obj.label not in order:
                order.append(obj.label)
    return order


def _known_samples(dataset: Any) -> dict[str, tuple[str, str | None]]:
    if not len(dataset):
        return {}
    ids, paths, hashes = dataset.values(["id", "filepath", F_ANNOTATION_HASH])
    return {path: (sid, digest) for sid, path, digest in zip(ids, paths, hashes, strict=True)}


def _pending_edits(sample: Any) -> bool:
    """True when the sample's labels differ from what was imported and not written back yet."""
    return bool(sample_labels_hash(sample) != sample[F_LABELS_HASH])


def _apply_changes(
    dataset: Any,
    changed: list[tuple[str, FolderItem]],
    force: bool,
    report: ImportReport,
    progress: Callable[[int], None] | None,
) -> None:
    if not changed:
        return
    by_id = dict(changed)
    for sample in dataset.select(list(by_id)).iter_samples(autosave=True):
        item = by_id[sample.id]
        if _pending_edits(sample) and not force:
            report.errors.append(
                InvalidValueError(
                    item.annotation_path,
                    "labels",
                    "file changed on disk while the sample has App edits that were not written back; "
                    "run 'fabricdata writeback' (or re-import with --force to discard the App edits)",
                )
            )
        else:
            for name, value in label_fields(item).items():
                sample[name] = value
            if TAG_PRELABELED in sample.tags:  # a draft someone labelled in LabelImg: the file's labels now
                sample.tags.remove(TAG_PRELABELED)
            report.updated += 1
        if progress:
            progress(1)


def _handle_missing(
    dataset: Any,
    root: Path,
    items: Sequence[FolderItem],
    errors: Sequence[AnnotationError],
    prune: bool,
    report: ImportReport,
) -> None:
    fo = fiftyone()
    from_folder = dataset.match(fo.ViewField(F_SOURCE_FOLDER) == str(root))
    present = {str(item.image_path) for item in items}
    failed = {Path(e.path).stem for e in errors}
    ids, paths = from_folder.values(["id", "filepath"])
    gone = [(sid, path) for sid, path in zip(ids, paths, strict=True) if path not in present]
    gone = [(sid, path) for sid, path in gone if Path(path).stem not in failed]
    report.missing = [path for _, path in gone]
    if prune and gone:
        dataset.delete_samples([sid for sid, _ in gone])
        report.removed = report.missing
        report.missing = []


# --- folders written by `export labelimg` ----------------------------------------------------------------


def _read_sidecar(root: Path, dataset_name: str, errors: list[AnnotationError]) -> dict[str, Any] | None:
    """The export sidecar of ``root``; None when there is none, or when it is malformed (then one error)."""
    path = root / SIDECAR
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
        problem = _sidecar_problem(data)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        problem = f"{exc.__class__.__name__}: {exc}"
    if problem is not None:
        errors.append(
            InvalidValueError(path, "document", f"malformed export sidecar ({problem}); imported as an ordinary folder")
        )
        return None
    if data.get("dataset") != dataset_name:
        raise DatasetError(
            f"{path}: folder was exported from dataset {data.get('dataset')!r}, not {dataset_name!r}; "
            f"use --dataset {data.get('dataset')}"
        )
    return dict(data)


def _sidecar_problem(data: Any) -> str | None:
    """What makes a parsed sidecar unusable (None: it is what ``export labelimg`` writes)."""
    if not isinstance(data, dict) or not isinstance(data.get("dataset"), str):
        return "expected an object with the dataset's name"
    samples = data.get("samples", {})
    if not isinstance(samples, dict):
        return "'samples' is not an object"
    for name, entry in samples.items():
        if not isinstance(entry, dict) or not all(isinstance(entry.get(key), str) for key in ("id", "labels_hash")):
            return f"entry {name!r} lacks 'id' or 'labels_hash'"
        if not _OBJECT_ID.fullmatch(entry["id"]):
            return f"entry {name!r}: 'id' is not a sample id"
    return None


def _update_from_export(
    dataset: Any,
    items: Sequence[FolderItem],
    sidecar: dict[str, Any],
    force: bool,
    report: ImportReport,
    progress: Callable[[int], None] | None,
) -> None:
    """Labels fixed in an exported LabelImg folder update the samples they were exported from."""
    entries: dict[str, dict[str, str]] = sidecar.get("samples", {})
    by_id: dict[str, FolderItem] = {}
    for item in items:
        entry = entries.get(item.image_path.name)
        if entry is None:
            report.errors.append(
                InvalidValueError(item.annotation_path, "filename", "not part of the export", item.image_path.name)
            )
        else:
            by_id[entry["id"]] = item
    seen: set[str] = set()
    for sample in dataset.select(list(by_id)).iter_samples(autosave=True):
        seen.add(sample.id)
        item = by_id[sample.id]
        exported = entries[item.image_path.name]["labels_hash"]
        fixed = labels_digest(item.annotation.objects)
        if fixed == exported:
            report.unchanged += 1
        elif labels_digest(sample_objects(sample)) != exported and not force:
            report.errors.append(
                InvalidValueError(
                    item.annotation_path,
                    "labels",
                    "the sample was also edited in the dataset since the export",
                )
            )
        else:
            sample[GT_FIELD] = objects_to_detections(item.annotation.objects, item.annotation.size)
            sample[F_VERIFIED] = item.annotation.verified or bool(sample[F_VERIFIED])
            report.updated += 1
        if progress:
            progress(1)
    report.missing = sorted(by_id[sid].image_path.name for sid in set(by_id) - seen)


__all__ = ["SIDECAR", "ImportReport", "import_folder"]
