"""Annotation formats LabelImg writes, and reading a whole LabelImg folder.

One module per format, each a reader/writer pair: :mod:`.voc` (Pascal VOC XML), :mod:`.yolo` (YOLO txt +
``classes.txt``) and :mod:`.createml` (CreateML JSON). :func:`read_folder` detects the format, reads every
annotation, checks it against the real image size, and collects per-file errors instead of stopping.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from fabricdata.annotation import ImageAnnotation
from fabricdata.errors import AnnotationError, FormatDetectionError, InvalidValueError
from fabricdata.fileio import sha256_bytes, sha256_file
from fabricdata.images import find_image, image_size, is_image

FormatName = Literal["voc", "yolo", "createml"]
FORMATS: tuple[FormatName, ...] = ("voc", "yolo", "createml")


@dataclass(frozen=True, slots=True)
class FolderItem:
    """One image of a folder with its annotation and where the annotation lives."""

    image_path: Path
    annotation_path: Path
    annotation: ImageAnnotation
    format: FormatName
    #: sha256 of the bytes this item was read from (the file; for CreateML the entry), for safe write-back.
    content_hash: str = ""


@dataclass(slots=True)
class FolderScan:
    """Everything read from a folder: good items and one error per bad file."""

    format: FormatName
    items: list[FolderItem] = field(default_factory=list)
    errors: list[AnnotationError] = field(default_factory=list)
    classes: tuple[str, ...] | None = None


def detect_format(folder: str | Path) -> FormatName:
    """Guess the annotation format of a LabelImg folder."""
    root = Path(folder)
    if not root.is_dir():
        raise FormatDetectionError(f"{root}: not a folder")
    if any(root.glob("*.xml")):
        return "voc"
    if (root / "classes.txt").is_file() and any(p.name != "classes.txt" for p in root.glob("*.txt")):
        return "yolo"
    if any(root.glob("*.json")):
        return "createml"
    raise FormatDetectionError(f"{root}: no VOC .xml, YOLO .txt + classes.txt or CreateML .json annotations found")


def read_folder(
    folder: str | Path,
    fmt: FormatName | Literal["auto"] = "auto",
    classes: Sequence[str] | None = None,
    check_sizes: bool = True,
) -> FolderScan:
    """Read every annotation of ``folder``; bad files become errors while the good ones are still returned."""
    root = Path(folder)
    chosen: FormatName = detect_format(root) if fmt == "auto" else fmt
    scan = FolderScan(format=chosen)
    readers = {"voc": _scan_voc, "yolo": _scan_yolo, "createml": _scan_createml}
    for result in readers[chosen](root, classes, check_sizes, scan):
        if isinstance(result, AnnotationError):
            scan.errors.append(result)
        else:
            scan.items.append(result)
    return scan


def _scan_voc(
    root: Path, classes: Sequence[str] | None, check_sizes: bool, scan: FolderScan
) -> Iterator[FolderItem | AnnotationError]:
    from fabricdata.formats.voc import read_voc_bytes

    for xml in sorted(root.glob("*.xml")):
        try:
            data, annotation = read_voc_bytes(xml, classes)
            image = _image_for(xml, annotation.filename)
            if check_sizes:
                _check_size(xml, image, annotation)
            yield FolderItem(image, xml, annotation, "voc", sha256_bytes(data))
        except AnnotationError as exc:
            yield exc


def _image_for(annotation_path: Path, filename: str) -> Path:
    """The image an annotation names (by ``<filename>``, else by the annotation's own stem)."""
    folder = annotation_path.parent
    named = folder / Path(filename.replace("\\", "/")).name if filename else None
    if named is not None and named.is_file():
        return named
    found = find_image(folder, annotation_path.stem)
    if found is None:
        raise InvalidValueError(annotation_path, "filename", "image not found beside the annotation", filename)
    return found


def _check_size(annotation_path: Path, image: Path, annotation: ImageAnnotation) -> None:
    real = image_size(image)
    if real != annotation.size:
        raise InvalidValueError(
            annotation_path,
            "size",
            f"annotation says {annotation.size.width}x{annotation.size.height} "
            f"but {image.name} is {real.width}x{real.height}",
            f"{annotation.size.width}x{annotation.size.height}",
        )


def _scan_yolo(
    root: Path, classes: Sequence[str] | None, check_sizes: bool, scan: FolderScan
) -> Iterator[FolderItem | AnnotationError]:
    from fabricdata.formats.yolo import CLASSES_FILE, read_classes, read_yolo

    file_classes = read_classes(root / CLASSES_FILE)
    scan.classes = file_classes
    for txt in sorted(root.glob("*.txt")):
        if txt.name == CLASSES_FILE:
            continue
        try:
            image = find_image(root, txt.stem)
            if image is None:
                raise InvalidValueError(txt, "file", "no image with the same name beside it", txt.stem)
            annotation = read_yolo(txt, image.name, image_size(image), file_classes, classes)
            yield FolderItem(image, txt, annotation, "yolo", sha256_file(txt))
        except AnnotationError as exc:
            yield exc


def _scan_createml(
    root: Path, classes: Sequence[str] | None, check_sizes: bool, scan: FolderScan
) -> Iterator[FolderItem | AnnotationError]:
    from fabricdata.formats.createml import createml_entry_hash, load_createml, read_createml_entry

    for path in sorted(root.glob("*.json")):
        try:
            entries = load_createml(path)
        except AnnotationError as exc:
            yield exc
            continue
        for index, entry in enumerate(entries):
            try:
                image = _image_for(path, entry["image"])
                annotation = read_createml_entry(path, index, entry, image_size(image), classes)
                item_hash = createml_entry_hash(entry)
                yield FolderItem(image, path, replace(annotation, filename=image.name), "createml", item_hash)
            except AnnotationError as exc:
                yield exc


def images_without_annotation(folder: str | Path, scan: FolderScan) -> list[Path]:
    """Images of ``folder`` that no annotation of ``scan`` (good or bad) refers to."""
    seen = {item.image_path.name for item in scan.items}
    seen |= {Path(err.path).stem for err in scan.errors}
    return [p for p in sorted(Path(folder).iterdir()) if is_image(p) and p.name not in seen and p.stem not in seen]
