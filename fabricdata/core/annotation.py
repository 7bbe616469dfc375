"""The format-independent annotation model: one image, its size and its labelled boxes."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from fabricdata.core.boxes import Box, ImageSize, box_problem
from fabricdata.core.errors import InvalidBoxError, UnknownClassError

DEFAULT_CLASSES: tuple[str, ...] = ("wrinkle", "drop", "broken")


@dataclass(frozen=True, slots=True)
class LabeledBox:
    """One annotated object."""

    label: str
    box: Box
    difficult: bool = False
    truncated: bool = False
    pose: str = "Unspecified"
    #: Region caption / grounding phrase overriding the class phrase table (Florence-2 export).
    caption: str | None = None
    #: Child elements of a VOC ``<object>`` that fabricdata does not model, kept verbatim for write-back.
    extra_xml: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ImageAnnotation:
    """One image's annotation, as LabelImg stores it."""

    filename: str
    size: ImageSize
    objects: tuple[LabeledBox, ...] = ()
    depth: int = 3
    folder: str = ""
    path: str | None = None
    database: str = "Unknown"
    segmented: int = 0
    verified: bool = False
    #: Top-level VOC elements that fabricdata does not model, kept verbatim for write-back.
    extra_xml: tuple[str, ...] = field(default=(), compare=False)

    def with_objects(self, objects: Iterable[LabeledBox]) -> ImageAnnotation:
        return replace(self, objects=tuple(objects))

    @property
    def labels(self) -> list[str]:
        return [obj.label for obj in self.objects]


def parse_class_list(text: str) -> tuple[str, ...]:
    """``"wrinkle, drop,broken-weft"`` -> ``("wrinkle", "drop", "broken-weft")``, in order, no duplicates."""
    names: list[str] = []
    for raw in text.split(","):
        name = raw.strip()
        if name and name not in names:
            names.append(name)
    return tuple(names)


def class_name_problem(name: str) -> str | None:
    """The one rule for class names and phrases (import, ``--classes``, the Florence-2 export): None when ``name``
    (stripped) can be a label, else what is wrong. Florence-2 text is ``label<loc_..>``, so ``<``, ``>`` and
    control characters (line breaks) would break every record that holds the name."""
    if not name.strip():
        return "class name is empty"
    unfit = next((char for char in name.strip() if char in "<>" or unicodedata.category(char) == "Cc"), None)
    if unfit is None:
        return None
    shown = "a line break or control character" if unicodedata.category(unfit) == "Cc" else repr(unfit)
    return f"class name contains {shown}, which Florence-2 labels cannot hold"


def check_label(path: str | Path | None, element: str, label: str, classes: Sequence[str] | None) -> str:
    """Return the label stripped, or raise UnknownClassError naming the file and element."""
    name = label.strip()
    problem = class_name_problem(label)
    if problem is not None:
        raise UnknownClassError(path, element, problem, name or label)
    if classes is not None and name not in classes:
        raise UnknownClassError(path, element, f"class is not one of {', '.join(classes)}", name)
    return name


def check_box(path: str | Path | None, element: str, box: Box, size: ImageSize, tolerance: float = 0.0) -> None:
    """Raise InvalidBoxError naming the file and element when ``box`` is not valid in an image of ``size``."""
    problem = box_problem(box, size, tolerance)
    if problem is not None:
        raise InvalidBoxError(path, element, problem, list(box.as_tuple()))
