"""Florence-2 text: ``label<loc_a><loc_b><loc_c><loc_d>`` suffixes, encoded and parsed.

Encoding uses the processor's quantizer (:func:`fabricdata.core.boxes.box_to_florence`). Parsing is tolerant:
labels may contain hyphens, spaces and non-ASCII characters; several boxes may follow one label; stray special
tokens are ignored; truncated or garbled text yields the boxes that are complete and never raises.
The parser works on *pieces* (decoded tokens) so that prediction can tell which tokens make up each box.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from fabricdata.core.annotation import class_name_problem
from fabricdata.core.boxes import LOC_BINS, Box, ImageSize, box_to_florence, florence_to_box, reading_order_key
from fabricdata.core.errors import ConfigError

TASK_OD = "<OD>"
TASK_DENSE = "<DENSE_REGION_CAPTION>"
TASK_GROUNDING = "<CAPTION_TO_PHRASE_GROUNDING>"
TASKS: dict[str, str] = {"od": TASK_OD, "dense": TASK_DENSE, "grounding": TASK_GROUNDING}

#: Tokens a suffix of one box costs at most besides its label: four location tokens.
LOC_TOKENS_PER_BOX = 4
#: Florence-2's decoder has 1024 positions: a text (label or generation) holds at most 1023 tokens and its end
MAX_TEXT_TOKENS = 1023

_TOKEN = re.compile(r"<loc_(\d+)>|<[^<>]*>|[^<]+|<")


def loc_token(index: int) -> str:
    return f"<loc_{index}>"


def check_label_text(label: str) -> str:
    """A label must pass :func:`fabricdata.core.annotation.class_name_problem` (non-empty, no ``<``/``>`` or control
    characters), which would break the suffix grammar."""
    problem = class_name_problem(label)
    if problem is not None:
        raise ConfigError(f"label {label!r} cannot be written to Florence-2 text ({problem})")
    return label.strip()


def encode_box(box: Box, size: ImageSize) -> str:
    """``<loc_x1><loc_y1><loc_x2><loc_y2>`` for one box."""
    return "".join(loc_token(b) for b in box_to_florence(box, size))


def encode_objects(objects: Sequence[tuple[str, Box]], size: ImageSize) -> str:
    """One ``label<loc..>x4`` per box, boxes in reading order (top-to-bottom, then left-to-right)."""
    ordered = sorted(objects, key=lambda item: (reading_order_key(item[1]), item[0]))
    return "".join(check_label_text(label) + encode_box(box, size) for label, box in ordered)


def encode_grounding(groups: Sequence[tuple[str, Sequence[Box]]], size: ImageSize) -> str:
    """``phrase<loc..>x4<loc..>x4`` per phrase: each phrase followed by all of its boxes, in reading order."""
    parts = []
    for phrase, boxes in groups:
        ordered = sorted(boxes, key=reading_order_key)
        parts.append(check_label_text(phrase) + "".join(encode_box(box, size) for box in ordered))
    return "".join(parts)


@dataclass(frozen=True, slots=True)
class ParsedBox:
    """One box found in generated text: its label, its four bins and the pieces it was made of."""

    label: str
    bins: tuple[int, int, int, int]
    label_pieces: tuple[int, ...]
    loc_pieces: tuple[int, int, int, int]

    def box(self, size: ImageSize) -> Box:
        return florence_to_box(self.bins, size)


def parse_pieces(pieces: Sequence[str]) -> list[ParsedBox]:
    """Parse decoded tokens (or any split of the text) into boxes. Never raises."""
    found: list[ParsedBox] = []
    label_text: list[str] = []
    label_pieces: list[int] = []
    locs: list[tuple[int, int]] = []  # (bin, piece index) of the group being read
    after_box = False
    for piece_index, piece in enumerate(pieces):
        for match in _TOKEN.finditer(piece):
            token = match.group(0)
            if match.group(1) is not None:
                value = int(match.group(1))
                locs.append((value, piece_index))
                if len(locs) == LOC_TOKENS_PER_BOX:
                    label = "".join(label_text).strip()
                    bins = tuple(b for b, _ in locs)
                    if label and all(0 <= b < LOC_BINS for b in bins):
                        found.append(
                            ParsedBox(
                                label=label,
                                bins=(bins[0], bins[1], bins[2], bins[3]),
                                label_pieces=tuple(dict.fromkeys(label_pieces)),
                                loc_pieces=(locs[0][1], locs[1][1], locs[2][1], locs[3][1]),
                            )
                        )
                    locs = []
                    after_box = True
            elif token.startswith("<") and token.endswith(">"):
                continue  # special tokens: <s>, </s>, <pad>, <od>, ...
            else:
                if after_box or locs:
                    label_text, label_pieces, after_box = [], [], False
                locs = []
                label_text.append(token)
                label_pieces.append(piece_index)
    return found


#: the pieces of a training suffix: location tokens, other special tokens, stray brackets, text
_SUFFIX_PIECE = re.compile(r"<loc_(\d+)>|<[^<>]*>|[<>]|[^<>]+")


def suffix_problem(text: str) -> tuple[str, str] | None:
    """Why ``text`` is not a suffix of the grammar the export writes, and the offending piece; None when it is.

    The grammar: ``(label (<loc_a><loc_b><loc_c><loc_d>)+)*`` with each ``<loc_N>`` one of the 1000 location
    tokens ``<loc_0>`` .. ``<loc_999>`` (written without leading zeros), labels free text without ``<``/``>``;
    empty for an image without boxes. Anything else is split by the tokenizer into text pieces and trains
    silently wrong (e.g. maestro's rounding writes ``<loc_1000>`` for boxes at the right or bottom edge).
    """
    label, locs = "", 0  # the label being read, and the location tokens after it
    for match in _SUFFIX_PIECE.finditer(text):
        piece, number = match.group(0), match.group(1)
        if number is not None:
            if number != str(int(number)) or int(number) >= LOC_BINS:
                return f"not one of the location tokens <loc_0>..<loc_{LOC_BINS - 1}>", piece
            if not label:
                return "a location token without a label before it", piece
            locs += 1
        elif len(piece) > 1 and piece.startswith("<"):
            return "not a location token (a suffix holds labels and <loc_N> tokens only)", piece
        elif piece in ("<", ">"):
            return "a stray bracket", text[max(0, match.start() - 20) : match.end() + 20]
        else:
            problem = _boxes_problem(label, locs) or (("a blank label", piece) if not piece.strip() else None)
            if problem is not None:
                return problem
            label, locs = piece, 0
    return _boxes_problem(label, locs)


def _boxes_problem(label: str, locs: int) -> tuple[str, str] | None:
    """A label must be followed by one or more boxes of four location tokens."""
    if label and (locs == 0 or locs % LOC_TOKENS_PER_BOX):
        return f"a label needs boxes of {LOC_TOKENS_PER_BOX} location tokens each (got {locs})", label
    return None


def parse(text: str, size: ImageSize) -> list[tuple[str, Box]]:
    """Parse generated text into ``(label, box)`` pairs in pixels of an image of ``size``."""
    return [(item.label, item.box(size)) for item in parse_pieces([text])]


def task_token(name: str, tasks: Mapping[str, str] = TASKS) -> str:
    """``od`` / ``dense`` / ``grounding`` (or the token itself; or a name of ``tasks``) to the task token."""
    if name in tasks.values():
        return name
    try:
        return tasks[name]
    except KeyError:
        raise ConfigError(f"unknown task {name!r}; expected one of {', '.join(tasks)}") from None


# --- captions for <CAPTION_TO_PHRASE_GROUNDING> ----------------------------------------------------------

_NUMBERS = ("no", "a", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


def plural(phrase: str) -> str:
    """English plural of the last word of a phrase ("broken weft" -> "broken wefts")."""
    if phrase.endswith(("s", "x", "z", "ch", "sh")):
        return phrase + "es"
    if len(phrase) > 1 and phrase.endswith("y") and phrase[-2] not in "aeiou":
        return phrase[:-1] + "ies"
    return phrase + "s"


def counted(phrase: str, count: int) -> str:
    """``("drop", 1)`` -> "a drop"; ``("broken weft", 2)`` -> "two broken wefts"."""
    if count == 1:
        return ("an " if phrase[:1].lower() in "aeiou" else "a ") + phrase
    word = _NUMBERS[count] if count < len(_NUMBERS) else str(count)
    return f"{word} {plural(phrase)}"


def grounding_caption(groups: Sequence[tuple[str, int]], subject: str = "fabric") -> tuple[str, list[str]]:
    """The caption of an image and its phrase spans: "fabric with a drop and two broken wefts"."""
    spans = [counted(phrase, count) for phrase, count in groups]
    if not spans:
        return f"{subject} without defects", []
    joined = spans[0] if len(spans) == 1 else ", ".join(spans[:-1]) + " and " + spans[-1]
    return f"{subject} with {joined}", spans
