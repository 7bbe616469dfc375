"""Pascal VOC write-back: an XML label file edited in place.

Untouched ``<object>`` elements keep their exact bytes (``45.70000076293945`` stays so, whitespace and line ends
too); an edited one has only the texts that changed replaced (coordinates in the file's own number style: integers
in a LabelImg file, decimals in a file of decimals); a removed one goes with its line; a new one is laid out like its
neighbours. The encoding the file declares is kept (gb2312 stays gb2312, UTF-16 keeps its byte order and mark).
The result is read back and compared with what was meant; a file whose structure cannot be edited in place (an
``<object>`` in a comment, ...) is rewritten whole in LabelImg's layout, in the same number style.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from xml.sax.saxutils import escape

from fabricdata.core.annotation import LabeledBox
from fabricdata.core.boxes import Box
from fabricdata.core.errors import AnnotationError
from fabricdata.core.fileio import sha256_bytes
from fabricdata.formats.edits import SAME_BOX_PX, NumberStyle, Pair, align, same_object, splice
from fabricdata.formats.registry import SampleLabels, WriteBack, Written
from fabricdata.formats.voc import LABELIMG_STYLE, VOC_COORDS, decode_xml, parse_voc, voc_to_bytes

_OBJECT_BLOCK = re.compile(r"<object\b[^>]*>.*?</object\s*>", re.S)
_BNDBOX = re.compile(r"<bndbox\b[^>]*>.*?</bndbox\s*>", re.S)
_ROOT_TAG = re.compile(r"<annotation\b[^>]*?(/?)>")
_VERIFIED_ATTR = re.compile(r"""\s+verified\s*=\s*(["'])[^"']*\1""")
_WIDE = {
    codecs.BOM_UTF32_LE: "utf-32-le",
    codecs.BOM_UTF32_BE: "utf-32-be",
    codecs.BOM_UTF16_LE: "utf-16-le",
    codecs.BOM_UTF16_BE: "utf-16-be",
}
#: decimals an edited coordinate of a file of decimals gets at most (pixels)
MAX_DECIMALS = 6


def _element(tag: str) -> re.Pattern[str]:
    return re.compile(rf"(<{tag}\s*>)([^<]*)(</{tag}\s*>)")


class XmlText:
    """An XML file's text for editing in place: for ASCII-compatible encodings (UTF-8, gb2312, latin-1, ...) its
    bytes seen as latin-1 (one character per byte, so every untouched byte is written back as it was); for
    UTF-16/32 the decoded text, encoded back with the same byte order and byte-order mark."""

    def __init__(self, data: bytes, path: str | Path | None) -> None:
        self.bom = next((bom for bom in _WIDE if data.startswith(bom)), b"")
        if self.bom:
            self.codec = _WIDE[self.bom]
            self.text = data[len(self.bom) :].decode(self.codec)
        else:
            codec = decode_xml(data, path)[1]
            self.codec = "utf-8" if codec == "utf-8-sig" else codec
            self.text = data.decode("latin-1")

    def piece(self, text: str, markup: bool = False) -> str:
        """``text`` (escaped for XML unless it is ``markup``) as it appears in :attr:`text` once encoded in the
        file's encoding."""
        text = text if markup else escape(text)
        return text if self.bom else text.encode(self.codec, errors="xmlcharrefreplace").decode("latin-1")

    def to_bytes(self, text: str) -> bytes:
        return self.bom + text.encode(self.codec) if self.bom else text.encode("latin-1")


def voc_write_back(data: bytes, path: str | Path, edit: SampleLabels) -> WriteBack:
    """The VOC file ``path`` (its bytes ``data``) holding ``edit``'s objects and verified flag (see the module
    docstring).

    Raises:
        AnnotationError: ``data`` is not a readable VOC file.
    """
    old = parse_voc(data, path)
    doc = XmlText(data, path)
    blocks = [match.span() for match in _OBJECT_BLOCK.finditer(doc.text)]
    texts = [text for start, end in blocks for text in _coordinate_texts(doc.text[start:end])]
    style = NumberStyle.of(texts, MAX_DECIMALS, LABELIMG_STYLE)
    pairs = align(old.objects, edit.objects)
    wanted = intended(old.objects, edit.objects, pairs, style)
    new_bytes = b""
    if len(blocks) == len(old.objects):
        text = _edited_text(doc, blocks, old.objects, wanted, pairs, style)
        new_bytes = doc.to_bytes(_verified_text(text, edit.verified) if old.verified != edit.verified else text)
    if not new_bytes or not _reads_as(new_bytes, path, wanted, edit.verified):
        new_bytes = voc_to_bytes(replace(old, objects=tuple(wanted), verified=edit.verified), style)
    objects = parse_voc(new_bytes, path).objects
    return WriteBack(new_bytes, {edit.image: Written(sha256_bytes(new_bytes), objects)})


def _coordinate_texts(block: str) -> list[str]:
    box = _BNDBOX.search(block)
    if box is None:
        return []
    found = (_element(name).search(box.group()) for name in VOC_COORDS)
    return [match.group(2) for match in found if match]


def intended(
    old: Sequence[LabeledBox], new: Sequence[LabeledBox], pairs: Sequence[Pair], style: NumberStyle
) -> list[LabeledBox]:
    """What the file is meant to say for each object of ``new``: an untouched one exactly what it said, an edited
    one its changed coordinates in ``style`` (the others as they were), a new one every coordinate in ``style``."""
    wanted: list[LabeledBox] = list(new)
    for i, j in pairs:
        if j is None:
            continue
        values = new[j].box.as_tuple()
        if i is None:
            wanted[j] = replace(new[j], box=Box(*(style.value(v) for v in values)))
        elif same_object(old[i], new[j]):
            wanted[j] = old[i]
        else:
            kept = old[i].box.as_tuple()
            box = Box(*(a if abs(a - b) <= SAME_BOX_PX else style.value(b) for a, b in zip(kept, values, strict=True)))
            wanted[j] = replace(new[j], box=box)
    return wanted


def _reads_as(data: bytes, path: str | Path | None, wanted: Sequence[LabeledBox], verified: bool) -> bool:
    """True when the edited file reads back as meant (``wanted``, ``verified``)."""
    try:
        read = parse_voc(data, path)
    except AnnotationError:
        return False
    if len(read.objects) != len(wanted) or read.verified != verified:
        return False
    return all(same_object(got, want) for got, want in zip(read.objects, wanted, strict=True))


def _edited_text(
    doc: XmlText,
    blocks: Sequence[tuple[int, int]],
    old: Sequence[LabeledBox],
    wanted: Sequence[LabeledBox],
    pairs: Sequence[Pair],
    style: NumberStyle,
) -> str:
    """The file's text with its ``old`` objects (at ``blocks``) turned into ``wanted`` as ``pairs`` say."""
    text = doc.text
    layout = _Layout.of(text, blocks)
    replacements: list[tuple[int, int, str]] = []
    after: int | None = None  # where the last object of the file seen so far ended
    for i, j in pairs:
        if i is not None:
            start, end = blocks[i]
            if j is None:
                replacements.append((_line_start(text, start), end, ""))
            elif wanted[j] != old[i]:
                block = _edited_block(doc, text[start:end], old[i], wanted[j], style)
                replacements.append((start, end, block or layout.object_text(doc, wanted[j], style)))
            after = end
        elif j is not None:
            block = layout.object_text(doc, wanted[j], style)
            if after is None and blocks:
                replacements.append((blocks[0][0], blocks[0][0], block + layout.newline + layout.indent))
            else:
                at = after if after is not None else len(text[: text.rindex("</annotation")].rstrip())
                replacements.append((at, at, layout.newline + layout.indent + block))
    return splice(text, replacements)


def _line_start(text: str, start: int) -> int:
    """Where the whitespace before ``start`` begins (a removed element takes its line with it)."""
    return len(text[:start].rstrip(" \t\r\n"))


def _edited_block(doc: XmlText, block: str, old: LabeledBox, new: LabeledBox, style: NumberStyle) -> str | None:
    """``block`` (old's ``<object>`` element) with the texts that differ in ``new`` replaced; None where an
    element to change is missing or pose/caption changed (then the element is written whole)."""
    if (old.pose, old.caption) != (new.pose, new.caption):
        return None
    out: str | None = block
    if old.label != new.label:
        out = _set_text(out, "name", doc.piece(new.label))
    for name in ("truncated", "difficult"):
        if out is not None and getattr(old, name) != getattr(new, name):
            out = _set_text(out, name, "1" if getattr(new, name) else "0")
    changed = [
        (name, value)
        for name, before, value in zip(VOC_COORDS, old.box.as_tuple(), new.box.as_tuple(), strict=True)
        if before != value
    ]
    if out is None or not changed:
        return out
    box = _BNDBOX.search(out)
    if box is None:
        return None
    inner: str | None = box.group()
    for name, value in changed:
        inner = _set_text(inner, name, style.format(value)) if inner is not None else None
    return None if inner is None else out[: box.start()] + inner + out[box.end() :]


def _set_text(block: str | None, tag: str, value: str) -> str | None:
    """``block`` with the text of its first ``<tag>`` element replaced (None: no such element)."""
    if block is None:
        return None
    match = _element(tag).search(block)
    if match is None:
        return None
    return block[: match.start(2)] + value + block[match.end(2) :]


def _verified_text(text: str, verified: bool) -> str:
    """``verified="yes"`` set on (or removed from) the root element's start tag, as LabelImg writes it."""
    match = _ROOT_TAG.search(text)
    if match is None:
        return text
    tag = _VERIFIED_ATTR.sub("", match.group())
    if verified:
        tag = '<annotation verified="yes"' + tag[len("<annotation") :]
    return text[: match.start()] + tag + text[match.end() :]


class _Layout:
    """How a file lays out its ``<object>`` elements: line end, their indentation and its unit."""

    def __init__(self, newline: str, indent: str, unit: str) -> None:
        self.newline, self.indent, self.unit = newline, indent, unit

    @classmethod
    def of(cls, text: str, blocks: Sequence[tuple[int, int]]) -> _Layout:
        newline = "\r\n" if "\r\n" in text else "\n" if "\n" in text else ""
        if not newline:
            return cls("", "", "")
        if not blocks:
            root = _ROOT_TAG.search(text)
            child = re.search(r"\n([ \t]*)<", text[root.end() if root else 0 :])
            return cls(newline, child.group(1) if child else "\t", (child.group(1) if child else "") or "\t")
        start, end = blocks[0]
        indent = text[_line_start(text, start) : start].lstrip("\r\n")
        inner = re.search(r"\n([ \t]*)<", text[start:end])
        unit = inner.group(1)[len(indent) :] if inner and inner.group(1).startswith(indent) else "\t"
        return cls(newline, indent, unit or "\t")

    def object_text(self, doc: XmlText, obj: LabeledBox, style: NumberStyle) -> str:
        """A whole ``<object>`` element in LabelImg's order, laid out like the file's."""
        inner = self.newline + self.indent + self.unit
        deeper = inner + self.unit
        parts = [
            f"<name>{doc.piece(obj.label)}</name>",
            f"<pose>{doc.piece(obj.pose)}</pose>",
            f"<truncated>{int(obj.truncated)}</truncated>",
            f"<difficult>{int(obj.difficult)}</difficult>",
        ]
        if obj.caption is not None:
            parts.append(f"<caption>{doc.piece(obj.caption)}</caption>")
        parts += [doc.piece(extra, markup=True) for extra in obj.extra_xml]
        coords = "".join(
            f"{deeper}<{name}>{style.format(value)}</{name}>"
            for name, value in zip(VOC_COORDS, obj.box.as_tuple(), strict=True)
        )
        parts.append(f"<bndbox>{coords}{inner}</bndbox>")
        return "<object>" + "".join(inner + part for part in parts) + self.newline + self.indent + "</object>"


__all__ = ["XmlText", "voc_write_back"]
