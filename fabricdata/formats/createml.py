"""CreateML JSON as LabelImg's CreateML mode writes it (reader and writer).

One JSON file holds a list of ``{"image", "verified", "annotations": [{"label", "coordinates": {x, y, width,
height}}]}`` with pixel centre coordinates. No image sizes are stored: the caller passes real ones. Its content hash
is per entry (one file, many images); write-back replaces only the edited entries' changed values in the file's text.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fabricdata.core.annotation import ImageAnnotation, LabeledBox, check_box, check_label
from fabricdata.core.boxes import ImageSize, box_to_createml, createml_to_box
from fabricdata.core.errors import AnnotationError, InvalidValueError, MissingFieldError, WriteBackConflictError
from fabricdata.core.fileio import MAX_CREATEML_BYTES, atomic_write_text, read_limited, sha256_bytes
from fabricdata.core.images import ImageInfo, image_info
from fabricdata.formats.edits import (
    SAME_BOX_PX,
    JsonLayout,
    JsonShapeError,
    NumberStyle,
    align,
    indentation,
    json_array,
    json_members,
    rebuild_array,
    same_box,
    set_member,
    skip_space,
    splice,
)
from fabricdata.formats.registry import HashUnit, LabelFormat, NewFile, SampleLabels, WriteBack, Written

if TYPE_CHECKING:
    from fabricdata.formats import FolderScan
    from fabricdata.formats.discover import Discovery, LabelFile
    from fabricdata.formats.names import ClassNames
    from fabricdata.formats.registry import ReadResult


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


def entry_hashes(data: bytes, path: Path) -> dict[str, str]:
    """Image name -> the hash of its entry, for the images that have exactly one entry in the file's bytes."""
    entries = parse_createml(data, path)
    count = Counter(entry["image"] for entry in entries)
    return {entry["image"]: createml_entry_hash(entry) for entry in entries if count[entry["image"]] == 1}


# --- write-back: only the entries and values an edit changed ------------------------------------------------

#: numbers as LabelImg's CreateML mode writes them (Python floats: ``21.5``, ``37.0``)
LABELIMG_STYLE = NumberStyle(6)
_COORDINATE = re.compile(r'"(?:x|y|width|height)"\s*:\s*(-?[0-9][0-9.eE+-]*)')


def createml_write_back(data: bytes, path: Path, edits: Sequence[SampleLabels]) -> WriteBack:
    """The CreateML file ``path`` (bytes ``data``) with the entries of ``edits`` replaced: other entries keep
    their exact text, an edited entry its untouched annotations; a changed box gets new coordinates in the file's
    number style. An image without exactly one entry is an error of its own.

    Raises:
        AnnotationError: the file does not parse as a CreateML list.
    """
    entries = parse_createml(data, path)
    text = data.decode("utf-8")
    try:
        root = json_array(text, skip_space(text, 0))
    except JsonShapeError as exc:
        raise InvalidValueError(path, "document", str(exc)) from None
    count = Counter(entry["image"] for entry in entries)
    index = {entry["image"]: k for k, entry in enumerate(entries) if count[entry["image"]] == 1}
    style = NumberStyle.of(_COORDINATE.findall(text), 6, LABELIMG_STYLE)
    back = WriteBack(data)
    replacements = []
    for edit in edits:
        name = edit.image.name
        if name not in index:
            problem = "entry no longer in the file (or in it twice)"
            back.results[edit.image] = WriteBackConflictError(path, name, problem)
            continue
        start, end = root.elements[index[name]]
        try:
            entry_text = _edited_entry(path, index[name], entries[index[name]], text[start:end], edit, style)
        except AnnotationError as exc:
            back.results[edit.image] = exc
            continue
        replacements.append((start, end, entry_text))
    back.data = splice(text, replacements).encode("utf-8")
    _results(back, path, edits)
    return back


def _results(back: WriteBack, path: Path, edits: Sequence[SampleLabels]) -> None:
    """What the new file says for each edited image (those not already refused)."""
    entries = {entry["image"]: (k, entry) for k, entry in enumerate(parse_createml(back.data, path))}
    for edit in edits:
        if edit.image in back.results:
            continue
        k, entry = entries[edit.image.name]
        objects = read_createml_entry(path, k, entry, edit.size).objects
        back.results[edit.image] = Written(createml_entry_hash(entry), objects)


def _edited_entry(
    path: Path, index: int, entry: dict[str, Any], text: str, edit: SampleLabels, style: NumberStyle
) -> str:
    """One entry's text with ``edit``'s objects and verified flag: untouched annotations keep their text, an
    edited one only its changed values."""
    old = read_createml_entry(path, index, entry, edit.size).objects
    members = json_members(text, 0)
    layout = JsonLayout.of(text)
    if "annotations" in members:
        array = json_array(text, members["annotations"][0])
        pieces = [text[start:end] for start, end in array.elements]
        base = indentation(text, array.elements[0][0]) if array.elements else indentation(text, array.start)
    else:
        array, pieces, base = None, [], ""
    items: list[tuple[int | None, str]] = []
    for i, j in align(old, edit.objects):
        if j is None:
            continue
        new = edit.objects[j]
        if i is None:
            items.append((None, layout.dump(_annotation(new), style, base)))
        elif same_box(old[i], new) and old[i].label == new.label:
            items.append((i, pieces[i]))
        else:
            items.append((i, _edited_annotation(pieces[i], old[i], new, style)))
    if array is not None:
        out = splice(text, [(array.start, array.end, rebuild_array(text, array, items))])
    else:
        out = set_member(text, "annotations", "[" + layout.comma.join(piece for _, piece in items) + "]")
    if bool(entry.get("verified", False)) != edit.verified:
        out = set_member(out, "verified", "true" if edit.verified else "false")
    return out


