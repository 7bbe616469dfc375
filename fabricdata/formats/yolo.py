"""YOLO txt + ``classes.txt`` as LabelImg's YOLO mode writes them.

One ``<image stem>.txt`` per image with ``class cx cy w h`` lines (normalised, six decimals), and one
``classes.txt`` per folder. YOLO files carry no image size: the caller passes the real one from the image.
Ultralytics segmentation lines (``class x1 y1 x2 y2 x3 y3 ...``, normalised polygon points) are read as their
bounding box, as Ultralytics does for detection; the reader counts them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fabricdata.core.annotation import ImageAnnotation, LabeledBox, check_box, check_label
from fabricdata.core.boxes import ImageSize, box_to_yolo, clip_box, yolo_polygon_to_box, yolo_to_box
from fabricdata.core.errors import (
    AnnotationError,
    InvalidValueError,
    MissingFieldError,
    UnknownClassError,
    WriteBackConflictError,
)
from fabricdata.core.fileio import MAX_LABEL_BYTES, atomic_write_text, read_limited, sha256_bytes
from fabricdata.core.images import image_info
from fabricdata.formats.edits import SAME_BOX_PX, NumberStyle, align, same_box
from fabricdata.formats.registry import HashUnit, LabelFormat, NewFile, Refused, SampleLabels, WriteBack, Written

if TYPE_CHECKING:
    from fabricdata.formats import FolderScan
    from fabricdata.formats.discover import Discovery, LabelFile
    from fabricdata.formats.names import ClassNames
    from fabricdata.formats.registry import ReadResult

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
    lines = _box_lines(source, data, size, file_classes, classes)
    polygons = sum(1 for line in lines if line.polygon)
    annotation = ImageAnnotation(
        filename=image_name, size=size, objects=tuple(line.box for line in lines), folder=source.parent.name
    )
    return data, annotation, polygons


@dataclass(frozen=True, slots=True)
class _Line:
    """One box line of a label file: where it is (index among all lines), its box, and whether it is a polygon."""

    index: int
    box: LabeledBox
    polygon: bool


def _text(source: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidValueError(source, "document", f"invalid UTF-8 at byte {exc.start}") from None


def _box_lines(
    source: Path, data: bytes, size: ImageSize, file_classes: Sequence[str], classes: Sequence[str] | None
) -> list[_Line]:
    lines = _text(source, data).splitlines()
    return [
        _Line(index, *_read_line(source, index + 1, line, size, file_classes, classes))
        for index, line in enumerate(lines)
        if line.strip()
    ]


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


def classes_text(classes: Sequence[str]) -> bytes:
    """The content of a ``classes.txt`` (one name a line)."""
    return "".join(f"{name}\n" for name in classes).encode("utf-8")


# --- write-back: only the lines an edit changed -------------------------------------------------------------

#: LabelImg's number style (``%.6f``)
LABELIMG_STYLE = NumberStyle(6, fixed=True)
#: decimals an edited value of a file of decimals gets at most (normalised values)
MAX_DECIMALS = 8
_FIRST_FIELD = re.compile(r"^(\s*)(\S+)")


@dataclass(frozen=True, slots=True)
class _Names:
    """The class names a label file's indices mean, the file they are in, and a names file to write first."""

    names: list[str]
    path: Path
    write: bytes | None = None


def yolo_write_back(data: bytes, path: Path, edit: SampleLabels) -> WriteBack:
    """The YOLO file ``path`` (bytes ``data``) holding ``edit``'s objects: untouched lines keep their exact bytes
    (``0.7921875``, spacing, CRLF), a relabelled box only its class index, an edited box a new line in the file's
    number style; new classes are appended to the names file (a YAML's names are never rewritten). A label file
    imported with ``--classes`` gets a ``classes.txt`` beside it.

    Raises:
        AnnotationError: no names file can be found or made, a class is not in a YAML's names, or a box read from
            a segmentation polygon was moved (the polygon would be lost).
    """
    known = _names_for(path, edit)
    lines = _text(path, data).splitlines(keepends=True)
    old = _box_lines(path, data, edit.size, known.names, None)
    texts = [value for line in old if not line.polygon for value in lines[line.index].split()[1:5]]
    style = NumberStyle.of(texts, MAX_DECIMALS, LABELIMG_STYLE)
    newline = "\r\n" if any(line.endswith("\r\n") for line in lines) else "\n"
    names = list(known.names)
    new_lines = _edited_lines(path, lines, old, edit, names, style, newline)
    new_bytes = "".join(new_lines).encode("utf-8")
    added = [name for name in names if name not in known.names]
    if added and known.path.suffix.lower() in (".yaml", ".yml"):
        problem = f"class {added[0]!r} is not listed; add it to the YAML's names first"
        raise WriteBackConflictError(known.path, "names", problem)
    objects = tuple(line.box for line in _box_lines(path, new_bytes, edit.size, names, None))
    back = WriteBack(new_bytes, {edit.image: Written(sha256_bytes(new_bytes), objects, class_file=known.path)})
    if added or known.write is not None:
        back.companions.append((known.path, classes_text(names)))
    return back


