"""CreateML JSON as LabelImg's CreateML mode writes it (reader and writer).

One JSON file holds a list of ``{"image", "verified", "annotations": [{"label", "coordinates": {x, y, width,
height}}]}`` with pixel centre coordinates. No image sizes are stored: the caller passes real ones.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from fabricdata.core.annotation import ImageAnnotation, LabeledBox, check_box, check_label
from fabricdata.core.boxes import ImageSize, box_to_createml, createml_to_box
from fabricdata.core.errors import AnnotationError, InvalidValueError, MissingFieldError
from fabricdata.core.fileio import MAX_CREATEML_BYTES, atomic_write_text, read_limited, sha256_bytes


def load_createml(path: str | Path) -> list[dict[str, Any]]:
    """Load and shape-check a CreateML file; each entry must be an object with an ``image`` name."""
    return parse_createml(read_limited(path, MAX_CREATEML_BYTES), path)


def parse_createml(data: bytes, path: str | Path) -> list[dict[str, Any]]:
    """Shape-check the bytes of the CreateML file ``path`` (see :func:`load_createml`)."""
    source = Path(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidValueError(source, "document", f"invalid UTF-8 at byte {exc.start}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidValueError(source, "document", f"malformed JSON at line {exc.lineno}: {exc.msg}") from None
    if not isinstance(data, list):
        raise InvalidValueError(source, "document", "expected a JSON list of images", type(data).__name__)
    for index, entry in enumerate(data):
        if not isinstance(entry, dict) or not isinstance(entry.get("image"), str):
            raise InvalidValueError(source, f"[{index}].image", "each entry needs an image name", entry)
    return data


def read_createml_entry(
    path: str | Path,
    index: int,
    entry: dict[str, Any],
    size: ImageSize,
    classes: Sequence[str] | None = None,
) -> ImageAnnotation:
    """Turn one entry of a CreateML list into an annotation of an image of ``size``."""
    where = f"[{index}]"
    raw_objects = entry.get("annotations", [])
    if not isinstance(raw_objects, list):
        raise InvalidValueError(path, f"{where}.annotations", "expected a list", raw_objects)
    objects = [
        _read_object(path, f"{where}.annotations[{number}]", raw, size, classes)
        for number, raw in enumerate(raw_objects)
    ]
    return ImageAnnotation(
        filename=entry["image"],
        size=size,
        objects=tuple(objects),
        folder=Path(path).parent.name,
        verified=bool(entry.get("verified", False)),
    )


def _read_object(path: str | Path, where: str, raw: Any, size: ImageSize, classes: Sequence[str] | None) -> LabeledBox:
    if not isinstance(raw, dict):
        raise InvalidValueError(path, where, "expected an object", raw)
    raw_label = raw.get("label", "")
    if not isinstance(raw_label, str):
        raise InvalidValueError(path, f"{where}.label", "must be a string", raw_label)
    label = check_label(path, f"{where}.label", raw_label, classes)
    coords = raw.get("coordinates")
    if not isinstance(coords, dict):
        raise MissingFieldError(path, f"{where}.coordinates")
    for key in ("x", "y", "width", "height"):
        value = coords.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidValueError(path, f"{where}.coordinates.{key}", "not a number", value)
        if not math.isfinite(value):
            raise InvalidValueError(path, f"{where}.coordinates.{key}", "not a finite number", value)
    box = createml_to_box(coords)
    check_box(path, f"{where}.coordinates", box, size)
    return LabeledBox(label=label, box=box)


def read_createml(
    path: str | Path,
    size_of: Callable[[str], ImageSize | None],
    classes: Sequence[str] | None = None,
) -> tuple[list[ImageAnnotation], list[AnnotationError]]:
    """Read every entry; bad entries become errors while the good ones are still returned."""
    annotations: list[ImageAnnotation] = []
    errors: list[AnnotationError] = []
    for _, _, result in createml_entries(path, size_of, classes):
        if isinstance(result, AnnotationError):
            errors.append(result)
        elif result is not None:
            annotations.append(result)
    return annotations, errors


def createml_entries(
    path: str | Path,
    size_of: Callable[[str], ImageSize | None],
    classes: Sequence[str] | None = None,
) -> Iterator[tuple[int, dict[str, Any], ImageAnnotation | AnnotationError | None]]:
    """The one loop over a CreateML file (import and :func:`read_createml` both use it): each entry with its
    annotation, its error, or None where ``size_of`` (image name -> size; it may raise AnnotationError) knows no
    image for it. A file that cannot be loaded raises before the first entry."""
    for index, entry in enumerate(load_createml(path)):
        try:
            size = size_of(entry["image"])
            yield index, entry, None if size is None else read_createml_entry(path, index, entry, size, classes)
        except AnnotationError as exc:
            yield index, entry, exc


def createml_entry_hash(entry: dict[str, Any]) -> str:
    """A stable content hash of one CreateML entry (several images share one file)."""
    return sha256_bytes(json.dumps(entry, sort_keys=True, ensure_ascii=False).encode("utf-8"))


def createml_entry(annotation: ImageAnnotation) -> dict[str, Any]:
    """One image's entry of a CreateML list."""
    objects = [{"label": obj.label, "coordinates": box_to_createml(obj.box)} for obj in annotation.objects]
    return {"image": annotation.filename, "verified": annotation.verified, "annotations": objects}


def createml_to_text(annotations: Sequence[ImageAnnotation]) -> str:
    return json.dumps([createml_entry(ann) for ann in annotations], ensure_ascii=False)


def write_createml(annotations: Sequence[ImageAnnotation], path: str | Path) -> None:
    atomic_write_text(path, createml_to_text(annotations))