def _edited_annotation(piece: str, old: LabeledBox, new: LabeledBox, style: NumberStyle) -> str:
    """One annotation's text with its label and the coordinates that changed replaced (the others as written)."""
    if old.label != new.label:
        piece = set_member(piece, "label", json.dumps(new.label, ensure_ascii=False))
    if same_box(old, new):
        return piece
    members = json_members(piece, 0)
    before, after = box_to_createml(old.box), box_to_createml(new.box)
    start, end = members["coordinates"]
    coordinates = piece[start:end]
    for key, value in after.items():
        if abs(value - before[key]) > SAME_BOX_PX:
            coordinates = set_member(coordinates, key, style.format(value))
    return piece[:start] + coordinates + piece[end:]


def _annotation(obj: LabeledBox) -> dict[str, Any]:
    return {"label": obj.label, "coordinates": box_to_createml(obj.box)}


def createml_new_file(draft: SampleLabels) -> NewFile:
    """A verified draft as an entry of ``annotations.json`` beside its image (made when there is none); never a
    second entry for an image.

    Raises:
        WriteBackConflictError: the file has an entry for the image already.
    """
    path = draft.image.parent / "annotations.json"
    exists = path.is_file()
    raw = read_limited(path, MAX_CREATEML_BYTES) if exists else b"[]"
    entries = parse_createml(raw, path)
    name = draft.image.name
    if any(entry.get("image") == name for entry in entries):
        raise WriteBackConflictError(path, name, "has an entry for this image already: import it instead")
    text = raw.decode("utf-8")
    style = NumberStyle.of(_COORDINATE.findall(text), 6, LABELIMG_STYLE)
    try:
        root = json_array(text, skip_space(text, 0))
    except JsonShapeError as exc:
        raise InvalidValueError(path, "document", str(exc)) from None
    layout = JsonLayout.of(text) if entries else JsonLayout()
    value = {"image": name, "verified": draft.verified, "annotations": [_annotation(obj) for obj in draft.objects]}
    new = layout.dump(value, style, indentation(text, root.elements[0][0]) if root.elements else "")
    items = [(k, text[start:end]) for k, (start, end) in enumerate(root.elements)]
    data = splice(text, [(root.start, root.end, rebuild_array(text, root, [*items, (None, new)]))]).encode("utf-8")
    entry = parse_createml(data, path)[-1]
    written = Written(createml_entry_hash(entry), read_createml_entry(path, 0, entry, draft.size).objects)
    return NewFile(path, data, written, replaces=sha256_bytes(raw) if exists else None)


# --- the registry's CreateML --------------------------------------------------------------------------------


class CreateMLFormat:
    """CreateML JSON, one file for the images of a folder (see :class:`fabricdata.formats.registry.LabelFormat`)."""

    name = "createml"
    title = "CreateML .json"
    hash_unit: HashUnit = "entry"
    max_bytes = MAX_CREATEML_BYTES

    def claims(self, path: Path, found: Discovery) -> bool:
        from fabricdata.formats.layouts import looks_like_createml

        return path.suffix.lower() == ".json" and looks_like_createml(path)

    def locate(self, path: Path, found: Discovery, names: ClassNames) -> LabelFile | None:
        from fabricdata.formats.discover import LabelFile

        return LabelFile(path, self.name)

    def read(
        self, label: LabelFile, found: Discovery, scan: FolderScan, classes: Sequence[str] | None, check_sizes: bool
    ) -> Iterator[ReadResult]:
        from fabricdata.formats import FolderItem

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
                yield FolderItem(image, path, annotation, self.name, createml_entry_hash(entry), placement, info)

    def images_of(self, label: LabelFile, found: Discovery) -> list[Path]:
        try:
            entries = load_createml(label.path)
        except AnnotationError:
            return []
        images = (found.image_named(label.path.parent, entry["image"]) for entry in entries)
        return [image for image in images if image is not None]

    def entry_hashes(self, data: bytes, path: Path) -> dict[str, str]:
        return entry_hashes(data, path)

    def write_back(self, data: bytes, path: Path, edits: Sequence[SampleLabels]) -> WriteBack:
        return createml_write_back(data, path, edits)

    def new_file(self, draft: SampleLabels) -> NewFile:
        return createml_new_file(draft)

    def read_annotation(self, path: Path, image: Path, size: ImageSize) -> ImageAnnotation:
        return ImageAnnotation(image.name, size)


FORMAT: LabelFormat = CreateMLFormat()
