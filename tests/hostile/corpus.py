"""A generated corpus of hostile and malformed inputs, one folder per case.

Every case folder holds the case's files plus one good LabelImg pair (``good.png`` + ``good.xml``), so each
test can check both halves of the promise: the bad file gets one clear line naming it, the good file still
imports. ``expect`` says what the case should produce: ``error`` (one error naming ``culprit``), ``ok`` (the
case's image imports too), ``skip`` (nothing from the case is imported, nothing fails).
"""

from __future__ import annotations

import io
import json
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

W, H = 64, 48


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Path], None]
    expect: str  # "error" | "ok" | "skip"
    #: the file (relative to the case folder) the error must name
    culprit: str = ""


def png(path: Path, size: tuple[int, int] = (W, H), mode: str = "RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, 128 if mode != "RGB" else (120, 110, 100)).save(path)
    return path


def voc(filename: str, objects: str = "", size: tuple[int, int] = (W, H), head: str = "") -> str:
    if not objects:
        objects = obj("wrinkle", 4, 4, 30, 20)
    return (
        f"{head}<annotation><folder>f</folder><filename>{filename}</filename>"
        f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>{objects}</annotation>"
    )


def obj(name: str, x1: object, y1: object, x2: object, y2: object) -> str:
    return (
        f"<object><name>{name}</name><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin>"
        f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
    )


def good_pair(folder: Path) -> None:
    png(folder / "good.png")
    (folder / "good.xml").write_text(voc("good.png"))


def _voc_case(name: str, xml: str | bytes, expect: str = "error", image: bool = True) -> Case:
    def build(folder: Path) -> None:
        if image:
            png(folder / f"{name}.png")
        path = folder / f"{name}.xml"
        path.write_bytes(xml if isinstance(xml, bytes) else xml.encode("utf-8"))

    return Case(f"voc-{name}", build, expect, f"{name}.xml")


def _yolo_case(name: str, text: str | bytes, expect: str = "error") -> Case:
    def build(folder: Path) -> None:
        sub = folder / "yolo"
        png(sub / f"{name}.png")
        (sub / "classes.txt").write_text("wrinkle\ndrop\nbroken\n")
        (sub / f"{name}.txt").write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))

    return Case(f"yolo-{name}", build, expect, f"yolo/{name}.txt")


def _createml_case(name: str, data: object, expect: str = "error") -> Case:
    def build(folder: Path) -> None:
        sub = folder / "createml"
        png(sub / f"{name}.png")
        raw = data if isinstance(data, bytes) else json.dumps(data).encode("utf-8")
        (sub / "annotations.json").write_bytes(raw)

    return Case(f"createml-{name}", build, expect, "createml/annotations.json")


def _cm(name: str, annotations: object, **extra: object) -> list[object]:
    return [{"image": f"{name}.png", "annotations": annotations, **extra}]


def _cm_box(label: object = "drop", **coords: object) -> dict[str, object]:
    box = {"x": 20, "y": 20, "width": 10, "height": 10}
    box.update(coords)
    return {"label": label, "coordinates": box}


def _image_case(name: str, write: Callable[[Path], None], suffix: str = ".png", expect: str = "error") -> Case:
    def build(folder: Path) -> None:
        write(folder / f"{name}{suffix}")
        (folder / f"{name}.xml").write_text(voc(f"{name}{suffix}"))

    culprit = f"{name}{suffix}"
    return Case(f"image-{name}", build, expect, culprit)


