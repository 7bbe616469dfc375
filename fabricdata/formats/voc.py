"""Pascal VOC XML exactly as LabelImg writes it (reader and writer).

The reader is hardened: documents with a DTD or entity declarations are rejected before parsing, the parser
resolves no entities and touches no network or file, and files above ``MAX_XML_BYTES`` are refused. It also
reads what other tools write (float coordinates, missing optional elements, the encoding the XML declaration
names, such as ``gb2312`` or ``ISO-8859-1``, and UTF-16/32 with a byte-order mark): the text is decoded by
Python's codec for that encoding, checked, and parsed by the same hardened parser as UTF-8.
The writer reproduces LabelImg's layout byte for byte: tab indentation, no XML declaration, ``verified="yes"``
only when verified, integer ``bndbox`` rounded to nearest.
"""

from __future__ import annotations

import codecs
import math
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lxml import etree

from fabricdata.core.annotation import ImageAnnotation, LabeledBox, check_box, check_label
from fabricdata.core.boxes import ImageSize, voc_to_box
from fabricdata.core.errors import AnnotationError, InvalidValueError, MissingFieldError, UnsafeXMLError
from fabricdata.core.fileio import MAX_LABEL_BYTES, atomic_write_bytes, read_limited, sha256_bytes
from fabricdata.core.images import image_info
from fabricdata.formats.edits import NumberStyle
from fabricdata.formats.registry import (
    HashUnit,
    LabelFormat,
    NewFile,
    SampleLabels,
    Unpaired,
    WriteBack,
    Written,
    check_size,
)

if TYPE_CHECKING:
    from fabricdata.formats import FolderScan
    from fabricdata.formats.discover import Discovery, LabelFile
    from fabricdata.formats.names import ClassNames
    from fabricdata.formats.registry import ReadResult

MAX_XML_BYTES = MAX_LABEL_BYTES
_MODELLED_TOP = {"folder", "filename", "path", "source", "size", "segmented", "object"}
_MODELLED_OBJECT = {"name", "pose", "truncated", "difficult", "bndbox", "caption"}
VOC_COORDS = ("xmin", "ymin", "xmax", "ymax")
#: LabelImg's number style: integers, rounded to nearest
LABELIMG_STYLE = NumberStyle(None)
_DECLARATION = re.compile(r"^\ufeff?\s*<\?xml\b[^>]*?\?>")
_DECLARED = re.compile(rb"^(?:\xef\xbb\xbf)?\s*<\?xml\b[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._:-]{1,40})[\"']")
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=False,
    )


def read_voc(path: str | Path, classes: Sequence[str] | None = None) -> ImageAnnotation:
    """Read one VOC XML file; raise a typed error naming the file, element and value on bad input."""
    return read_voc_bytes(path, classes)[1]


def read_voc_bytes(path: str | Path, classes: Sequence[str] | None = None) -> tuple[bytes, ImageAnnotation]:
    """Like :func:`read_voc`, also returning the bytes that were parsed (for content hashes)."""
    source = Path(path)
    data = read_limited(source, MAX_XML_BYTES)
    return data, parse_voc(data, source, classes)


def parse_voc(data: bytes, path: str | Path | None = None, classes: Sequence[str] | None = None) -> ImageAnnotation:
    """Parse VOC XML bytes (see :func:`read_voc`)."""
    root = _safe_root(data, path)
    if root.tag != "annotation":
        raise InvalidValueError(path, "annotation", "root element must be <annotation>", root.tag)
    size = _read_size(root, path)
    objects = tuple(
        _read_object(node, index, size, path, classes) for index, node in enumerate(root.findall("object"), start=1)
    )
    return ImageAnnotation(
        filename=_text(root, "filename", path, required=True),
        size=size,
        objects=objects,
        depth=_int(root, "size/depth", path, default=3),
        folder=_text(root, "folder", path),
        path=root.findtext("path"),
        database=_text(root, "source/database", path) or "Unknown",
        segmented=_int(root, "segmented", path, default=0),
        verified=root.get("verified") == "yes",
        extra_xml=tuple(_serialize(child) for child in root if _is_extra(child, _MODELLED_TOP)),
    )


def _safe_root(data: bytes, path: str | Path | None) -> etree._Element:
    text, encoding = decode_xml(data, path)
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        raise UnsafeXMLError(path, "document", "DTD and entity declarations are not allowed (XXE protection)")
    if encoding not in ("utf-8", "utf-8-sig"):  # parsed as UTF-8 below, whatever it declared
        data = _DECLARATION.sub("", text, count=1).encode("utf-8")
    try:
        root = etree.fromstring(data, parser=_parser())
    except etree.XMLSyntaxError as exc:
        raise InvalidValueError(path, "document", f"malformed XML: {exc.msg}") from None
    docinfo: Any = root.getroottree().docinfo
    if docinfo.doctype:
        raise UnsafeXMLError(path, "document", "DTD declarations are not allowed")
    return root


