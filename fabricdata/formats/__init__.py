"""Label formats, and reading a whole annotation tree.

One module per format, each registered in :mod:`fabricdata.formats.registry` (:mod:`.voc` Pascal VOC XML,
:mod:`.yolo` YOLO txt + class names, :mod:`.createml` CreateML JSON, ...): reader, writer and in-place write-back.
:mod:`fabricdata.formats.layouts` reads the files that describe published layouts (``data.yaml``, ``obj.data``,
list files). :func:`read_folder` finds every annotation at any depth (:mod:`fabricdata.formats.discover`), reads
it through its format, checks it against the real image size, and collects per-file errors instead of stopping.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from fabricdata.core.annotation import ImageAnnotation
from fabricdata.core.errors import AnnotationError, FormatDetectionError, InvalidValueError
from fabricdata.core.images import ImageInfo
from fabricdata.formats import registry
from fabricdata.formats.discover import Discovery, Placement, discover
from fabricdata.formats.discover import FormatName as FormatName
from fabricdata.formats.pairing import STRENGTH
from fabricdata.formats.registry import Refused, Unpaired

if TYPE_CHECKING:
    from fabricdata.formats.registry import ReadResult

#: the registered label formats' names (``--format``)
FORMATS: tuple[str, ...] = registry.names()
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
    #: how the image was paired (``stem``, ``filename``, ``case``: :mod:`fabricdata.formats.pairing`)
    how: str = "stem"
    #: YOLO segmentation lines read as their bounding boxes
    polygons: int = 0
    #: YOLO read with ``--classes`` (no names file): the names by index, for write-back's ``classes.txt``
    class_names: tuple[str, ...] | None = None

    @property
    def viewable(self) -> bool:
        """False when browsers cannot show the image (TIFF, 16-bit, CMYK, huge): the App gets a proxy."""
        return self.image is None or self.image.browser_viewable

    @property
    def channels(self) -> int:
        """Channels of the image itself (its header), never what the annotation says (VOC ``<depth>``)."""
        return self.image.channels if self.image is not None else self.annotation.depth


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
    #: every regular file of the tree, and the images among them (for the import's ledger)
    files: list[Path] = field(default_factory=list)
    images: list[Path] = field(default_factory=list)
    #: annotation file -> the image it was paired with (also when the pair was then refused)
    partner: dict[Path, Path] = field(default_factory=dict)
    #: annotation-like files not imported: path -> (ledger status, reason)
    unread: dict[Path, tuple[str, str]] = field(default_factory=dict)
    #: annotation-like files paired with no image (labels without images, COCO JSON), and how many there are
    unpaired: list[Path] = field(default_factory=list)
    annotation_files: int = 0
    #: where the unpaired files' images probably are, in one sentence ("" when every file paired)
    guess: str = ""
    #: YOLO segmentation lines read as their bounding boxes
    polygons: int = 0
    #: why an ignored file was ignored, where there is more to say than "not an image or annotation"
    notes: dict[Path, str] = field(default_factory=dict)


def detect_format(folder: str | Path) -> FormatName:
    """The annotation format found in ``folder`` (the first one, where a tree mixes several)."""
    found = discover(folder)
    if not found.labels:
        raise FormatDetectionError(f"{folder}: no annotations found ({found.errors[0]})")
    return found.labels[0].format


def read_folder(
    folder: str | Path,
    fmt: FormatName = "auto",
    classes: Sequence[str] | None = None,
    check_sizes: bool = True,
    follow_links: bool = False,
    names: tuple[tuple[str, ...], Path] | None = None,
) -> FolderScan:
    """Read every annotation found in the tree ``folder``; bad files become errors, the good ones are returned.

    An image may hold at most ``MAX_OBJECTS`` boxes (a sample is one MongoDB document, limited to 16 MB).
    ``names``: class names (and their file) for every YOLO label (``--names``). When fewer than half of the
    annotation files pair with an image, one more error (on the folder) says where their images probably are.

    Raises:
        FormatDetectionError: no annotation at all in the tree (see :func:`discover`).
    """
    found = discover(folder, fmt, classes, follow_links, names)
    scan = FolderScan(
        format="+".join(found.formats) or (fmt if fmt != "auto" else "none"),
        errors=list(found.errors),
        warnings=list(found.warnings),
        ignored=list(found.ignored),
        layout_files=list(found.layout_files),
        files=found.files,
        images=found.images,
        unread=dict(found.unread),
        notes=found.notes,
    )
    claims: dict[Path, FolderItem] = {}
    for label in found.labels:
        results = registry.get(label.format).read(label, found, scan, classes, check_sizes)
        read = [_take(scan, claims, result) for result in results]
        if not any(read) and label.path not in scan.unread:
            _unpaired(scan, label.path, "names no image that is in the folder")  # no entry's image is here
        if scan.classes is None and label.names is not None:
            scan.classes = label.names
    scan.items = list(claims.values())
    scan.polygons = sum(item.polygons for item in scan.items)
    _judge_pairing(scan, found)
    failed = {scan.partner.get(Path(err.path)) or found.image_for(Path(err.path)) for err in scan.errors}
    spoken_for = failed | set(scan.partner.values()) | set(claims)
    scan.unlabeled = [image for image in found.images if image not in spoken_for]
    return scan


def _take(scan: FolderScan, claims: dict[Path, FolderItem], result: ReadResult) -> bool:
    """File one reader result into the scan; True for an item, an error or a refusal (the file was paired)."""
    if isinstance(result, str):
        scan.warnings.append(result)
    elif isinstance(result, Unpaired):
        _unpaired(scan, result.path, result.reason)
    elif isinstance(result, Refused):
        scan.partner[result.path] = result.image
        scan.unread[result.path] = ("refused", result.reason)
        return True
    elif isinstance(result, AnnotationError):
        scan.errors.append(result)
        return True
    elif len(result.annotation.objects) > MAX_OBJECTS:
        count = len(result.annotation.objects)
        problem = f"more than {MAX_OBJECTS} boxes for one image ({result.image_path.name})"
        scan.errors.append(InvalidValueError(result.annotation_path, "objects", problem, count))
        return True
    else:
        _claim(scan, claims, result)
        return True
    return False


def _unpaired(scan: FolderScan, path: Path, reason: str) -> None:
    scan.warnings.append(f"{path}: {reason}")
    scan.unread[path] = ("ignored", reason)
    scan.unpaired.append(path)


def _claim(scan: FolderScan, claims: dict[Path, FolderItem], item: FolderItem) -> None:
    """One image, one annotation: of two claims the stronger pairing wins (exact stem over ``<filename>`` over
    case-insensitive stem), the first of equals; the other is an error naming both files."""
    image = item.image_path
    held = claims.get(image)
    if held is None:
        claims[image] = item
        return
    weaker, stronger = (held, item) if STRENGTH[item.how] > STRENGTH[held.how] else (item, held)
    claims[image] = stronger
    scan.errors.append(
        InvalidValueError(weaker.annotation_path, "image", f"also annotated by {stronger.annotation_path}", image.name)
    )


def _judge_pairing(scan: FolderScan, found: Discovery) -> None:
    """Count the annotation files; when fewer than half pair with an image, one error on the folder says where
    their images probably are."""
    scan.unpaired = list(found.unread) + scan.unpaired  # discovery's: YOLO labels without images, COCO JSON
    scan.annotation_files = len({label.path for label in found.labels} | set(scan.unread))
    if not scan.unpaired:
        return
    scan.guess = found.guess(scan.unpaired, scan.annotation_files)
    if 2 * (scan.annotation_files - len(scan.unpaired)) < scan.annotation_files:
        scan.errors.append(InvalidValueError(found.root, "pairing", scan.guess))
