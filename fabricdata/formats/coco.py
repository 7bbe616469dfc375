"""COCO detection JSON (``annotations/instances_train.json``, Roboflow's ``train/_annotations.coco.json``).

One JSON object for many images (https://cocodataset.org/#format-data): ``images`` ``[{id, file_name, width,
height}]``, ``categories`` ``[{id, name}]`` (class names by id) and ``annotations`` ``[{id, image_id, category_id,
bbox: [x, y, width, height], area, segmentation, iscrowd}]``, boxes by their top-left corner and size in pixels.
``file_name`` is relative to the JSON's folder, an ``images`` folder in it, or the image folder beside it
(``annotations/`` + ``images/`` or ``train2017/``). The split is the file's name (``instances_val.json``), else the
folders' (Roboflow's ``valid/``). Its content hash is per image: the image's entry, its annotations and their class
names. Write-back edits the file's text in place: other images, annotations and keys keep their exact bytes.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fabricdata.core.annotation import ImageAnnotation, LabeledBox, check_box, check_label
from fabricdata.core.boxes import ImageSize, box_to_xywh, xywh_to_box
from fabricdata.core.errors import AnnotationError, InvalidValueError, WriteBackConflictError
from fabricdata.core.fileio import MAX_CREATEML_BYTES, read_limited, sha256_bytes
from fabricdata.core.images import image_info
from fabricdata.formats.edits import (
    SAME_BOX_PX,
    JsonDocument,
    JsonShapeError,
    NumberStyle,
    align,
    json_array,
    json_members,
    same_box,
    set_member,
    splice,
)
from fabricdata.formats.layouts import split_in_name
from fabricdata.formats.registry import HashUnit, LabelFormat, NewFile, SampleLabels, WriteBack, Written, check_size

if TYPE_CHECKING:
    from fabricdata.formats import FolderScan
    from fabricdata.formats.discover import Discovery, LabelFile
    from fabricdata.formats.names import ClassNames
    from fabricdata.formats.registry import ReadResult

#: the name Roboflow gives a split's COCO file, and the one a verified draft's entry goes into
DRAFT_FILE = "_annotations.coco.json"
#: decimals an edited value gets at most (COCO's own files write two)
_CAP = 2
_BBOX = re.compile(r'"bbox"\s*:\s*\[([^\]]*)\]')


def _is_id(value: Any) -> bool:
    return isinstance(value, int | str) and not isinstance(value, bool)


@dataclass(slots=True)
class CocoFile:
    """A parsed COCO file: its lists as read, class names by category id, annotation indexes by image id (file
    order), and the annotations whose ``image_id`` names no image (errors of their own)."""

    path: Path
    images: list[Any]
    annotations: list[Any]
    categories: dict[Any, str]
    by_image: dict[Any, list[int]] = field(default_factory=lambda: defaultdict(list))
    strays: list[AnnotationError] = field(default_factory=list)

    def unique(self) -> dict[str, int]:
        """Image base name -> the index of its entry, for the names with exactly one entry."""
        names = {k: _base(entry["file_name"]) for k, entry in enumerate(self.images) if _valid_image(entry)}
        count = Counter(names.values())
        return {name: k for k, name in names.items() if count[name] == 1}


def _base(file_name: str) -> str:
    return file_name.replace("\\", "/").rsplit("/", 1)[-1]


def _valid_image(entry: Any) -> bool:
    return isinstance(entry, dict) and isinstance(entry.get("file_name"), str) and _is_id(entry.get("id"))


def _decode(data: bytes, path: Path) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidValueError(path, "document", f"invalid UTF-8 at byte {exc.start}") from None


def parse_coco(data: bytes, path: Path) -> CocoFile:
    """Shape-check the bytes of the COCO file ``path``.

    Raises:
        AnnotationError: not UTF-8 JSON, not an object, ``images``/``annotations``/``categories`` not lists, a
            category without an id and a name.
    """
    try:
        doc = json.loads(_decode(data, path).removeprefix("\ufeff"))
    except json.JSONDecodeError as exc:
        raise InvalidValueError(path, "document", f"malformed JSON at line {exc.lineno}: {exc.msg}") from None
    if not isinstance(doc, dict):
        raise InvalidValueError(path, "document", "expected a COCO object", type(doc).__name__)
    for key in ("images", "annotations", "categories"):
        if not isinstance(doc.get(key, []), list):
            raise InvalidValueError(path, key, "expected a list", type(doc[key]).__name__)
    categories: dict[Any, str] = {}
    for k, cat in enumerate(doc.get("categories", [])):
        if not isinstance(cat, dict) or not _is_id(cat.get("id")) or not isinstance(cat.get("name"), str):
            raise InvalidValueError(path, f"categories[{k}]", "each category needs an id and a name", cat)
        categories.setdefault(cat["id"], cat["name"])
    coco = CocoFile(path, doc.get("images", []), doc.get("annotations", []), categories)
    ids = {entry["id"] for entry in coco.images if _valid_image(entry)}
    for k, ann in enumerate(coco.annotations):
        image_id = ann.get("image_id") if isinstance(ann, dict) else None
        if _is_id(image_id) and image_id in ids:
            coco.by_image[image_id].append(k)
        else:
            coco.strays.append(InvalidValueError(path, f"annotations[{k}].image_id", "no image has this id", image_id))
    return coco


def _read_object(coco: CocoFile, k: int, size: ImageSize, classes: Sequence[str] | None) -> LabeledBox:
    raw, where = coco.annotations[k], f"annotations[{k}]"
    category = raw.get("category_id")
    if not _is_id(category) or category not in coco.categories:
        raise InvalidValueError(coco.path, f"{where}.category_id", "no category has this id", category)
    label = check_label(coco.path, f"{where}.category_id", coco.categories[category], classes)
    bbox = raw.get("bbox")
    numbers = isinstance(bbox, list) and len(bbox) == 4
    if not numbers or any(isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) for v in bbox):
        raise InvalidValueError(coco.path, f"{where}.bbox", "expected 4 numbers: x, y, width, height in pixels", bbox)
    box = xywh_to_box(bbox)
    check_box(coco.path, f"{where}.bbox", box, size)
    return LabeledBox(label=label, box=box)


def read_coco_entry(coco: CocoFile, k: int, size: ImageSize, classes: Sequence[str] | None = None) -> ImageAnnotation:
    """The annotation of image entry ``k`` (an image of ``size``).

    Raises:
        AnnotationError: one of its annotations is bad (the first one, named by its index).
    """
    entry = coco.images[k]
    objects = tuple(_read_object(coco, a, size, classes) for a in coco.by_image.get(entry["id"], []))
    return ImageAnnotation(filename=_base(entry["file_name"]), size=size, objects=objects, folder=coco.path.parent.name)


def entry_hash(coco: CocoFile, k: int) -> str:
    """A stable content hash of image entry ``k``: the entry, its annotations and their categories' names."""
    entry = coco.images[k]
    annotations = [coco.annotations[a] for a in coco.by_image.get(entry["id"], [])]
    ids = [a.get("category_id") for a in annotations]
    names = {str(cid): coco.categories.get(cid) for cid in ids if _is_id(cid)}
    unit = {"image": entry, "annotations": annotations, "categories": names}
    return sha256_bytes(json.dumps(unit, sort_keys=True, ensure_ascii=False).encode("utf-8"))