def decode_xml(data: bytes, path: str | Path | None) -> tuple[str, str]:
    """The document's text, decoded as its byte-order mark or XML declaration says (UTF-8 when neither does),
    and the codec's name.

    Raises:
        InvalidValueError: an unknown or non-text encoding, bytes invalid in it, or wide text without a BOM.
    """
    encoding = next((name for bom, name in _BOMS if data.startswith(bom)), None)
    if encoding is None:
        if b"\x00" in data[:4]:
            raise InvalidValueError(path, "document", "UTF-16/32 XML without a byte-order mark is not supported")
        declared = _DECLARED.match(data)
        encoding = declared.group(1).decode("ascii") if declared else "utf-8"
    try:
        codec = codecs.lookup(encoding).name
        return data.decode(encoding), codec
    except LookupError:
        raise InvalidValueError(path, "document", "unknown text encoding", encoding) from None
    except UnicodeDecodeError as exc:
        shown = "UTF-8" if codec == "utf-8" else encoding
        raise InvalidValueError(
            path, "document", f"invalid {shown} at byte {exc.start}", data[exc.start : exc.end]
        ) from None


def _read_size(root: etree._Element, path: str | Path | None) -> ImageSize:
    if root.find("size") is None:
        raise MissingFieldError(path, "size")
    width = _int(root, "size/width", path, required=True)
    height = _int(root, "size/height", path, required=True)
    for name, value in (("size/width", width), ("size/height", height)):
        if value <= 0:
            raise InvalidValueError(path, name, "image size must be positive", value)
    return ImageSize(width, height)


def _read_object(
    node: etree._Element,
    index: int,
    size: ImageSize,
    path: str | Path | None,
    classes: Sequence[str] | None,
) -> LabeledBox:
    where = f"object[{index}]"
    label = check_label(path, f"{where}/name", node.findtext("name") or "", classes)
    if node.find("bndbox") is None:
        raise MissingFieldError(path, f"{where}/bndbox")
    values = [_number(node, f"bndbox/{name}", path, where) for name in VOC_COORDS]
    box = voc_to_box(values)
    check_box(path, f"{where}/bndbox", box, size)
    caption = node.findtext("caption")
    return LabeledBox(
        label=label,
        box=box,
        difficult=_flag(node, "difficult", path, where),
        truncated=_flag(node, "truncated", path, where),
        pose=node.findtext("pose") or "Unspecified",
        caption=caption.strip() if caption and caption.strip() else None,
        extra_xml=tuple(_serialize(child) for child in node if _is_extra(child, _MODELLED_OBJECT)),
    )


def _text(root: etree._Element, xpath: str, path: str | Path | None, required: bool = False) -> str:
    value = root.findtext(xpath)
    if value is None:
        if required:
            raise MissingFieldError(path, xpath)
        return ""
    return value.strip()


def _number(node: etree._Element, xpath: str, path: str | Path | None, where: str) -> float:
    raw = node.findtext(xpath)
    element = f"{where}/{xpath}"
    if raw is None:
        raise MissingFieldError(path, element)
    try:
        value = float(raw.strip())
    except ValueError:
        raise InvalidValueError(path, element, "not a number", raw) from None
    if not math.isfinite(value):
        raise InvalidValueError(path, element, "not a finite number", raw)
    return value


def _int(root: etree._Element, xpath: str, path: str | Path | None, default: int = 0, required: bool = False) -> int:
    raw = root.findtext(xpath)
    if raw is None or not raw.strip():
        if required:
            raise MissingFieldError(path, xpath)
        return default
    try:
        value = float(raw.strip())
    except ValueError:
        raise InvalidValueError(path, xpath, "not a number", raw) from None
    if not math.isfinite(value) or value != int(value):
        raise InvalidValueError(path, xpath, "not a whole number", raw)
    return int(value)


def _flag(node: etree._Element, name: str, path: str | Path | None, where: str) -> bool:
    raw = (node.findtext(name) or "0").strip().lower()
    if raw in ("0", "false", "no", ""):
        return False
    if raw in ("1", "true", "yes"):
        return True
    raise InvalidValueError(path, f"{where}/{name}", "expected 0 or 1", raw)


def _is_extra(child: etree._Element, modelled: set[str]) -> bool:
    return isinstance(child.tag, str) and child.tag not in modelled


def _serialize(child: etree._Element) -> str:
    clone = etree.fromstring(etree.tostring(child, with_tail=False))
    for element in clone.iter():
        if len(element):
            element.text = None
        element.tail = None
    return etree.tostring(clone, encoding="unicode")


# --- writer --------------------------------------------------------------------------------------------


