"""LabelImg formats: golden folders, byte-exact round trips, coordinates compared, typed errors."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

from fabricdata.core.annotation import ImageAnnotation, LabeledBox
from fabricdata.core.boxes import Box, ImageSize, box_to_voc
from fabricdata.core.errors import (
    AnnotationError,
    InvalidBoxError,
    InvalidValueError,
    MissingFieldError,
    UnknownClassError,
    UnsafeXMLError,
    WriteBackConflictError,
)
from fabricdata.core.images import image_size
from fabricdata.formats import FolderItem, detect_format, read_folder, registry
from fabricdata.formats.createml import createml_to_text, read_createml
from fabricdata.formats.discover import discover
from fabricdata.formats.registry import SampleLabels, Written
from fabricdata.formats.voc import parse_voc, read_voc, voc_to_bytes, write_voc
from fabricdata.formats.yolo import read_classes, read_yolo, yolo_to_text

CLASSES = ("wrinkle", "drop", "broken-weft")
GOLDEN = {
    "0 (1).jpg": [
        ("wrinkle", (3, 5, 40, 17)),
        ("broken-weft", (20, 30, 64, 48)),
        ("broken-weft", (7, 22, 9, 44)),
    ],
    "flipped_0 (1).jpg": [("wrinkle", (24, 5, 61, 17))],
    "tissu_défaut_é.jpg": [("drop", (10, 12, 18, 19))],
}


def _labels(annotation: ImageAnnotation) -> list[tuple[str, tuple[int, ...]]]:
    return [(obj.label, box_to_voc(obj.box)) for obj in annotation.objects]


# --- VOC ---------------------------------------------------------------------------------------------


def test_voc_reads_labelimg_fields(assets: Path) -> None:
    ann = read_voc(assets / "voc" / "0 (1).xml", CLASSES)
    assert ann.verified and ann.folder == "images" and ann.filename == "0 (1).jpg"
    assert ann.path == "C:\\Users\\mill\\Desktop\\images\\0 (1).jpg"
    assert ann.size == ImageSize(64, 48) and ann.depth == 3 and ann.database == "Unknown"
    assert _labels(ann) == GOLDEN["0 (1).jpg"]
    assert ann.objects[1].difficult and ann.objects[1].truncated and not ann.objects[0].difficult


@pytest.mark.parametrize("name", ["0 (1).xml", "flipped_0 (1).xml", "tissu_défaut_é.xml"])
def test_voc_write_reproduces_labelimg_files_byte_for_byte(assets: Path, name: str) -> None:
    path = assets / "voc" / name
    original = path.read_bytes()
    assert voc_to_bytes(read_voc(path)) == original
    write_voc(read_voc(path), assets / "copy.xml")
    assert (assets / "copy.xml").read_bytes() == original


def test_voc_reads_other_tools_and_keeps_unknown_elements(assets: Path) -> None:
    ann = read_voc(assets / "voc" / "other tool.xml", CLASSES)
    (obj,) = ann.objects
    assert obj.label == "drop" and obj.box == Box(1.5, 2.25, 10.7, 20.5)
    assert ann.depth == 3 and ann.folder == "" and ann.path is None and not ann.verified
    assert obj.extra_xml == ("<occluded>1</occluded>",)
    again = parse_voc(voc_to_bytes(ann))
    assert again.objects[0].extra_xml == obj.extra_xml
    assert box_to_voc(again.objects[0].box) == (2, 2, 11, 21)  # rounded, never truncated


def test_voc_edit_round_trip_compares_coordinates(tmp_path: Path) -> None:
    ann = read_voc(Path(__file__).parent / "assets" / "voc" / "0 (1).xml")
    moved = ann.with_objects([*ann.objects[:1]])
    write_voc(moved, tmp_path / "x.xml")
    assert _labels(read_voc(tmp_path / "x.xml")) == GOLDEN["0 (1).jpg"][:1]


VALID_HEAD = "<annotation><filename>a.jpg</filename><size><width>{w}</width><height>{h}</height></size>"


def _xml(body: str = "", w: str = "100", h: str = "50") -> bytes:
    return (VALID_HEAD.format(w=w, h=h) + body + "</annotation>").encode()


def _obj(name: str = "drop", box: tuple[str, str, str, str] = ("1", "2", "30", "40")) -> str:
    coords = "".join(f"<{k}>{v}</{k}>" for k, v in zip(("xmin", "ymin", "xmax", "ymax"), box, strict=True))
    return f"<object><name>{name}</name><bndbox>{coords}</bndbox></object>"


@pytest.mark.parametrize(
    ("data", "error", "element", "value"),
    [
        (b"<annotation><filename>a.jpg</filename></annotation>", MissingFieldError, "size", None),
        (_xml(w="0"), InvalidValueError, "size/width", "0"),
        (_xml(h="-5"), InvalidValueError, "size/height", "-5"),
        (_xml(w="abc"), InvalidValueError, "size/width", "'abc'"),
        (_xml(_obj(box=("1", "x", "30", "40"))), InvalidValueError, "object[1]/bndbox/ymin", "'x'"),
        (_xml(_obj(box=("1", "nan", "30", "40"))), InvalidValueError, "object[1]/bndbox/ymin", "'nan'"),
        (
            _xml(_obj(box=("30", "2", "30", "40"))),
            InvalidBoxError,
            "object[1]/bndbox",
            "[30.0, 2.0, 30.0, 40.0]",
        ),
        (_xml(_obj() + _obj(box=("1", "2", "101", "40"))), InvalidBoxError, "object[2]/bndbox", "101.0"),
        (_xml(_obj(name="  ")), UnknownClassError, "object[1]/name", "'  '"),
        (_xml(_obj(name="hole")), UnknownClassError, "object[1]/name", "'hole'"),
        (_xml("<object><name>drop</name></object>"), MissingFieldError, "object[1]/bndbox", None),
        (_xml().replace(b"a.jpg", b"a\xff.jpg"), InvalidValueError, "document", "UTF-8"),
        (b"<annotation><filename>a.jpg", InvalidValueError, "document", "malformed"),
    ],
)
def test_voc_errors_name_file_element_and_value(
    data: bytes, error: type[AnnotationError], element: str, value: str | None
) -> None:
    with pytest.raises(error) as caught:
        parse_voc(data, "bad.xml", CLASSES)
    message = str(caught.value)
    assert message.startswith("bad.xml: ")
    assert caught.value.element == element and f": {element}: " in message
    if value is not None:
        assert value in message


XXE = b"""<?xml version="1.0"?>
<!DOCTYPE annotation [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<annotation><filename>&xxe;</filename><size><width>1</width><height>1</height></size></annotation>"""
LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<annotation><filename>&lol3;</filename></annotation>"""


@pytest.mark.parametrize("payload", [XXE, LAUGHS, XXE.replace(b"<!DOCTYPE", b"<!DOCTYPE", 1).lower()])
def test_voc_rejects_xxe_and_billion_laughs(tmp_path: Path, payload: bytes) -> None:
    path = tmp_path / "evil.xml"
    path.write_bytes(payload)
    with pytest.raises((UnsafeXMLError, InvalidValueError)) as caught:
        read_voc(path)
    assert "evil.xml: document:" in str(caught.value)
    assert "root:" not in str(caught.value)  # nothing from /etc/passwd leaked into the message


def test_voc_rejects_oversized_files(tmp_path: Path) -> None:
    path = tmp_path / "huge.xml"
    path.write_bytes(b"<annotation>" + b" " * (5 * 1024 * 1024) + b"</annotation>")
    with pytest.raises(InvalidValueError, match="larger than"):
        read_voc(path)


# --- YOLO and CreateML ---------------------------------------------------------------------------------


def test_yolo_golden_matches_voc_golden(assets: Path) -> None:
    folder = assets / "yolo"
    classes = read_classes(folder / "classes.txt")
    assert classes == CLASSES
    for image_name, expected in GOLDEN.items():
        txt = folder / (Path(image_name).stem + ".txt")
        ann = read_yolo(txt, image_name, image_size(folder / image_name), classes)
        assert _labels(ann) == expected
        assert yolo_to_text(ann, classes) == txt.read_text(encoding="utf-8")


def test_yolo_errors(assets: Path) -> None:
    folder = assets / "yolo"
    bad = folder / "bad.txt"
    for content, element, fragment in [
        ("7 0.5 0.5 0.1 0.1\n", "line 1 class", "7"),
        ("0 0.5 0.5 0.1\n", "line 1", "class cx cy w h"),
        ("\n0 0.5 zz 0.1 0.1\n", "line 2 cy", "'zz'"),
        ("0 0.95 0.5 0.5 0.1\n", "line 1", "outside"),
    ]:
        bad.write_text(content, encoding="utf-8")
        with pytest.raises(AnnotationError) as caught:
            read_yolo(bad, "x.jpg", ImageSize(64, 48), CLASSES)
        assert caught.value.element == element and fragment in str(caught.value)
        assert str(caught.value).startswith(str(bad))


def test_createml_golden_matches_voc_golden(assets: Path) -> None:
    folder = assets / "createml"
    annotations, errors = read_createml(folder / "annotations.json", lambda name: image_size(folder / name))
    assert errors == []
    assert {a.filename: _labels(a) for a in annotations} == GOLDEN
    assert annotations[0].verified and not annotations[1].verified
    again, _ = read_createml_from_text(tmp := folder / "again.json", createml_to_text(annotations), folder)
    assert [_labels(a) for a in again] == [_labels(a) for a in annotations]
    assert tmp.exists()


def read_createml_from_text(path: Path, text: str, folder: Path) -> tuple[list[ImageAnnotation], list[AnnotationError]]:
    path.write_text(text, encoding="utf-8")
    return read_createml(path, lambda name: image_size(folder / name))


def test_createml_bad_entries_are_errors_and_the_rest_is_read(assets: Path) -> None:
    folder = assets / "createml"
    text = (folder / "annotations.json").read_text(encoding="utf-8")
    text = text.replace('"width": 2,', '"width": "two",')
    annotations, errors = read_createml_from_text(folder / "annotations.json", text, folder)
    assert len(annotations) == 2 and len(errors) == 1
    assert errors[0].element == "[0].annotations[2].coordinates.width" and "'two'" in str(errors[0])


# --- whole folders -------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["voc", "yolo", "createml"])
def test_read_folder_detects_each_format(assets: Path, fmt: str) -> None:
    folder = assets / fmt
    if fmt == "voc":
        (folder / "other tool.xml").unlink()
    assert detect_format(folder) == fmt
    scan = read_folder(folder)
    assert scan.errors == []
    assert {item.image_path.name: _labels(item.annotation) for item in scan.items} == GOLDEN


def test_read_folder_collects_errors_and_keeps_good_files(assets: Path) -> None:
    folder = assets / "voc"
    (folder / "broken.xml").write_bytes(_xml(_obj(box=("1", "x", "3", "4"))))
    shutil.copy(folder / "0 (1).jpg", folder / "a.jpg")
    # the size in the XML disagrees with the real image: FiftyOne would silently scale the boxes
    (folder / "wrong size.xml").write_bytes(
        (folder / "0 (1).xml").read_bytes().replace(b"<width>64</width>", b"<width>128</width>")
    )
    shutil.copy(folder / "0 (1).jpg", folder / "wrong size.jpg")
    scan = read_folder(folder, classes=CLASSES)
    problems = {Path(e.path).name: e for e in scan.errors}
    assert set(problems) == {"broken.xml", "wrong size.xml"}
    assert "128x48" in str(problems["wrong size.xml"]) and "64x48" in str(problems["wrong size.xml"])
    assert len(scan.items) == 4


def test_yolo_and_createml_writers_round_trip(assets: Path, tmp_path: Path) -> None:
    from fabricdata.formats.createml import write_createml
    from fabricdata.formats.yolo import write_classes, write_yolo

    scan = read_folder(assets / "voc", classes=CLASSES)
    annotations = [item.annotation for item in scan.items]
    out = tmp_path / "out"
    out.mkdir()
    write_classes(out / "classes.txt", CLASSES)
    for ann in annotations:
        write_yolo(ann, out / (Path(ann.filename).stem + ".txt"), CLASSES)
    write_createml(annotations, out / "annotations.json")
    classes = read_classes(out / "classes.txt")
    for ann in annotations:
        again = read_yolo(out / (Path(ann.filename).stem + ".txt"), ann.filename, ann.size, classes)
        assert [o.label for o in again.objects] == [o.label for o in ann.objects]
        for a, b in zip(again.objects, ann.objects, strict=True):  # six decimals: within a thousandth of a pixel
            assert all(abs(x - y) < 1e-3 for x, y in zip(a.box.as_tuple(), b.box.as_tuple(), strict=True))
    sizes = {ann.filename: ann.size for ann in annotations}
    back, errors = read_createml(out / "annotations.json", lambda name: sizes[name])
    assert errors == [] and [(a.filename, a.objects) for a in back] == [
        (
            a.filename,
            tuple(replace(o, difficult=False, truncated=False, pose="Unspecified", extra_xml=()) for o in a.objects),
        )
        for a in annotations
    ]  # CreateML keeps labels and boxes, not VOC's flags


@pytest.mark.parametrize("name", ["&lt;loc_1&gt;", "drop&lt;OD&gt;", "drop&#10;stain", "tab&#9;stop"])
def test_class_names_florence_cannot_hold_are_refused_naming_the_file(tmp_path: Path, name: str) -> None:
    """``<loc_1>``, ``drop<OD>`` or a name with a line break would break every Florence-2 export later."""
    from fabricdata.core.errors import UnknownClassError

    path = tmp_path / "bad.xml"
    path.write_bytes(_xml(_obj(name=name)))
    with pytest.raises(UnknownClassError) as caught:
        read_voc(path)
    assert caught.value.path == str(path) and caught.value.element == "object[1]/name"
    assert "Florence-2 labels cannot hold" in str(caught.value)


def test_createml_label_must_be_a_string(assets: Path) -> None:
    folder = assets / "createml"
    text = (folder / "annotations.json").read_text(encoding="utf-8")
    text = text.replace('"label": "wrinkle"', '"label": {"name": "wrinkle"}', 1)
    annotations, errors = read_createml_from_text(folder / "annotations.json", text, folder)
    assert len(annotations) == 2 and len(errors) == 1
    assert errors[0].element.endswith("annotations[0].label") and "must be a string" in str(errors[0])


# --- the contract every registered format passes -------------------------------------------------------------


def _sample(fmt: str, folder: Path) -> Path:
    from tests.formats_contract import SAMPLES

    SAMPLES[fmt](folder)
    return folder


def _noisy(objects: tuple[LabeledBox, ...], size: ImageSize) -> tuple[LabeledBox, ...]:
    """What the dataset hands back for ``objects``: their boxes through FiftyOne's relative coordinates."""
    from fabricdata.core.boxes import box_to_fiftyone, fiftyone_to_box

    return tuple(replace(obj, box=fiftyone_to_box(box_to_fiftyone(obj.box, size), size)) for obj in objects)


def _edit(item: FolderItem, objects: tuple[LabeledBox, ...] | None = None) -> SampleLabels:
    ann = item.annotation
    return SampleLabels(
        item.image_path,
        ann.size,
        _noisy(ann.objects, ann.size) if objects is None else objects,
        verified=ann.verified,
        class_file=item.class_file,
        class_names=item.class_names,
    )


def _moved(obj: LabeledBox, dx: float) -> LabeledBox:
    box = obj.box
    return replace(obj, box=Box(box.xmin + dx, box.ymin, box.xmax + dx, box.ymax))


@pytest.mark.parametrize("fmt", registry.names())
class TestEveryRegisteredFormat:
    """Detect, read, write back and write anew: what discovery, import, write-back and prelabel rely on, for each
    format in the registry (a format without a sample in tests/formats_contract.py fails here)."""

    def test_has_a_sample_folder(self, fmt: str) -> None:
        from tests.formats_contract import SAMPLES

        assert fmt in SAMPLES, f"add a sample folder of {fmt} to tests/formats_contract.py"

    def test_detects_its_files(self, fmt: str, tmp_path: Path) -> None:
        folder = _sample(fmt, tmp_path / fmt)
        assert detect_format(folder) == fmt
        assert {label.format for label in discover(folder).labels} == {fmt}

    def test_reads_every_box_with_its_coordinates(self, fmt: str, tmp_path: Path) -> None:
        from tests.formats_contract import BOXES, READ_TOLERANCE

        scan = read_folder(_sample(fmt, tmp_path / fmt), fmt)
        assert scan.errors == [] and {item.format for item in scan.items} == {fmt}
        got = {
            item.image_path.name: [(o.label, *o.box.as_tuple()) for o in item.annotation.objects] for item in scan.items
        }
        assert set(got) == set(BOXES)
        for name, boxes in BOXES.items():
            for (label, *want), (read_label, *read) in zip(boxes, got[name], strict=True):
                assert label == read_label
                assert max(abs(a - b) for a, b in zip(want, read, strict=True)) <= READ_TOLERANCE.get(fmt, 1e-9)

    def test_write_back_of_unedited_labels_changes_no_byte(self, fmt: str, tmp_path: Path) -> None:
        scan = read_folder(_sample(fmt, tmp_path / fmt), fmt)
        format_ = registry.get(fmt)
        for path in {item.annotation_path for item in scan.items}:
            items = [item for item in scan.items if item.annotation_path == path]
            data = path.read_bytes()
            back = format_.write_back(data, path, [_edit(item) for item in items])
            assert back.data == data and back.companions == []
            for item in items:
                written = back.results[item.image_path]
                assert isinstance(written, Written) and written.annotation_hash == item.content_hash
                assert written.objects == item.annotation.objects

    def test_write_back_of_one_edit_changes_that_box_only(self, fmt: str, tmp_path: Path) -> None:
        scan = read_folder(_sample(fmt, tmp_path / fmt), fmt)
        item = next(item for item in scan.items if item.image_path.name == "a.png")
        objects = _noisy(item.annotation.objects, item.annotation.size)
        edited = (objects[0], _moved(objects[1], 3.25), objects[2])
        back = registry.get(fmt).write_back(
            item.annotation_path.read_bytes(), item.annotation_path, [_edit(item, edited)]
        )
        written = back.results[item.image_path]
        assert isinstance(written, Written)
        item.annotation_path.write_bytes(back.data)
        again = {i.image_path.name: i for i in read_folder(item.annotation_path.parent, fmt).items}
        got = again["a.png"].annotation.objects
        assert got == written.objects
        assert got[0] == item.annotation.objects[0] and got[2] == item.annotation.objects[2]  # untouched, exactly
        assert abs(got[1].box.xmin - (item.annotation.objects[1].box.xmin + 3.25)) <= 0.5  # in the file's style
        other = next(i for i in scan.items if i.image_path.name == "b.png")
        assert again["b.png"].content_hash == other.content_hash and again["b.png"].annotation == other.annotation

    def test_write_back_removes_and_adds_boxes(self, fmt: str, tmp_path: Path) -> None:
        scan = read_folder(_sample(fmt, tmp_path / fmt), fmt)
        item = next(item for item in scan.items if item.image_path.name == "a.png")
        objects = _noisy(item.annotation.objects, item.annotation.size)
        added = LabeledBox("broken", Box(100.0, 100.0, 164.0, 150.0))
        back = registry.get(fmt).write_back(
            item.annotation_path.read_bytes(), item.annotation_path, [_edit(item, (objects[0], objects[2], added))]
        )
        for companion, content in back.companions:
            companion.write_bytes(content)
        item.annotation_path.write_bytes(back.data)
        got = next(i for i in read_folder(item.annotation_path.parent, fmt).items if i.image_path == item.image_path)
        objects = got.annotation.objects
        assert [o.label for o in objects] == ["drop", "drop", "broken"]
        assert objects[:2] == (item.annotation.objects[0], item.annotation.objects[2])
        assert all(abs(a - b) <= 0.5 for a, b in zip(objects[2].box.as_tuple(), added.box.as_tuple(), strict=True))

    def test_a_verified_draft_becomes_a_new_file_read_back_as_written(self, fmt: str, tmp_path: Path) -> None:
        folder = tmp_path / "drafts"
        folder.mkdir()
        Image.new("RGB", (200, 100)).save(folder / "new.png")
        objects = (LabeledBox("drop", Box(10.3, 20.6, 60.2, 70.7)), LabeledBox("wrinkle", Box(0.0, 0.0, 200.0, 33.5)))
        draft = SampleLabels(folder / "new.png", ImageSize(200, 100), objects, verified=True, class_names=CLASSES)
        new = registry.get(fmt).new_file(draft)
        for companion, content in new.companions:
            companion.write_bytes(content)
        new.path.write_bytes(new.data)
        [item] = read_folder(folder, fmt).items
        assert item.annotation.objects == new.written.objects and item.content_hash == new.written.annotation_hash
        assert [o.label for o in item.annotation.objects] == ["drop", "wrinkle"]
        for got, want in zip(item.annotation.objects, objects, strict=True):
            assert all(abs(a - b) <= 0.5 for a, b in zip(got.box.as_tuple(), want.box.as_tuple(), strict=True))
        try:  # never a second file (or entry) for one image
            again = registry.get(fmt).new_file(draft)
        except (FileExistsError, WriteBackConflictError):
            return
        assert again.replaces is None and again.path.exists()  # created only where none is: write-back's atomic link
