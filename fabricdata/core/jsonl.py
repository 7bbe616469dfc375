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


def read_jsonl(path: str | Path, what: str, build: Callable[[dict[str, Any]], T]) -> Iterator[T]:
    """``build(object)`` for every line of ``path``. A line that is not a JSON object, or that ``build``
    refuses (KeyError, TypeError, ValueError: a pydantic ValidationError is one), is an InvalidValueError:
    ``PATH: line N: not WHAT (why)``; a :class:`LineError` names its own element and problem."""
    source = Path(path)
    with source.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
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