# --- write-back: only the annotations and values an edit changed -------------------------------------------


_LISTS = ("images", "annotations", "categories")


@dataclass(slots=True)
class _Edit:
    """Edits planned on one COCO file's text (see :class:`~fabricdata.formats.edits.JsonDocument`)."""

    coco: CocoFile
    doc: JsonDocument
    style: NumberStyle
    next_id: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, data: bytes, path: Path) -> _Edit:
        try:
            doc = JsonDocument.of(_decode(data, path), _LISTS)
        except JsonShapeError as exc:
            raise InvalidValueError(path, "document", str(exc)) from None
        numbers = [value for group in _BBOX.findall(doc.text) for value in group.split(",")]
        return cls(parse_coco(data, path), doc, NumberStyle.of(numbers, _CAP, NumberStyle(_CAP)))

    def new_id(self, key: str) -> int:
        if key not in self.next_id:
            rows = {"images": self.coco.images, "annotations": self.coco.annotations}.get(key)
            ids = list(self.coco.categories) if rows is None else [r.get("id") for r in rows if isinstance(r, dict)]
            self.next_id[key] = max((i for i in ids if isinstance(i, int) and not isinstance(i, bool)), default=0)
        self.next_id[key] += 1
        return self.next_id[key]

    def category(self, label: str) -> int | str:
        """The id of the category named ``label`` (a new category where none is)."""
        found = next((cid for cid, name in self.coco.categories.items() if name == label), None)
        if found is None:
            if "categories" not in self.doc.arrays:
                raise InvalidValueError(self.coco.path, "categories", "no list to add the class to", label)
            found = self.new_id("categories")
            self.coco.categories[found] = label
            self.doc.end["categories"].append(self.doc.dump("categories", {"id": found, "name": label}, self.style))
        return found

    def image(self, k: int, edit: SampleLabels) -> None:
        """Plan the edit of image entry ``k`` (no annotation is planned when it raises)."""
        indexes = self.coco.by_image.get(self.coco.images[k]["id"], [])
        old = [_read_object(self.coco, a, edit.size, None) for a in indexes]
        mine: dict[int, list[str]] = {}
        pending: list[str] = []  # added before the first kept annotation
        last: int | None = None
        for i, j in align(old, edit.objects):
            if i is None:
                assert j is not None
                value = self.annotation(self.coco.images[k]["id"], edit.objects[j])
                mine[last].append(value) if last is not None else pending.append(value)
                continue
            last = indexes[i]
            mine[last] = [] if j is None else [self.edited(last, old[i], edit.objects[j])]
            if pending and j is not None:
                mine[last], pending = pending + mine[last], []
        self.doc.at["annotations"].update(mine)
        self.doc.end["annotations"].extend(pending)

    def annotation(self, image_id: Any, obj: LabeledBox) -> str:
        x, y, w, h = (self.style.value(v) for v in box_to_xywh(obj.box))
        value = {"id": self.new_id("annotations"), "image_id": image_id, "category_id": self.category(obj.label)}
        value |= {"bbox": [x, y, w, h], "area": self.style.value(w * h), "segmentation": [], "iscrowd": 0}
        return self.doc.dump("annotations", value, self.style)

    def edited(self, a: int, old: LabeledBox, new: LabeledBox) -> str:
        """Annotation ``a``'s text with its category and the bbox values that changed replaced (the others kept).

        Raises:
            WriteBackConflictError: its box moved and it holds a mask or polygon.
        """
        piece = self.doc.piece("annotations", a)
        if old.label != new.label:
            piece = set_member(piece, "category_id", json.dumps(self.category(new.label)))
        if same_box(old, new):
            return piece
        if self.coco.annotations[a].get("segmentation"):
            problem = "holds a mask or polygon a moved box would leave behind: edit it in the tool that made it"
            raise WriteBackConflictError(self.coco.path, f"annotations[{a}].segmentation", problem)
        members = json_members(piece, 0)
        values = [self.style.value(v) for v in box_to_xywh(new.box)]
        spans = json_array(piece, members["bbox"][0]).elements
        moved = zip(spans, box_to_xywh(old.box), values, strict=True)
        piece = splice(piece, [(*span, self.style.format(v)) for span, u, v in moved if abs(v - u) > SAME_BOX_PX])
        return set_member(piece, "area", self.style.format(values[2] * values[3])) if "area" in members else piece


