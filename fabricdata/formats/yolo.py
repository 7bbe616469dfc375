"""YOLO txt + ``classes.txt`` as LabelImg's YOLO mode writes them.

One ``<image stem>.txt`` per image with ``class cx cy w h`` lines (normalised, six decimals), and one
``classes.txt`` per folder. YOLO files carry no image size: the caller passes the real one from the image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from fabricdata.core.annotation import ImageAnnotation, LabeledBox, check_box, check_label
from fabricdata.core.boxes import ImageSize, box_to_yolo, clip_box, yolo_to_box
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
    return data, ImageAnnotation(filename=image_name, size=size, objects=tuple(objects), folder=source.parent.name)


def _read_line(
    source: Path,
    number: int,
    line: str,
    size: ImageSize,
    file_classes: Sequence[str],
    classes: Sequence[str] | None,
) -> LabeledBox:
    where = f"line {number}"
    fields = line.split()
    if len(fields) != 5:
        raise InvalidValueError(source, where, "expected 'class cx cy w h'", line.strip())
    try:
        index = int(fields[0])
    except ValueError:
        raise InvalidValueError(source, f"{where} class", "class index is not an integer", fields[0]) from None
    if not 0 <= index < len(file_classes):
        raise UnknownClassError(
            source, f"{where} class", f"index outside classes.txt (0..{len(file_classes) - 1})", index
        )
    label = check_label(source, f"{where} class", file_classes[index], classes)
    values = []
    for name, raw in zip(("cx", "cy", "w", "h"), fields[1:], strict=True):
        try:
            value = float(raw)
        except ValueError:
            raise InvalidValueError(source, f"{where} {name}", "not a number", raw) from None
        if not math.isfinite(value):
            raise InvalidValueError(source, f"{where} {name}", "not a finite number", raw)
        values.append(value)
    box = yolo_to_box(values, size)
    # six decimals of a normalised value are worth up to 0.5e-6 of the image: clip that rounding away.
    check_box(source, where, box, size, tolerance=1e-5 * max(size.width, size.height))
    return LabeledBox(label=label, box=clip_box(box, size))


def yolo_to_text(annotation: ImageAnnotation, classes: Sequence[str]) -> str:
    """The content of a YOLO label file for ``annotation`` with class indices from ``classes``."""
    lines = []
    for obj in annotation.objects:
        cx, cy, w, h = box_to_yolo(obj.box, annotation.size)
        lines.append(f"{classes.index(obj.label)} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n")
    return "".join(lines)


def write_yolo(annotation: ImageAnnotation, path: str | Path, classes: Sequence[str]) -> None:
    atomic_write_text(path, yolo_to_text(annotation, classes))
