"""Annotation formats LabelImg writes, and reading a whole annotation tree.

One module per format, each a reader/writer pair: :mod:`.voc` (Pascal VOC XML), :mod:`.yolo` (YOLO txt +
``classes.txt``) and :mod:`.createml` (CreateML JSON); :mod:`fabricdata.formats.layouts` reads the files that describe
published layouts (``data.yaml``, ``obj.data``, list files). :func:`read_folder` finds every annotation at any depth
(:mod:`fabricdata.formats.discover`), reads it, checks it against the real image size, and collects per-file errors
instead of stopping.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from fabricdata.core.annotation import ImageAnnotation
from fabricdata.core.boxes import ImageSize
from fabricdata.core.errors import AnnotationError, FormatDetectionError, InvalidValueError
from fabricdata.core.fileio import sha256_bytes
from fabricdata.core.images import ImageInfo, image_info
from fabricdata.formats.discover import Discovery, LabelFile, Placement, discover
from fabricdata.formats.discover import FormatName as FormatName

FORMATS: tuple[FormatName, ...] = ("voc", "yolo", "createml")
#: boxes one image may hold: a sample is one MongoDB document (16 MB at most); 10 000 boxes take about 3 MB
MAX_OBJECTS = 10_000


@dataclass(frozen=True, slots=True)
class FolderItem:
    """One image of a folder with its annotation, where the annotation lives and where the authors put it."""

    image_path: Path
    annotation_path: Path
    annotation: ImageAnnotation
    format: FormatName
    #: sha256 of the bytes this item was read from (the file; for CreateML the entry), for safe write-back.
    content_hash: str = ""
    placement: Placement = field(default_factory=Placement)
    #: what the image's header says (format, mode, EXIF orientation); None for items made in memory
    image: ImageInfo | None = None
    #: the browser-viewable copy made for the App (set by import where ``viewable`` is False)
    proxy: Path | None = None
    #: YOLO: the file its class names came from (None: from --classes)
    class_file: Path | None = None

    @property
    def viewable(self) -> bool:
        """False when browsers cannot show the image (TIFF, 16-bit, CMYK, huge): the App gets a proxy."""
        return self.image is None or self.image.browser_viewable


@dataclass(slots=True)
class FolderScan:
    """Everything read from a folder tree: good items, one error per bad file, and what was not imported."""

    format: str
    items: list[FolderItem] = field(default_factory=list)
    errors: list[AnnotationError] = field(default_factory=list)
    classes: tuple[str, ...] | None = None
    #: images no annotation refers to
    unlabeled: list[Path] = field(default_factory=list)
    #: non-fatal findings, one line each (labels without images, list entries not found, ...)
    warnings: list[str] = field(default_factory=list)
    #: files that are neither images nor annotations (README, licences, notes)
    ignored: list[Path] = field(default_factory=list)
    #: layout files used (data.yaml, obj.data, class names, list files)
    layout_files: list[Path] = field(default_factory=list)


def detect_format(folder: str | Path) -> FormatName:
    """The annotation format found in ``folder`` (the first one, where a tree mixes several)."""
    found = discover(folder)
    if not found.labels:
        raise FormatDetectionError(f"{folder}: no annotations found ({found.errors[0]})")
    return found.labels[0].format


def read_folder(
    folder: str | Path,
    fmt: FormatName | Literal["auto"] = "auto",
    classes: Sequence[str] | None = None,
    check_sizes: bool = True,
    follow_links: bool = False,
) -> FolderScan:
    """Read every annotation found in the tree ``folder``; bad files become errors, the good ones are returned.

    An image may hold at most ``MAX_OBJECTS`` boxes (a sample is one MongoDB document, limited to 16 MB)."""
    found = discover(folder, fmt, classes, follow_links)
    scan = FolderScan(
        format="+".join(found.formats) or (fmt if fmt != "auto" else "none"),
        errors=list(found.errors),
        warnings=list(found.warnings),
        ignored=list(found.ignored),
        layout_files=list(found.layout_files),
    )
    claimed: dict[Path, Path] = {}
    for label in found.labels:
        for result in _READERS[label.format](label, found, classes, check_sizes):
            if isinstance(result, str):
                scan.warnings.append(result)
            elif isinstance(result, AnnotationError):
                scan.errors.append(result)
            elif len(result.annotation.objects) > MAX_OBJECTS:
                count = len(result.annotation.objects)
                problem = f"more than {MAX_OBJECTS} boxes for one image ({result.image_path.name})"
                scan.errors.append(InvalidValueError(result.annotation_path, "objects", problem, count))
            elif result.image_path in claimed:
                first = claimed[result.image_path]
                scan.errors.append(
                    InvalidValueError(
                        result.annotation_path, "image", f"also annotated by {first}", result.image_path.name
                    )
                )
            else:
                claimed[result.image_path] = result.annotation_path
                scan.items.append(result)
            if scan.classes is None and label.names is not None:
                scan.classes = label.names
    failed = {found.image_for(Path(err.path)) for err in scan.errors}
    scan.unlabeled = [image for image in found.images if image not in claimed and image not in failed]
    return scan


_Result = FolderItem | AnnotationError | str


def _scan_voc(
    label: LabelFile, found: Discovery, classes: Sequence[str] | None, check_sizes: bool
) -> Iterator[_Result]:
    from fabricdata.formats.voc import read_voc_bytes

    xml = label.path
    try:
        data, annotation = read_voc_bytes(xml, classes)
        image = found.image_for(xml, annotation.filename)
        if image is None:
            yield f"{xml}: label without an image (<filename> {annotation.filename!r} not found beside it)"
            return
        info = image_info(image)
        if check_sizes:
            _check_size(xml, image, annotation, info.size)
        placement = found.placement(image)
        yield FolderItem(image, xml, annotation, "voc", sha256_bytes(data), placement, info)
    except AnnotationError as exc:
        yield exc


def _check_size(annotation_path: Path, image: Path, annotation: ImageAnnotation, real: ImageSize) -> None:
    if real != annotation.size:
        raise InvalidValueError(
            annotation_path,
            "size",
            f"annotation says {annotation.size.width}x{annotation.size.height} "
            f"but {image.name} is {real.width}x{real.height}",
            f"{annotation.size.width}x{annotation.size.height}",
        )


def _scan_yolo(
    label: LabelFile, found: Discovery, classes: Sequence[str] | None, check_sizes: bool
) -> Iterator[_Result]:
    from fabricdata.formats.yolo import read_yolo_bytes

    if label.image is None or label.names is None:
        return  # discovery reported it (label without image / without class names)
    try:
        info = image_info(label.image)
        data, annotation = read_yolo_bytes(label.path, label.image.name, info.size, label.names, classes)
        annotation = replace(annotation, depth=info.channels)
        placement = found.placement(label.image)
        digest = sha256_bytes(data)
        yield FolderItem(
            label.image, label.path, annotation, "yolo", digest, placement, info, class_file=label.names_from
        )
    except AnnotationError as exc:
        yield exc


def _scan_createml(
    label: LabelFile, found: Discovery, classes: Sequence[str] | None, check_sizes: bool
) -> Iterator[_Result]:
    from fabricdata.formats.createml import createml_entries, createml_entry_hash

    path = label.path
    images: dict[str, tuple[Path, ImageInfo]] = {}

    def size_of(name: str) -> ImageSize | None:
        image = found.image_named(path.parent, name)
        if image is None:
            return None
        images[name] = (image, image_info(image))
        return images[name][1].size

    try:
        entries = list(createml_entries(path, size_of, classes))
    except AnnotationError as exc:
        yield exc
        return
    for index, entry, result in entries:
        if result is None:
            yield f"{path}: [{index}].image {entry['image']!r}: label without an image"
        elif isinstance(result, AnnotationError):
            yield result
        else:
            image, info = images[entry["image"]]
            annotation = replace(result, filename=image.name, depth=info.channels)
            placement = found.placement(image)
            yield FolderItem(image, path, annotation, "createml", createml_entry_hash(entry), placement, info)


_READERS = {"voc": _scan_voc, "yolo": _scan_yolo, "createml": _scan_createml}
