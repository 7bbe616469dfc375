"""The one reader of the JSON-lines files fabricdata writes and reads back (export annotations and sources,
prediction records): one object per line, blank lines allowed, and every problem one typed error naming the
file, the line and what was expected there."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from fabricdata.core.errors import InvalidValueError

T = TypeVar("T")


class LineError(ValueError):
    """Raised by a ``build`` function for a well-formed line whose content is wrong: reported as
    ``PATH: line N ELEMENT: problem (got VALUE)``."""

    def __init__(self, element: str, problem: str, value: object = None) -> None:
        super().__init__(problem)
        self.element, self.problem, self.value = element, problem, value


def read_jsonl(
    path: str | Path, what: str, build: Callable[[dict[str, Any]], T], max_line_bytes: int | None = None
) -> Iterator[T]:
    """``build(object)`` for every line of ``path``. A line that is not UTF-8 or not a JSON object, one longer
    than ``max_line_bytes``, or one that ``build`` refuses (KeyError, TypeError, ValueError: a pydantic
    ValidationError is one), is an InvalidValueError: ``PATH: line N: not WHAT (why)``; a :class:`LineError`
    names its own element and problem."""
    source = Path(path)
    with source.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if max_line_bytes is not None and len(raw) > max_line_bytes:
                raise InvalidValueError(source, f"line {number}", f"longer than {max_line_bytes} bytes", len(raw))
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                problem = f"not UTF-8 text (byte {raw[exc.start]:#04x} at column {exc.start + 1})"
                raise InvalidValueError(source, f"line {number}", problem) from None
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                if not isinstance(data, dict):
                    raise TypeError(f"a JSON {type(data).__name__}, not an object")
                yield build(data)
            except LineError as exc:
                where = f"line {number} {exc.element}".rstrip()
                raise InvalidValueError(source, where, exc.problem, exc.value) from None
            except (KeyError, TypeError, ValueError) as exc:
                detail = f"missing {exc}" if isinstance(exc, KeyError) else str(exc).splitlines()[0]
                raise InvalidValueError(source, f"line {number}", f"not {what} ({detail})", line.strip()[:80]) from None
