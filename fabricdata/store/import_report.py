"""What an import did: counts, what was found beside the annotations, and one summary line."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fabricdata.core.errors import AnnotationError
from fabricdata.core.wording import plural
from fabricdata.formats import FolderScan
from fabricdata.store.dataset import SPLITS


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
            f"{plural(self.warning_count, 'warning')}; {plural(len(self.errors), 'error')}"
        )

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
        splits = Counter(item.placement.split for item in scan.items if item.placement.split)
        report.splits = {name: splits[name] for name in SPLITS if splits[name]}
        sources = Counter(item.placement.source for item in scan.items if item.placement.source)
        report.split_sources = {source: sources[source] for source in sorted(sources)}
        return report