def _names_for(path: Path, edit: SampleLabels) -> _Names:
    """The names the file's indices mean: its names file; with ``--classes`` names, a ``classes.txt`` beside it
    (made with those names when there is none)."""
    if edit.class_file is not None:
        return _Names(list(read_classes(edit.class_file)), edit.class_file)
    beside = path.parent / CLASSES_FILE
    if edit.class_names is None:
        problem = (
            "no class-name file for these YOLO labels: write their class names there, one a line in the order of "
            "the labels' indices, then re-import the folder"
        )
        raise InvalidValueError(beside, "file", problem)
    given = list(edit.class_names)
    if not beside.is_file():
        return _Names(given, beside, classes_text(given))
    there = list(read_classes(beside))
    if there[: len(given)] != given:
        problem = f"lists other class names than the import's --classes ({', '.join(given)}): fix or remove it"
        raise InvalidValueError(beside, "names", problem, ", ".join(there))
    return _Names(there, beside)


def _edited_lines(
    path: Path,
    lines: list[str],
    old: Sequence[_Line],
    edit: SampleLabels,
    names: list[str],
    style: NumberStyle,
    newline: str,
) -> list[str]:
    new = edit.objects
    inserts: dict[int | None, list[int]] = {}
    action: dict[int, int | None] = {}
    last: int | None = None
    for i, j in align([line.box for line in old], new):
        if i is None and j is not None:
            inserts.setdefault(last, []).append(j)
        elif i is not None:
            action[old[i].index], last = j, old[i].index
    like = next((lines[line.index] for line in old if not line.polygon), "")
    out: list[str] = []
    for j in inserts.get(None, []):
        out.append(_new_line(new[j], edit, names, style, like) + newline)
    numbered = {line.index: line for line in old}
    for index, line in enumerate(lines):
        target = action.get(index)
        if index not in numbered:
            out.append(line)
        elif target is not None:
            out.append(_edited_line(path, line, numbered[index], new[target], edit, names, style))
        for j in inserts.get(index, []):
            if out and not out[-1].endswith(("\n", "\r")):
                out[-1] += newline
            out.append(_new_line(new[j], edit, names, style, like) + newline)
    return out


def _index(label: str, names: list[str]) -> str:
    if label not in names:  # LabelImg appends new classes the same way
        names.append(label)
    return str(names.index(label))


def _new_line(obj: LabeledBox, edit: SampleLabels, names: list[str], style: NumberStyle, like: str = "") -> str:
    """A box line, spaced like the line ``like`` (single spaces where there is none)."""
    fields = [_index(obj.label, names), *(style.format(value) for value in box_to_yolo(obj.box, edit.size))]
    return _spaced(fields, like)


def _spaced(fields: Sequence[str], like: str) -> str:
    body = like.rstrip("\r\n")
    gaps = re.findall(r"\s+", body.strip())
    gaps = gaps[: len(fields) - 1] if len(gaps) >= len(fields) - 1 else [" "] * (len(fields) - 1)
    lead = body[: len(body) - len(body.lstrip())]
    return lead + "".join(field + gap for field, gap in zip(fields, [*gaps, ""], strict=True))