def coco_write_back(data: bytes, path: Path, edits: Sequence[SampleLabels]) -> WriteBack:
    """The COCO file ``path`` (bytes ``data``) with the objects of ``edits`` written in: untouched annotations
    keep their exact text, an edited one only its changed values (``bbox`` numbers in the file's style, ``area``,
    ``category_id``); new labels become new categories. An image without exactly one entry is an error of its own.

    Raises:
        AnnotationError: the file does not parse as a COCO object.
    """
    plan, back = _Edit.of(data, path), WriteBack(data)
    unique = plan.coco.unique()
    for edit in edits:
        k = unique.get(edit.image.name)
        if k is None:
            problem = "image no longer in the file (or in it twice)"
            back.results[edit.image] = WriteBackConflictError(path, edit.image.name, problem)
            continue
        categories, added = dict(plan.coco.categories), len(plan.doc.end["categories"])
        try:
            plan.image(k, edit)
        except AnnotationError as exc:
            back.results[edit.image] = exc
            plan.coco.categories, plan.doc.end["categories"] = categories, plan.doc.end["categories"][:added]
    back.data = plan.doc.apply().encode("utf-8")
    _results(back, path, edits)
    return back


def _results(back: WriteBack, path: Path, edits: Sequence[SampleLabels]) -> None:
    """What the new file says for each edited image (those not already refused)."""
    unique = (coco := parse_coco(back.data, path)).unique()
    for edit in edits:
        if edit.image not in back.results:
            k = unique[edit.image.name]
            objects = read_coco_entry(coco, k, edit.size).objects
            back.results[edit.image] = Written(entry_hash(coco, k), objects)


