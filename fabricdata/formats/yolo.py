"""YOLO txt + ``classes.txt`` as LabelImg's YOLO mode writes them.

One ``<image stem>.txt`` per image with ``class cx cy w h`` lines (normalised, six decimals), and one
``classes.txt`` per folder. YOLO files carry no image size: the caller passes the real one from the image.
Ultralytics segmentation lines (``class x1 y1 x2 y2 x3 y3 ...``, normalised polygon points) are read as their
bounding box, as Ultralytics does for detection; the reader counts them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from fabricdata.core.annotation import ImageAnnotation, LabeledBox, check_box, check_label
from fabricdata.core.boxes import ImageSize, box_to_yolo, clip_box, yolo_polygon_to_box, yolo_to_box
from fabricdata.core.errors import InvalidValueError, MissingFieldError, UnknownClassError
from fabricdata.core.fileio import atomic_write_text, read_limited

CLASSES_FILE = "classes.txt"


def read_classes(path: str | Path) -> tuple[str, ...]:
    """The class names of a YOLO label folder: ``classes.txt`` / ``*.names`` (one a line, order kept) or the
    ``names`` of a ``data.yaml``."""
    from fabricdata.formats.layouts import read_data_yaml, read_names

    source = Path(path)
    if not source.is_file():
        raise MissingFieldError(source, "file")
    if source.suffix.lower() in (".yaml", ".yml"):
        config = read_data_yaml(source)
        if config is None or config.names is None:
            raise MissingFieldError(source, "names")
        return config.names
    return read_names(source)


def write_classes(path: str | Path, classes: Sequence[str]) -> None:
    atomic_write_text(path, "".join(f"{name}\n" for name in classes))


def read_yolo(
    path: str | Path,
    image_name: str,
    size: ImageSize,
    file_classes: Sequence[str],
    classes: Sequence[str] | None = None,
) -> ImageAnnotation:
    """Read one YOLO label file for the image ``image_name`` of ``size``."""
    return read_yolo_bytes(path, image_name, size, file_classes, classes)[1]


def read_yolo_bytes(
    path: str | Path,
    image_name: str,
    size: ImageSize,
    file_classes: Sequence[str],
    classes: Sequence[str] | None = None,
) -> tuple[bytes, ImageAnnotation]:
    """Like :func:`read_yolo`, also returning the bytes that were parsed (for content hashes)."""
    data, annotation, _ = read_yolo_counted(path, image_name, size, file_classes, classes)
    return data, annotation


def read_yolo_counted(
    path: str | Path,
    image_name: str,
    size: ImageSize,
    file_classes: Sequence[str],
    classes: Sequence[str] | None = None,
) -> tuple[bytes, ImageAnnotation, int]:
    """Like :func:`read_yolo_bytes`, also counting the segmentation lines read as their bounding boxes.

    Raises:
        InvalidValueError: a line is neither ``class cx cy w h`` nor a polygon of three points or more, or a
            value is not a finite number; UnknownClassError: a class index outside ``file_classes``;
            InvalidBoxError: a box outside the image or of zero size.
    """
    source = Path(path)
    data = read_limited(source)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidValueError(source, "document", f"invalid UTF-8 at byte {exc.start}") from None
    objects = [
        _read_line(source, number, line, size, file_classes, classes)
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip()
    ]
    polygons = sum(1 for _, polygon in objects if polygon)
    annotation = ImageAnnotation(
        filename=image_name, size=size, objects=tuple(box for box, _ in objects), folder=source.parent.name
    )
    return data, annotation, polygons


def _read_line(
    source: Path,
    number: int,
    line: str,
    size: ImageSize,
    file_classes: Sequence[str],
    classes: Sequence[str] | None,
) -> tuple[LabeledBox, bool]:
    """One box, and whether it was a segmentation polygon."""
    where = f"line {number}"
    fields = line.split()
    polygon = len(fields) >= 7 and len(fields) % 2 == 1
    if len(fields) != 5 and not polygon:
        problem = "expected 'class cx cy w h' or a polygon 'class x1 y1 x2 y2 x3 y3 ...'"
        raise InvalidValueError(source, where, problem, line.strip())
    label = _label(source, where, fields[0], file_classes, classes)
    coords = fields[1:]
    names = [f"{'xy'[i % 2]}{i // 2 + 1}" for i in range(len(coords))] if polygon else ["cx", "cy", "w", "h"]
    values = [_value(source, f"{where} {name}", raw) for name, raw in zip(names, coords, strict=True)]
    box = yolo_polygon_to_box(values, size) if polygon else yolo_to_box(values, size)
    # six decimals of a normalised value are worth up to 0.5e-6 of the image: clip that rounding away.
    check_box(source, where, box, size, tolerance=1e-5 * max(size.width, size.height))
    return LabeledBox(label=label, box=clip_box(box, size)), polygon


def _label(source: Path, where: str, raw: str, file_classes: Sequence[str], classes: Sequence[str] | None) -> str:
    try:
        index = int(raw)
    except ValueError:
        raise InvalidValueError(source, f"{where} class", "class index is not an integer", raw) from None
    if not 0 <= index < len(file_classes):
        raise UnknownClassError(
            source, f"{where} class", f"index outside classes.txt (0..{len(file_classes) - 1})", index
        )
    return check_label(source, f"{where} class", file_classes[index], classes)


def _value(source: Path, element: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise InvalidValueError(source, element, "not a number", raw) from None
    if not math.isfinite(value):
        raise InvalidValueError(source, element, "not a finite number", raw)
    return value


def yolo_to_text(annotation: ImageAnnotation, classes: Sequence[str]) -> str:
    """The content of a YOLO label file for ``annotation`` with class indices from ``classes``."""
    lines = []
    for obj in annotation.objects:
        cx, cy, w, h = box_to_yolo(obj.box, annotation.size)
        lines.append(f"{classes.index(obj.label)} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n")
    return "".join(lines)


def write_yolo(annotation: ImageAnnotation, path: str | Path, classes: Sequence[str]) -> None:
    atomic_write_text(path, yolo_to_text(annotation, classes))
