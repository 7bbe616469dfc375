"""Property-based fuzzing of every reader of outside input: whatever the bytes, the VOC, YOLO and CreateML
readers and the Florence-2 text parser either return a result or raise a typed fabricdata error (never a
KeyError, IndexError, ValueError, lxml error, ...)."""

from __future__ import annotations

import contextlib
import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fabricdata.core import florence
from fabricdata.core.boxes import ImageSize
from fabricdata.core.errors import AnnotationError
from fabricdata.formats.createml import parse_createml, read_createml_entry
from fabricdata.formats.voc import parse_voc
from fabricdata.formats.yolo import read_yolo_bytes

SIZE = ImageSize(640, 480)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_numbers = st.one_of(
    st.integers(-(10**6), 10**6).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", " ", "nan", "1e999", "0x1f", "-0", "1_000", "１２", "3.5.1", "1e-400"]),
    st.text(max_size=8),
)
_names = st.one_of(st.sampled_from(["wrinkle", "drop", "broken-weft", ""]), st.text(max_size=12))


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@st.composite
def voc_documents(draw: st.DrawFn) -> bytes:
    """VOC files with every value drawn from hostile alternatives, elements sometimes missing or repeated."""
    parts = ["<annotation>"]
    if draw(st.booleans()):
        parts.append(f"<filename>{_escape(draw(st.text(max_size=20)))}</filename>")
    if draw(st.booleans()):
        w, h, d = (_escape(draw(_numbers)) for _ in range(3))
        parts.append(f"<size><width>{w}</width><height>{h}</height><depth>{d}</depth></size>")
    for _ in range(draw(st.integers(0, 4))):
        coords = "".join(
            f"<{tag}>{_escape(draw(_numbers))}</{tag}>"
            for tag in draw(st.lists(st.sampled_from(["xmin", "ymin", "xmax", "ymax"]), max_size=6))
        )
        name = f"<name>{_escape(draw(_names))}</name>" if draw(st.booleans()) else ""
        extra = draw(st.sampled_from(["", "<difficult>x</difficult>", "<truncated>2</truncated>", "<bndbox/>"]))
        parts.append(f"<object>{name}<bndbox>{coords}</bndbox>{extra}</object>")
    parts.append("</annotation>")
    text = "".join(parts)
    cut = draw(st.integers(0, len(text)))
    return (text if draw(st.booleans()) else text[:cut]).encode("utf-8")


@FUZZ
@given(st.one_of(voc_documents(), st.binary(max_size=300)))
def test_voc_reader_raises_only_typed_errors(data: bytes) -> None:
    with contextlib.suppress(AnnotationError):
        parse_voc(data, "fuzz.xml")


_yolo_lines = st.lists(
    st.one_of(
        st.lists(_numbers, min_size=0, max_size=7).map(" ".join),
        st.text(max_size=30),
    ),
    max_size=6,
)


@FUZZ
@given(st.one_of(_yolo_lines.map(lambda lines: "\n".join(lines).encode("utf-8")), st.binary(max_size=200)))
def test_yolo_reader_raises_only_typed_errors(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.txt"
        path.write_bytes(data)
        with contextlib.suppress(AnnotationError):
            read_yolo_bytes(path, "fuzz.png", SIZE, ("wrinkle", "drop", "broken-weft"))


_json = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10)),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
_entry = st.fixed_dictionaries(
    {"image": st.one_of(st.just("fuzz.png"), _json)},
    optional={
        "annotations": st.one_of(
            _json,
            st.lists(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "label": st.one_of(_names, _json),
                        "coordinates": st.one_of(
                            _json,
                            st.fixed_dictionaries(
                                {},
                                optional={k: st.one_of(st.floats(), st.integers(), _json) for k in "xy"}
                                | {k: st.one_of(st.floats(), st.integers(), _json) for k in ("width", "height")},
                            ),
                        ),
                    },
                ),
                max_size=4,
            ),
        ),
        "verified": _json,
    },
)


@FUZZ
@given(st.one_of(st.lists(_entry, max_size=3).map(json.dumps), _json.map(json.dumps), st.text(max_size=60)))
def test_createml_reader_raises_only_typed_errors(text: str) -> None:
    try:
        entries = parse_createml(text.encode("utf-8"), "fuzz.json")
        for index, entry in enumerate(entries):
            read_createml_entry("fuzz.json", index, entry, SIZE)
    except AnnotationError:
        pass


@FUZZ
@given(st.text(max_size=200))
def test_florence_parser_never_raises_on_any_text(text: str) -> None:
    for label, box in florence.parse(text, SIZE):
        assert isinstance(label, str)
        assert 0 <= box.xmin < box.xmax <= SIZE.width and 0 <= box.ymin < box.ymax <= SIZE.height