def coco_new_file(draft: SampleLabels) -> NewFile:
    """A verified draft as an image entry (and its annotations) of ``_annotations.coco.json`` beside its image
    (made, with the dataset's classes as categories, when there is none); never a second entry for an image.

    Raises:
        WriteBackConflictError: the file has an entry for the image already.
    """
    path = draft.image.parent / DRAFT_FILE
    exists = path.is_file()
    if exists:
        raw = read_limited(path, MAX_CREATEML_BYTES)
    else:
        names = draft.class_names or tuple(dict.fromkeys(obj.label for obj in draft.objects))
        categories = [{"id": n + 1, "name": name} for n, name in enumerate(names)]
        raw = json.dumps({"categories": categories, "images": [], "annotations": []}, indent=2).encode("utf-8")
    plan = _Edit.of(raw, path)
    if "images" not in plan.doc.arrays:
        raise InvalidValueError(path, "images", "no list to add the image to")
    if draft.image.name in {_base(e["file_name"]) for e in plan.coco.images if _valid_image(e)}:
        raise WriteBackConflictError(path, draft.image.name, "has an entry for this image already: import it instead")
    image_id = plan.new_id("images")
    entry = {"id": image_id, "file_name": draft.image.name, "width": draft.size.width, "height": draft.size.height}
    plan.doc.end["images"].append(plan.doc.dump("images", entry, plan.style))
    plan.doc.end["annotations"] += [plan.annotation(image_id, obj) for obj in draft.objects]
    data = plan.doc.apply().encode("utf-8")
    again = parse_coco(data, path)
    k = len(again.images) - 1
    written = Written(entry_hash(again, k), read_coco_entry(again, k, draft.size).objects)
    return NewFile(path, data, written, replaces=sha256_bytes(raw) if exists else None)


# --- the registry's COCO -----------------------------------------------------------------------------------


class CocoFormat:
    """COCO detection JSON, one file for a split's images (see :class:`fabricdata.formats.registry.LabelFormat`)."""

    name = "coco"
    title = "COCO detection .json"
    hash_unit: HashUnit = "entry"
    max_bytes = MAX_CREATEML_BYTES

    def claims(self, path: Path, found: Discovery) -> bool:
        from fabricdata.formats.layouts import looks_like_coco

        return path.suffix.lower() == ".json" and looks_like_coco(path)

    def locate(self, path: Path, found: Discovery, names: ClassNames) -> LabelFile | None:
        from fabricdata.formats.discover import LabelFile

        return LabelFile(path, self.name)

    def read(
        self, label: LabelFile, found: Discovery, scan: FolderScan, classes: Sequence[str] | None, check_sizes: bool
    ) -> Iterator[ReadResult]:
        from fabricdata.formats import FolderItem
        from fabricdata.formats.discover import Placement

        path, split = label.path, split_in_name(label.path)
        try:
            coco = parse_coco(read_limited(path, MAX_CREATEML_BYTES), path)
        except AnnotationError as exc:
            yield exc
            return
        yield from coco.strays
        shared = Counter(entry["id"] for entry in coco.images if _valid_image(entry))
        for k, entry in enumerate(coco.images):
            if not _valid_image(entry):
                yield InvalidValueError(path, f"images[{k}]", "each image needs an id and a file_name", entry)
                continue
            if shared[entry["id"]] > 1:
                problem = f"{shared[entry['id']]} images share this id: their annotations cannot be told apart"
                yield InvalidValueError(path, f"images[{k}].id", problem, entry["id"])
                continue
            image = found.index.relative(path, entry["file_name"])
            if image is None:
                yield f"{path}: images[{k}].file_name {entry['file_name']!r}: no such image in the folder"
                continue
            try:
                info = image_info(image)
                said = (entry.get("width"), entry.get("height"))
                if check_sizes and all(isinstance(v, int) and not isinstance(v, bool) for v in said):
                    check_size(path, image, ImageSize(*said), info.size)
                annotation = read_coco_entry(coco, k, info.size, classes)
            except AnnotationError as exc:
                yield exc
                continue
            placement = found.placement(image)
            if split is not None:
                placement = Placement(split, f"COCO file {path.name}", placement.category)
            annotation = replace(annotation, filename=image.name, depth=info.channels)
            yield FolderItem(image, path, annotation, self.name, entry_hash(coco, k), placement, info)

    def images_of(self, label: LabelFile, found: Discovery) -> list[Path]:
        try:
            coco = parse_coco(read_limited(label.path, MAX_CREATEML_BYTES), label.path)
        except AnnotationError:
            return []
        paths = (found.index.relative(label.path, e["file_name"]) for e in coco.images if _valid_image(e))
        return [image for image in paths if image is not None]

    def entry_hashes(self, data: bytes, path: Path) -> dict[str, str]:
        coco = parse_coco(data, path)
        return {name: entry_hash(coco, k) for name, k in coco.unique().items()}

    write_back = staticmethod(coco_write_back)
    new_file = staticmethod(coco_new_file)

    def read_annotation(self, path: Path, image: Path, size: ImageSize) -> ImageAnnotation:
        return ImageAnnotation(image.name, size)


FORMAT: LabelFormat = CocoFormat()