def _edited_line(
    path: Path, line: str, old: _Line, new: LabeledBox, edit: SampleLabels, names: list[str], style: NumberStyle
) -> str:
    """``line`` with what changed from ``old`` to ``new`` replaced: the class index, and the values that moved
    (in ``style``; the others keep their text). difficult/truncated are not YOLO's."""
    fields = line.split()
    if old.box.label != new.label:
        fields[0] = _index(new.label, names)
    if not same_box(old.box, new):
        if old.polygon:
            problem = (
                "holds a segmentation polygon whose box was moved: writing a box would lose the outline; "
                "move the polygon in a segmentation tool"
            )
            raise InvalidValueError(path, f"line {old.index + 1}", problem)
        size = edit.size
        extents = (size.width, size.height, size.width, size.height)
        for k, (value, extent) in enumerate(zip(box_to_yolo(new.box, size), extents, strict=True)):
            if abs(value - float(fields[k + 1])) * extent > SAME_BOX_PX:
                fields[k + 1] = style.format(value)
    body = line.rstrip("\r\n")
    return _spaced(fields, line) + line[len(body) :]


# --- the registry's YOLO ------------------------------------------------------------------------------------


class YoloFormat:
    """YOLO txt, one file per image, class names from a names file (see
    :class:`fabricdata.formats.registry.LabelFormat`)."""

    name = "yolo"
    title = "YOLO .txt"
    hash_unit: HashUnit = "file"
    max_bytes = MAX_LABEL_BYTES

    def claims(self, path: Path, found: Discovery) -> bool:
        from fabricdata.formats.layouts import looks_like_yolo_label

        if path.suffix.lower() != ".txt":
            return False
        pairing = found.index.pair(path)
        return pairing.image is not None or bool(pairing.problem) or looks_like_yolo_label(path)

    def locate(self, path: Path, found: Discovery, names: ClassNames) -> LabelFile | None:
        from fabricdata.formats.discover import LabelFile

        pairing = found.index.pair(path)
        if pairing.problem:
            found.errors.append(InvalidValueError(path, "image", pairing.problem))
            return None
        if pairing.image is None:
            found.orphans.append(path)
            return None
        class_names, source = names.for_label(path, pairing.image)
        return LabelFile(path, self.name, pairing.image, class_names, source, pairing.how)

    def read(
        self, label: LabelFile, found: Discovery, scan: FolderScan, classes: Sequence[str] | None, check_sizes: bool
    ) -> Iterator[ReadResult]:
        from dataclasses import replace

        from fabricdata.formats import FolderItem

        if label.image is None:
            return
        if label.names is None:
            yield Refused(label.path, label.image, "no class names for its folder")
            return
        scan.partner[label.path] = label.image
        try:
            info = image_info(label.image)
            data, annotation, polygons = read_yolo_counted(
                label.path, label.image.name, info.size, label.names, classes
            )
            annotation = replace(annotation, depth=info.channels)
            yield FolderItem(
                label.image, label.path, annotation, self.name, sha256_bytes(data), found.placement(label.image),
                info, class_file=label.names_from, how=label.how, polygons=polygons,
                class_names=label.names if label.names_from is None else None,
            )  # fmt: skip
        except AnnotationError as exc:
            yield exc

    def images_of(self, label: LabelFile, found: Discovery) -> list[Path]:
        return [label.image] if label.image is not None else []

    def entry_hashes(self, data: bytes, path: Path) -> dict[str, str]:
        return {}

    def write_back(self, data: bytes, path: Path, edits: Sequence[SampleLabels]) -> WriteBack:
        (edit,) = edits
        return yolo_write_back(data, path, edit)

    def new_file(self, draft: SampleLabels) -> NewFile:
        path = draft.image.with_suffix(".txt")
        if path.exists():
            raise FileExistsError(0, "exists", str(path))
        classes_path = draft.image.parent / CLASSES_FILE
        exists = classes_path.is_file()
        classes = list(read_classes(classes_path)) if exists else list(draft.class_names or ())
        wanted = classes + [name for name in dict.fromkeys(obj.label for obj in draft.objects) if name not in classes]
        annotation = ImageAnnotation(draft.image.name, draft.size, draft.objects)
        data = yolo_to_text(annotation, wanted).encode("utf-8")
        objects = tuple(line.box for line in _box_lines(path, data, draft.size, wanted, None))
        companions = [(classes_path, classes_text(wanted))] if wanted != classes or not exists else []
        return NewFile(path, data, Written(sha256_bytes(data), objects, class_file=classes_path), None, companions)

    def read_annotation(self, path: Path, image: Path, size: ImageSize) -> ImageAnnotation:
        return ImageAnnotation(image.name, size)


FORMAT: LabelFormat = YoloFormat()
