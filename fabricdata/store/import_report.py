"""What an import did: counts, what was found beside the annotations, one summary line, and the ledger.

The ledger accounts for every file of the tree: each image and annotation file is ``imported``, ``refused``
(with the reason: the error, or the refusal of its partner) or ``ignored`` (with the reason: an image without
labels, a label without an image, not an image or annotation); files that describe the layout are ``layout``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fabricdata.core.errors import AnnotationError
from fabricdata.core.fileio import atomic_write_text
from fabricdata.core.wording import plural
from fabricdata.formats import FolderItem, FolderScan, registry
from fabricdata.store.dataset import SPLITS

#: ledger statuses, in the order the summary counts them
STATUSES = ("imported", "layout", "refused", "ignored")


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """What became of one file (or folder) of the import: kind, status, reason, and the file it was paired with."""

    path: str
    kind: str  # image | annotation | layout | other | folder
    status: str  # one of STATUSES
    reason: str = ""
    pair: str = ""


@dataclass(slots=True)
class ImportReport:
    """What an import did; ``errors`` holds one typed error per bad file (all good files were imported)."""

    folder: str
    format: str
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unlabeled: list[str] = field(default_factory=list)
    #: images whose EXIF orientation tag rotates them in browsers (boxes stay in stored-pixel coordinates)
    exif_rotated: list[str] = field(default_factory=list)
    errors: list[AnnotationError] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    #: non-fatal findings, one line each (labels without images, list entries not found, ...)
    warnings: list[str] = field(default_factory=list)
    #: files that are neither images nor annotations (README, licences, notes)
    ignored: list[str] = field(default_factory=list)
    #: layout files used (data.yaml, obj.data, class names, list files)
    layout_files: list[str] = field(default_factory=list)
    #: boxes read from the annotations found
    boxes: int = 0
    #: images per split as the authors assigned them, and what said so
    splits: dict[str, int] = field(default_factory=dict)
    split_sources: dict[str, int] = field(default_factory=dict)
    #: browser-viewable proxies made for images the App could not show
    proxies: int = 0
    #: declared classes (class-name file, --classes) that no label of the dataset uses
    unused_classes: list[str] = field(default_factory=list)
    #: YOLO segmentation lines read as their bounding boxes
    polygons: int = 0
    #: every file of the tree and what became of it (see the module docstring)
    ledger: list[LedgerEntry] = field(default_factory=list)

    def write_ledger(self, path: str | Path) -> None:
        """The ledger as JSON Lines (one file a line: path, kind, status, reason, pair), written atomically."""
        lines = (json.dumps(asdict(entry), ensure_ascii=False) + "\n" for entry in self.ledger)
        atomic_write_text(path, "".join(lines))

    def ledger_counts(self) -> dict[str, int]:
        counts = Counter(entry.status for entry in self.ledger)
        return {status: counts[status] for status in STATUSES}

    @property
    def warning_count(self) -> int:
        return len(self.warnings) + len(self.unlabeled) + len(self.missing)

    def summary(self) -> str:
        """One line: what was imported, from where, and what needs a look."""
        images = f"{self.added} added, {self.updated} updated, {self.unchanged} unchanged"
        splits = ", ".join(f"{name} {count}" for name, count in self.splits.items()) or "none"
        sources = ", ".join(self.split_sources) or "none"
        return (
            f"{plural(self.added + self.updated + self.unchanged, 'image')} ({images}); "
            f"{plural(self.boxes, 'box', 'boxes')}; {plural(len(self.classes), 'class', 'classes')}; "
            f"splits: {splits} (from {sources}); {len(self.ignored)} ignored; "
            f"{plural(self.warning_count, 'warning')}; {plural(len(self.errors), 'error')}; "
            f"ledger: {plural(len(self.ledger), 'file')} ({self._ledger_text()})"
        )

    def _ledger_text(self) -> str:
        return ", ".join(f"{count} {status}" for status, count in self.ledger_counts().items())

    def as_dict(self) -> dict[str, Any]:
        return {
            "summary": self.summary(),
            "folder": self.folder,
            "format": self.format,
            "boxes": self.boxes,
            "splits": self.splits,
            "split_sources": self.split_sources,
            "warnings": self.warnings,
            "ignored": self.ignored,
            "layout_files": self.layout_files,
            "proxies": self.proxies,
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "removed": self.removed,
            "missing": self.missing,
            "unlabeled": self.unlabeled,
            "exif_rotated": self.exif_rotated,
            "classes": self.classes,
            "unused_classes": self.unused_classes,
            "polygons_as_boxes": self.polygons,
            "files": self.ledger_counts(),
            "ledger": [asdict(entry) for entry in self.ledger],
            "errors": [{"file": e.path, "element": e.element, "problem": e.problem} for e in self.errors],
        }

    @classmethod
    def from_scan(cls, root: Path, scan: FolderScan) -> ImportReport:
        """What reading the tree found, before anything is imported."""
        report = cls(folder=str(root), format=scan.format, errors=list(scan.errors))
        report.unlabeled = [str(p) for p in scan.unlabeled]
        report.warnings = list(scan.warnings)
        report.ignored = [str(p) for p in scan.ignored]
        report.layout_files = [str(p) for p in dict.fromkeys(scan.layout_files)]
        report.boxes = sum(len(item.annotation.objects) for item in scan.items)
        report.polygons = scan.polygons
        splits = Counter(item.placement.split for item in scan.items if item.placement.split)
        report.splits = {name: splits[name] for name in SPLITS if splits[name]}
        sources = Counter(item.placement.source for item in scan.items if item.placement.source)
        report.split_sources = {source: sources[source] for source in sorted(sources)}
        return report


def build_ledger(scan: FolderScan, errors: Sequence[AnnotationError]) -> list[LedgerEntry]:
    """What became of every file of ``scan`` once the import refused ``errors`` (sorted by path)."""
    refused: dict[Path, str] = {}
    for error in errors:
        refused.setdefault(Path(error.path), f"{error.element}: {error.problem}")
    entries: dict[Path, LedgerEntry] = {}
    _items(scan.items, refused, entries)
    for path, problem in refused.items():
        _refused(path, problem, scan, entries)
    for path, (status, reason) in scan.unread.items():
        if status == "refused":
            _refused(path, reason, scan, entries)
        else:
            _put(entries, path, "annotation", status, reason)
    for image in scan.unlabeled:
        _put(entries, image, "image", "ignored", "image without labels")
    for path in scan.layout_files:
        _put(entries, path, "layout", "layout", "describes the layout (class names, splits, list of images)")
    images = set(scan.images)
    for path in scan.files:
        if path in images:
            _put(entries, path, "image", "ignored", "image without labels")
        else:
            _put(entries, path, "other", "ignored", scan.notes.get(path, "not an image or annotation"))
    return [entries[path] for path in sorted(entries)]


def _put(entries: dict[Path, LedgerEntry], path: Path, kind: str, status: str, reason: str, pair: str = "") -> None:
    if path not in entries:
        entries[path] = LedgerEntry(str(path), kind, status, reason, pair)


def _items(items: Sequence[FolderItem], refused: dict[Path, str], entries: dict[Path, LedgerEntry]) -> None:
    """Images read with their annotation: imported unless the import refused the image or the annotation."""
    kept: dict[Path, list[str]] = {}
    for item in items:
        image, annotation = item.image_path, item.annotation_path
        whole_file = registry.get(item.format).hash_unit == "file"  # an error in a file of many may be one entry's
        problem = refused.get(image) or (refused.get(annotation) if whole_file else None)
        if problem is None:
            _put(entries, image, "image", "imported", "", str(annotation))
            kept.setdefault(annotation, []).append(str(image))
        else:
            reason = problem if image in refused else f"its annotation {annotation.name} was refused ({problem})"
            _put(entries, image, "image", "refused", reason, str(annotation))
            kept.setdefault(annotation, [])
    for annotation, images in kept.items():
        if images:
            _put(entries, annotation, "annotation", "imported", "", images[0] if len(images) == 1 else "")
        elif annotation not in refused:
            _put(entries, annotation, "annotation", "refused", "its image was refused")


def _refused(path: Path, problem: str, scan: FolderScan, entries: dict[Path, LedgerEntry]) -> None:
    """A refused file (or folder), and the image it was paired with."""
    image = scan.partner.get(path)
    kind = "image" if path in scan.images else "annotation" if path in scan.partner or path in scan.unread else ""
    _put(entries, path, kind or ("folder" if path.is_dir() else "other"), "refused", problem, str(image or ""))
    if image is not None:
        _put(entries, image, "image", "refused", f"its annotation {path.name} was refused ({problem})", str(path))