def _bomb_png(path: Path) -> None:
    """A valid PNG signature and IHDR claiming 100000x100000 pixels, with a tiny (wrong) IDAT."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def _truncated_jpeg(path: Path) -> None:
    buffer = io.BytesIO()
    Image.effect_noise((W, H), 40).convert("RGB").save(buffer, "JPEG", quality=95)
    data = buffer.getvalue()
    path.write_bytes(data[: len(data) // 2])


def _truncated_png(path: Path) -> None:
    buffer = io.BytesIO()
    Image.effect_noise((W, H), 40).convert("RGB").save(buffer, "PNG")
    data = buffer.getvalue()
    path.write_bytes(data[: len(data) * 2 // 3])


def _fs_case(name: str, build: Callable[[Path], None], expect: str, culprit: str = "") -> Case:
    return Case(f"fs-{name}", build, expect, culprit)


def _dir_named_xml(folder: Path) -> None:
    (folder / "x.xml").mkdir()
    png(folder / "x.png")


def _symlink_loop(folder: Path) -> None:
    png(folder / "loop.png")
    (folder / "loop.xml").symlink_to("loop.xml")


def _fifo(folder: Path) -> None:
    png(folder / "pipe.png")
    os.mkfifo(folder / "pipe.xml")


def _dev_zero(folder: Path) -> None:
    png(folder / "zero.png")
    (folder / "zero.xml").symlink_to("/dev/zero")


def _outside_link(folder: Path) -> None:
    outside = folder.parent.parent / f"outside-{os.urandom(4).hex()}"  # above the case folder and its parent
    outside.mkdir()
    (outside / "elsewhere.xml").write_text(voc("elsewhere.png"))
    png(folder / "elsewhere.png")
    (folder / "elsewhere.xml").symlink_to(outside / "elsewhere.xml")


def _inside_link(folder: Path) -> None:
    sub = folder / "real"
    png(sub / "linked.png")
    (sub / "linked.xml").write_text(voc("linked.png"))
    (folder / "linked.xml").symlink_to(sub / "linked.xml")
    png(folder / "linked.png")


def _dangling(folder: Path) -> None:
    (folder / "dangling.xml").symlink_to(folder / "nowhere.xml")
    png(folder / "dangling.png")


def _unreadable(folder: Path) -> None:
    png(folder / "secret.png")
    path = folder / "secret.xml"
    path.write_text(voc("secret.png"))
    path.chmod(0)


def _long_name(folder: Path) -> None:
    stem = "l" * 240
    png(folder / f"{stem}.png")
    (folder / f"{stem}.xml").write_text(voc(f"{stem}.png"))


def _odd_names(folder: Path) -> None:
    for stem in ("with space", "ünïcødé-織物", "emoji-🧵", "semi;colon&amp", "quote'\"", "#hash%20"):
        png(folder / f"{stem}.png")
        (folder / f"{stem}.xml").write_text(voc(f"{stem}.png".replace("&", "&amp;").replace('"', "&quot;")))


def _uppercase(folder: Path) -> None:
    png(folder / "UPPER.PNG")
    (folder / "UPPER.XML").write_text(voc("UPPER.PNG"))


def _duplicate_voc(folder: Path) -> None:
    png(folder / "shared.png")
    (folder / "first.xml").write_text(voc("shared.png"))
    (folder / "second.xml").write_text(voc("shared.png"))


def _dir_named_image(folder: Path) -> None:
    (folder / "folder.png").mkdir()
    (folder / "folder.xml").write_text(voc("folder.png"))


def _traversal(folder: Path) -> None:
    png(folder / "trav.png")
    (folder / "trav.xml").write_text(voc("../../../../etc/passwd"))


_XXE_FILE = '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
_XXE_NET = '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "http://127.0.0.1:9/x">]>'
_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY l0 "lol">'
    + "".join(
        f'<!ENTITY l{i} "{"&l" + str(i - 1) + ";" * 1}' + f'{("&l" + str(i - 1) + ";") * 9}">' for i in range(1, 10)
    )
    + "]>"
)
_QUADRATIC = '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY big "' + "x" * 50_000 + '">]>'


def cases() -> list[Case]:
    n = "wrinkle"
    many_objects = "".join(obj(n, 1, 1, 2, 2) for _ in range(25_000))
    out = [
        _voc_case("xxe-file", voc("xxe-file.png", obj("&x;", 1, 1, 5, 5), head=_XXE_FILE)),
        _voc_case("xxe-net", voc("xxe-net.png", obj("&x;", 1, 1, 5, 5), head=_XXE_NET)),
        _voc_case("billion-laughs", voc("billion-laughs.png", obj("&l9;", 1, 1, 5, 5), head=_LAUGHS)),
        _voc_case("quadratic", voc("quadratic.png", obj("&big;" * 200, 1, 1, 5, 5), head=_QUADRATIC)),
        _voc_case("binary", os.urandom(2048)),
        _voc_case("empty", b""),
        _voc_case("truncated", voc("truncated.png")[:90]),
        _voc_case("wrong-root", "<html><body>not a label</body></html>"),
        _voc_case("no-size", "<annotation><filename>no-size.png</filename>" + obj(n, 1, 1, 5, 5) + "</annotation>"),
        _voc_case("size-text", voc("size-text.png", size=("abc", H))),  # type: ignore[arg-type]
        _voc_case("size-negative", voc("size-negative.png", size=(-64, H))),
        _voc_case("size-zero", voc("size-zero.png", size=(0, 0))),
        _voc_case("coord-text", voc("coord-text.png", obj(n, "left", 1, 5, 5))),
        _voc_case("coord-reversed", voc("coord-reversed.png", obj(n, 30, 1, 5, 5))),
        _voc_case("coord-outside", voc("coord-outside.png", obj(n, 1, 1, 500, 5))),
        _voc_case("coord-nan", voc("coord-nan.png", obj(n, "nan", 1, 5, 5))),
        _voc_case("coord-inf", voc("coord-inf.png", obj(n, 1, 1, "inf", 5))),
        _voc_case("coord-huge", voc("coord-huge.png", obj(n, 1, 1, "1e308", 5))),
        _voc_case("coord-hex", voc("coord-hex.png", obj(n, "0x10", 1, 20, 5))),
        _voc_case("no-bndbox", voc("no-bndbox.png", f"<object><name>{n}</name></object>")),
        _voc_case(
            "no-name",
            voc(
                "no-name.png",
                "<object><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object>",
            ),
        ),
        _voc_case("empty-name", voc("empty-name.png", obj("", 1, 1, 5, 5))),
        _voc_case("name-loc-token", voc("name-loc-token.png", obj("&lt;loc_1&gt;", 1, 1, 5, 5))),
        _voc_case("name-task-token", voc("name-task-token.png", obj("drop&lt;OD&gt;", 1, 1, 5, 5))),
        _voc_case("name-newline", voc("name-newline.png", obj("drop&#10;wrinkle", 1, 1, 5, 5))),
        _voc_case("name-control", voc("name-control.png", obj("drop\x07", 1, 1, 5, 5))),
        _voc_case("name-tab", voc("name-tab.png", obj("drop&#9;x", 1, 1, 5, 5))),
        _voc_case("oversized", voc("oversized.png", obj(n, 1, 1, 5, 5) + "<!--" + "x" * (5 << 20) + "-->")),
        _voc_case("too-many-objects", voc("too-many-objects.png", many_objects)),
        _voc_case("deep-nesting", voc("deep-nesting.png", "<x>" * 5000 + "</x>" * 5000)),
        # declared encodings are honoured (with a byte-order mark for UTF-16); undeclared or unknown ones are not
        _voc_case("utf16", voc("utf16.png", head='<?xml version="1.0" encoding="UTF-16"?>').encode("utf-16"), "ok"),
        _voc_case("utf16-no-bom", voc("utf16-no-bom.png", head='<?xml version="1.0"?>').encode("utf-16-le")),
        _voc_case(
            "latin1",
            voc("latin1.png", obj(n, 1, 1, 5, 5), head='<?xml version="1.0" encoding="ISO-8859-1"?>')
            .encode("latin-1")
            .replace(b"<folder>f<", b"<folder>\xe9t\xe9<"),
            "ok",
        ),
        _voc_case("latin1-undeclared", voc("latin1-undeclared.png").encode().replace(b"<folder>f<", b"<folder>\xe9<")),
        _voc_case("unknown-encoding", voc("unknown-encoding.png", head='<?xml version="1.0" encoding="x-nope"?>')),
        _voc_case("codec-not-text", voc("codec-not-text.png", head='<?xml version="1.0" encoding="rot13"?>')),
        _voc_case(
            "utf7-doctype",
            voc("utf7-doctype.png", head='<?xml version="1.0" encoding="utf-7"?>+ADw-!DOCTYPE a+AD4-'),
        ),
        _voc_case("bom", b"\xef\xbb\xbf" + voc("bom.png").encode(), "ok"),
        _voc_case("crlf", voc("crlf.png").replace("><", ">\r\n<"), "ok"),
        _voc_case("size-mismatch", voc("size-mismatch.png", size=(640, 480))),
        _voc_case("no-image", voc("no-image.png"), "skip", image=False),
        _voc_case("pi-and-comments", "<?pi x?><!-- c -->" + voc("pi-and-comments.png"), "ok"),
        _voc_case("float-coords", voc("float-coords.png", obj(n, "1.5", "2.25", "30.75", "20.5")), "ok"),
        _yolo_case("class-out-of-range", "7 0.5 0.5 0.2 0.2\n"),
        _yolo_case("class-negative", "-1 0.5 0.5 0.2 0.2\n"),
        _yolo_case("class-text", "drop 0.5 0.5 0.2 0.2\n"),
        _yolo_case("coord-text", "0 half 0.5 0.2 0.2\n"),
        _yolo_case("few-fields", "0 0.5 0.5\n"),
        _yolo_case("coord-over-one", "0 1.5 0.5 0.2 0.2\n"),
        _yolo_case("coord-nan", "0 nan 0.5 0.2 0.2\n"),
        _yolo_case("zero-width", "0 0.5 0.5 0 0.2\n"),
        _yolo_case("binary", os.urandom(512)),
        _yolo_case("huge", "0 0.5 0.5 0.2 0.2\n" * 200_000),
        _yolo_case("polygon", "0 0.1 0.1 0.5 0.1 0.5 0.5 0.1 0.5 0.2\n"),  # an odd number of coordinates
        _yolo_case("polygon-ok", "0 0.1 0.1 0.5 0.1 0.5 0.5 0.1 0.5\n", "ok"),  # Ultralytics segment: its box
        _yolo_case("polygon-outside", "0 0.1 0.1 1.5 0.1 0.5 0.5\n"),
        _yolo_case("empty", "", "ok"),
        _yolo_case("crlf", "0 0.5 0.5 0.2 0.2\r\n1 0.3 0.3 0.1 0.1\r\n", "ok"),
        _yolo_case("blank-lines", "\n0 0.5 0.5 0.2 0.2\n\n   \n", "ok"),
        _createml_case("label-object", _cm("label-object", [_cm_box({"name": "drop"})])),
        _createml_case("label-number", _cm("label-number", [_cm_box(3)])),
        _createml_case("no-coordinates", _cm("no-coordinates", [{"label": "drop"}])),
        _createml_case("coord-string", _cm("coord-string", [_cm_box(x="20")])),
        _createml_case("negative-width", _cm("negative-width", [_cm_box(width=-4)])),
        _createml_case("not-a-list", {"image": "not-a-list.png"}, "skip"),  # a JSON object: not LabelImg's
        _createml_case("malformed", b'[{"image": "malformed.png", "annotations": [}'),
        _createml_case("not-utf8", b'[{"image": "not-utf8.png", "annotations": [], "x": "\xff"}]'),
        _createml_case("annotations-object", _cm("annotations-object", {"label": "drop"})),
        _createml_case("duplicate-entry", _cm("duplicate-entry", [_cm_box()]) * 2),
        _createml_case("huge-number", _cm("huge-number", [_cm_box(x=1e308)])),
        _createml_case("ok", _cm("ok", [_cm_box()]), "ok"),
        _image_case("bomb", _bomb_png),
        _image_case("truncated-jpeg", _truncated_jpeg, ".jpg"),
        _image_case("truncated-png", _truncated_png),
        _image_case("zero-bytes", lambda p: p.write_bytes(b"")),
        _image_case("text-as-jpeg", lambda p: p.write_text("not an image"), ".jpg"),
        _image_case("grey16", lambda p: png(p, mode="I;16"), expect="ok"),
        _image_case("cmyk", lambda p: Image.new("CMYK", (W, H)).save(p, "JPEG"), ".jpg", "ok"),
        _fs_case("dir-named-xml", _dir_named_xml, "skip"),
        _fs_case("symlink-loop", _symlink_loop, "error", "loop.xml"),
        _fs_case("fifo", _fifo, "error", "pipe.xml"),
        _fs_case("dev-zero", _dev_zero, "error", "zero.xml"),
        _fs_case("outside-link", _outside_link, "error", "elsewhere.xml"),
        _fs_case("inside-link", _inside_link, "ok"),
        _fs_case("dangling-link", _dangling, "error", "dangling.xml"),
        _fs_case("unreadable", _unreadable, "error", "secret.xml"),
        _fs_case("long-name", _long_name, "ok"),
        _fs_case("odd-names", _odd_names, "ok"),
        _fs_case("uppercase", _uppercase, "ok"),
        _fs_case("duplicate-voc", _duplicate_voc, "error", "second.xml"),
        _fs_case("dir-named-image", _dir_named_image, "skip"),
        _fs_case("path-traversal", _traversal, "ok"),  # paired by stem, never by the path it names
    ]
    return out


def build_case(case: Case, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    good_pair(folder)
    case.build(folder)
    return folder
