"""Editing a label file in place: what an edit changed is rewritten, everything else is kept byte for byte.

- :class:`NumberStyle`: how a file writes its numbers (integers, or decimals: so many, fixed or not), read from the
  file itself, so that an edited value is written the way its neighbours are.
- :func:`align`: which objects of a file an edited sample kept, changed, removed and added (a diff of two lists of
  boxes, as ``difflib`` makes one of two lists of lines).
- JSON text spans (:func:`json_array`, :func:`json_members`, :func:`rebuild_array`): where each element and member of
  a JSON document lies in its text, so that one entry or one value is replaced and the rest of the text stays as it
  was (whitespace, number spellings such as ``45.70000076293945``, key order).

Nothing here reads or writes a file.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from typing import Any

from fabricdata.core.annotation import LabeledBox
from fabricdata.core.boxes import round_half_up

#: two boxes whose coordinates differ by no more than this (pixels) are the same box: what a box loses on its way
#: through FiftyOne's relative coordinates is ~1e-12 px, the smallest edit anyone makes is far above this
SAME_BOX_PX = 1e-6
_INTEGER = re.compile(r"[+-]?\d+")
_DECIMALS = re.compile(r"[+-]?\d*\.(\d*)")


@dataclass(frozen=True, slots=True)
class NumberStyle:
    """How a file spells its numbers: integers (``decimals`` None), or up to ``decimals`` decimals (exactly that
    many when ``fixed``, as YOLO's ``%.6f``; else trailing zeros dropped, at least one decimal kept)."""

    decimals: int | None = None
    fixed: bool = False

    @classmethod
    def of(cls, texts: Iterable[str], cap: int, default: NumberStyle) -> NumberStyle:
        """The style of the number texts of one file (``default`` for a file without numbers); ``cap`` bounds the
        decimals (a float32 printed as ``45.70000076293945`` says "decimals", not "14 of them")."""
        found = [text.strip() for text in texts if text.strip()]
        if not found:
            return default
        if all(_INTEGER.fullmatch(text) for text in found):
            return cls(None)
        places = [_places(text, cap) for text in found]
        fixed = len(set(places)) == 1 and all("." in text for text in found)
        return cls(min(max(places), cap), fixed)

    def format(self, value: float) -> str:
        """``value`` written in this style (integers rounded to nearest, never truncated)."""
        if self.decimals is None:
            return str(round_half_up(value))
        text = f"{value:.{self.decimals}f}"
        if self.fixed or "." not in text:
            return text
        text = text.rstrip("0")
        return text + "0" if text.endswith(".") else text

    def value(self, value: float) -> float:
        """What a file written in this style says for ``value`` (the number read back from :meth:`format`)."""
        return float(self.format(value))


def _places(text: str, cap: int) -> int:
    if _INTEGER.fullmatch(text):
        return 0
    match = _DECIMALS.fullmatch(text)
    return len(match.group(1)) if match else cap  # 1e-05: as many as the cap allows


def same_object(a: LabeledBox, b: LabeledBox) -> bool:
    """True when ``a`` and ``b`` would be written alike: same label, flags, pose and caption, and coordinates
    within :data:`SAME_BOX_PX` of each other."""
    if (a.label, a.difficult, a.truncated, a.pose, a.caption) != (b.label, b.difficult, b.truncated, b.pose, b.caption):
        return False
    return all(abs(x - y) <= SAME_BOX_PX for x, y in zip(a.box.as_tuple(), b.box.as_tuple(), strict=True))


def same_box(a: LabeledBox, b: LabeledBox) -> bool:
    """True when the coordinates of ``a`` and ``b`` agree within :data:`SAME_BOX_PX` (labels aside)."""
    return all(abs(x - y) <= SAME_BOX_PX for x, y in zip(a.box.as_tuple(), b.box.as_tuple(), strict=True))


Pair = tuple[int | None, int | None]


def align(old: Sequence[LabeledBox], new: Sequence[LabeledBox]) -> list[Pair]:
    """What became of a file's objects ``old`` in an edited list ``new``, in order: ``(i, j)`` old[i] is new[j]
    (unchanged when :func:`same_object`, else edited in place), ``(i, None)`` old[i] was removed, ``(None, j)``
    new[j] was added. The pairs follow ``new``'s order, removed objects where they were."""
    matcher = SequenceMatcher(None, [_key(obj) for obj in old], [_key(obj) for obj in new], autojunk=False)
    pairs: list[Pair] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            pairs += list(zip(range(i1, i2), range(j1, j2), strict=True))
            continue
        common = min(i2 - i1, j2 - j1)  # changed in place, one for one
        pairs += [(i1 + k, j1 + k) for k in range(common)]
        pairs += [(i, None) for i in range(i1 + common, i2)]
        pairs += [(None, j) for j in range(j1 + common, j2)]
    return pairs


def _key(obj: LabeledBox) -> tuple[object, ...]:
    """A hashable stand-in of an object for the diff (coordinates to 1e-4 px: a value on a rounding edge may
    differ by noise, and then the pair is found one for one and :func:`same_object` decides)."""
    return (obj.label, obj.difficult, obj.truncated, obj.pose, obj.caption, *(round(v, 4) for v in obj.box.as_tuple()))


# --- JSON text spans -----------------------------------------------------------------------------------------

_DECODER = json.JSONDecoder()
_scanstring: Callable[[str, int], tuple[str, int]] = json.decoder.scanstring  # type: ignore[attr-defined]
_SPACE = re.compile(r"[ \t\n\r]*")


class JsonShapeError(ValueError):
    """The text is not the JSON shape expected at that place."""


@dataclass(frozen=True, slots=True)
class JsonArray:
    """A JSON array in a text: ``start`` at its ``[``, ``end`` after its ``]``, and each element's span."""

    start: int
    end: int
    elements: tuple[tuple[int, int], ...]


def skip_space(text: str, index: int) -> int:
    match = _SPACE.match(text, index)
    return match.end() if match else index


def value_end(text: str, index: int) -> int:
    """The end of the JSON value that starts at ``index``."""
    try:
        return int(_DECODER.raw_decode(text, index)[1])
    except json.JSONDecodeError as exc:
        raise JsonShapeError(f"malformed JSON at character {exc.pos}") from None


def json_array(text: str, start: int) -> JsonArray:
    """The array that starts at ``start`` (its ``[``) and where its elements are."""
    if text[start : start + 1] != "[":
        raise JsonShapeError(f"expected an array at character {start}")
    elements: list[tuple[int, int]] = []
    index = skip_space(text, start + 1)
    if text[index : index + 1] == "]":
        return JsonArray(start, index + 1, ())
    while True:
        end = value_end(text, index)
        elements.append((index, end))
        index = skip_space(text, end)
        if text[index : index + 1] == "]":
            return JsonArray(start, index + 1, tuple(elements))
        if text[index : index + 1] != ",":
            raise JsonShapeError(f"expected ',' or ']' at character {index}")
        index = skip_space(text, index + 1)


def json_member_spans(text: str, start: int) -> list[tuple[str, int, int, int]]:
    """The members of the object that starts at ``start`` (its ``{``): ``(key, where its key starts, where its
    value starts, where it ends)`` in order; the object's end is ``value_end(text, start)``."""
    if text[start : start + 1] != "{":
        raise JsonShapeError(f"expected an object at character {start}")
    members: list[tuple[str, int, int, int]] = []
    index = skip_space(text, start + 1)
    if text[index : index + 1] == "}":
        return members
    while True:
        if text[index : index + 1] != '"':
            raise JsonShapeError(f"expected a key at character {index}")
        key_start = index
        key, index = _scanstring(text, index + 1)
        index = skip_space(text, index)
        if text[index : index + 1] != ":":
            raise JsonShapeError(f"expected ':' at character {index}")
        value = skip_space(text, index + 1)
        end = value_end(text, value)
        members.append((key, key_start, value, end))
        index = skip_space(text, end)
        if text[index : index + 1] == "}":
            return members
        if text[index : index + 1] != ",":
            raise JsonShapeError(f"expected ',' or '}}' at character {index}")
        index = skip_space(text, index + 1)


def json_members(text: str, start: int) -> dict[str, tuple[int, int]]:
    """The members of the object that starts at ``start``: key -> the span of its value."""
    return {key: (value, end) for key, _, value, end in json_member_spans(text, start)}


def rebuild_array(text: str, array: JsonArray, items: Sequence[tuple[int | None, str]]) -> str:
    """The new text of ``array``: ``items`` are ``(index of the element it keeps or replaces, or None for a new
    one, its text)`` in order. Each kept element keeps the separator before it; new ones get the array's usual
    separator (``", "`` where it has none)."""
    spans = array.elements
    if not items:
        return "[]"
    prefix = text[array.start + 1 : spans[0][0]] if spans else ""
    suffix = text[spans[-1][1] : array.end - 1] if spans else ""
    seps = [text[spans[k - 1][1] : spans[k][0]] for k in range(1, len(spans))]
    usual = Counter(seps).most_common(1)[0][0] if seps else ("," + prefix if prefix else ", ")
    out = ["[", prefix]
    for position, (index, piece) in enumerate(items):
        if position:
            out.append(seps[index - 1] if index is not None and index > 0 else usual)
        out.append(piece)
    out += [suffix, "]"]
    return "".join(out)


def separators(text: str) -> tuple[str, str]:
    """The item and key separators a one-line JSON text uses (``", "``, ``": "`` as ``json.dumps`` writes them,
    or the compact ``","``, ``":"``)."""
    return ("," if re.search(r",\S", text) and not re.search(r", ", text) else ", "), (
        ":" if re.search(r'":\S', text) and not re.search(r'": ', text) else ": "
    )


@dataclass(frozen=True, slots=True)
class JsonLayout:
    """How a JSON file is laid out: its indentation unit (None: on one line), separators and line end."""

    unit: str | None = None
    comma: str = ", "
    colon: str = ": "
    newline: str = "\n"

    @classmethod
    def of(cls, text: str) -> JsonLayout:
        newline = "\r\n" if "\r\n" in text else "\n"
        indents = [match.group(1) for _, match in zip(range(64), re.finditer(r"\n([ \t]+)\S", text), strict=False)]
        comma, colon = separators(text)
        return cls(min(indents, key=len) if indents else None, comma, colon, newline)

    def dump(self, value: Any, style: NumberStyle, base: str = "") -> str:
        """``value`` as JSON text laid out like the file (nested lines indented from ``base``), floats in
        ``style``."""
        if isinstance(value, dict | list):
            if not value:
                return "{}" if isinstance(value, dict) else "[]"
            inner = base + (self.unit or "")
            if isinstance(value, dict):
                items = [f"{json.dumps(k)}{self.colon}{self.dump(v, style, inner)}" for k, v in value.items()]
            else:
                items = [self.dump(v, style, inner) for v in value]
            opening, closing = ("{", "}") if isinstance(value, dict) else ("[", "]")
            if self.unit is None:
                return opening + self.comma.join(items) + closing
            joined = ("," + self.newline).join(inner + item for item in items)
            return f"{opening}{self.newline}{joined}{self.newline}{base}{closing}"
        if isinstance(value, float):
            return style.format(value)
        return json.dumps(value, ensure_ascii=False)


def indentation(text: str, start: int) -> str:
    """The indentation of the line ``start`` is on ("" for a one-line text)."""
    line = text.rfind("\n", 0, start) + 1
    head = text[line:start]
    return head[: len(head) - len(head.lstrip(" \t"))]


def set_member(obj_text: str, key: str, value: str) -> str:
    """``obj_text`` (one JSON object) with member ``key`` set to the JSON text ``value``: replaced where it is,
    added last (laid out like the other members) where it is not."""
    members = json_member_spans(obj_text, 0)
    for name, _, start, end in members:
        if name == key:
            return obj_text[:start] + value + obj_text[end:]
    comma, colon = separators(obj_text)
    if len(members) > 1:
        gap = obj_text[members[0][3] : members[1][1]]
    elif members and "\n" in obj_text[: members[0][1]]:
        gap = "," + obj_text[obj_text.index("{") + 1 : members[0][1]]
    else:
        gap = comma
    member = f"{json.dumps(key)}{colon}{value}"
    if members:
        last = members[-1][3]
        return obj_text[:last] + gap + member + obj_text[last:]
    close = obj_text.rstrip().rfind("}")
    return obj_text[:close] + member + obj_text[close:]


@dataclass(slots=True)
class JsonDocument:
    """A JSON object's text (less a byte-order mark), where its top-level lists ``arrays`` are, and changes planned
    to them: element index -> its new texts (none: removed; the first takes its place, the others follow it), and
    new elements at a list's end. :meth:`apply` gives the text with the changes, all else byte for byte."""

    bom: str
    text: str
    arrays: dict[str, JsonArray]
    layout: JsonLayout
    at: dict[str, dict[int, list[str]]] = field(default_factory=lambda: defaultdict(dict))
    end: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    @classmethod
    def of(cls, raw: str, keys: Iterable[str]) -> JsonDocument:
        """The object ``raw`` with its lists named ``keys``.

        Raises:
            JsonShapeError: ``raw`` is not a JSON object, or one of those members is not a list.
        """
        text = raw.removeprefix("\ufeff")
        members = json_members(text, skip_space(text, 0))
        arrays = {key: json_array(text, span[0]) for key, span in members.items() if key in set(keys)}
        return cls(raw[: len(raw) - len(text)], text, arrays, JsonLayout.of(text))

    def piece(self, key: str, index: int) -> str:
        start, end = self.arrays[key].elements[index]
        return self.text[start:end]

    def dump(self, key: str, value: Any, style: NumberStyle) -> str:
        """``value`` laid out as an element of list ``key``."""
        array = self.arrays[key]
        where = array.elements[0][0] if array.elements else array.start
        return self.layout.dump(value, style, indentation(self.text, where))

    def apply(self) -> str:
        spans = []
        for key, array in self.arrays.items():
            if self.at[key] or self.end[key]:
                items: list[tuple[int | None, str]] = []
                for k in range(len(array.elements)):
                    new = self.at[key].get(k, [self.piece(key, k)])
                    items += [(k if n == 0 else None, piece) for n, piece in enumerate(new)]
                items += [(None, piece) for piece in self.end[key]]
                spans.append((array.start, array.end, rebuild_array(self.text, array, items)))
        return self.bom + splice(self.text, spans)


def splice(text: str, replacements: Iterable[tuple[int, int, str]]) -> str:
    """``text`` with each span ``(start, end)`` replaced by its new text (spans must not overlap)."""
    out: list[str] = []
    position = 0
    for start, end, new in sorted(replacements, key=lambda r: (r[0], r[1])):
        out += [text[position:start], new]
        position = end
    out.append(text[position:])
    return "".join(out)


__all__ = [
    "SAME_BOX_PX",
    "JsonArray",
    "JsonDocument",
    "JsonLayout",
    "JsonShapeError",
    "NumberStyle",
    "align",
    "json_array",
    "json_members",
    "rebuild_array",
    "same_box",
    "same_object",
    "set_member",
    "splice",
    "value_end",
]