def voc_to_bytes(annotation: ImageAnnotation, style: NumberStyle | None = None) -> bytes:
    """Serialise an annotation exactly as LabelImg lays out its XML files (``bndbox`` integers rounded to nearest;
    in ``style`` where given)."""
    root = etree.Element("annotation")
    if annotation.verified:
        root.set("verified", "yes")
    _sub(root, "folder", annotation.folder)
    _sub(root, "filename", annotation.filename)
    if annotation.path is not None:
        _sub(root, "path", annotation.path)
    _sub(etree.SubElement(root, "source"), "database", annotation.database)
    size = etree.SubElement(root, "size")
    _sub(size, "width", str(annotation.size.width))
    _sub(size, "height", str(annotation.size.height))
    _sub(size, "depth", str(annotation.depth))
    _sub(root, "segmented", str(annotation.segmented))
    for extra in annotation.extra_xml:
        root.append(etree.fromstring(extra, parser=_parser()))
    for obj in annotation.objects:
        _write_object(root, obj, style or LABELIMG_STYLE)
    etree.indent(root, space="\t")
    return etree.tostring(root, encoding="utf-8", pretty_print=True)


def _write_object(root: etree._Element, obj: LabeledBox, style: NumberStyle) -> None:
    node = etree.SubElement(root, "object")
    _sub(node, "name", obj.label)
    _sub(node, "pose", obj.pose)
    _sub(node, "truncated", "1" if obj.truncated else "0")
    _sub(node, "difficult", "1" if obj.difficult else "0")
    if obj.caption is not None:
        _sub(node, "caption", obj.caption)
    for extra in obj.extra_xml:
        node.append(etree.fromstring(extra, parser=_parser()))
    bndbox = etree.SubElement(node, "bndbox")
    for name, value in zip(VOC_COORDS, obj.box.as_tuple(), strict=True):
        _sub(bndbox, name, style.format(value))


def _sub(parent: etree._Element, tag: str, text: str) -> None:
    etree.SubElement(parent, tag).text = text


def write_voc(annotation: ImageAnnotation, path: str | Path) -> None:
    """Write an annotation atomically (temp file + rename) in LabelImg's layout."""
    atomic_write_bytes(path, voc_to_bytes(annotation))


# --- the registry's VOC ---------------------------------------------------------------------------------


class VocFormat:
    """Pascal VOC XML, one file per image (see :class:`fabricdata.formats.registry.LabelFormat`)."""

    name = "voc"
    title = "Pascal VOC .xml"
    hash_unit: HashUnit = "file"
    max_bytes = MAX_XML_BYTES

    def claims(self, path: Path, found: Discovery) -> bool:
        return path.suffix.lower() == ".xml"

    def locate(self, path: Path, found: Discovery, names: ClassNames) -> LabelFile | None:
        from fabricdata.formats.discover import LabelFile

        return LabelFile(path, self.name)

    def read(
        self, label: LabelFile, found: Discovery, scan: FolderScan, classes: Sequence[str] | None, check_sizes: bool
    ) -> Iterator[ReadResult]:
        from fabricdata.formats import FolderItem

        xml = label.path
        try:
            data, annotation = read_voc_bytes(xml, classes)
        except AnnotationError as exc:
            yield exc
            return
        pairing = found.index.pair(xml, annotation.filename)
        if pairing.problem:
            yield InvalidValueError(xml, "filename", pairing.problem, annotation.filename)
            return
        if pairing.image is None:
            yield Unpaired(xml, f"label without an image (<filename> {annotation.filename!r} not found beside it)")
            return
        if pairing.note:
            yield pairing.note
        image = scan.partner[xml] = pairing.image
        try:
            info = image_info(image)
            if check_sizes:
                check_size(xml, image, annotation.size, info.size)
            placement = found.placement(image)
            yield FolderItem(image, xml, annotation, self.name, sha256_bytes(data), placement, info, how=pairing.how)
        except AnnotationError as exc:
            yield exc

    def images_of(self, label: LabelFile, found: Discovery) -> list[Path]:
        image = found.image_for(label.path)
        return [image] if image is not None else []

    def entry_hashes(self, data: bytes, path: Path) -> dict[str, str]:
        return {}

    def write_back(self, data: bytes, path: Path, edits: Sequence[SampleLabels]) -> WriteBack:
        from fabricdata.formats.vocedit import voc_write_back

        (edit,) = edits
        return voc_write_back(data, path, edit)

    def new_file(self, draft: SampleLabels) -> NewFile:
        image = draft.image
        annotation = ImageAnnotation(
            image.name, draft.size, draft.objects, depth=draft.channels, folder=image.parent.name, path=str(image),
            verified=draft.verified,
        )  # fmt: skip
        data = voc_to_bytes(annotation)
        path = image.with_suffix(".xml")
        return NewFile(path, data, Written(sha256_bytes(data), parse_voc(data, path).objects))

    def read_annotation(self, path: Path, image: Path, size: ImageSize) -> ImageAnnotation:
        return read_voc(path)


FORMAT: LabelFormat = VocFormat()
