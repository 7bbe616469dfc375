"""Typed errors. Every message names the file, the element and the offending value.

The CLI turns any :class:`FabricDataError` into one line on stderr and exit code 1; anything else is a bug.
"""

from __future__ import annotations

from pathlib import Path


class FabricDataError(Exception):
    """Base class of every error fabricdata raises on purpose."""


class AnnotationError(FabricDataError):
    """A problem in one annotation file: ``FILE: ELEMENT: problem (got VALUE)``."""

    def __init__(self, path: str | Path | None, element: str, problem: str, value: object = None) -> None:
        self.path = str(path) if path is not None else "<memory>"
        self.element = element
        self.problem = problem
        self.value = value
        super().__init__(self.message)

    @property
    def message(self) -> str:
        got = "" if self.value is None else f" (got {_show(self.value)})"
        return f"{self.path}: {self.element}: {self.problem}{got}"


class MissingFieldError(AnnotationError):
    """A required element or key is absent."""

    def __init__(self, path: str | Path | None, element: str) -> None:
        super().__init__(path, element, "required element is missing")


class InvalidValueError(AnnotationError):
    """An element is present but its value is unusable (not a number, NaN, zero size, ...)."""


class InvalidBoxError(AnnotationError):
    """A box is degenerate (xmin >= xmax) or lies outside its image."""


class UnknownClassError(AnnotationError):
    """A label is empty or not in the project's class list."""


class UnsafeXMLError(AnnotationError):
    """The XML uses entities, a DTD, or is too large: rejected before anything is resolved."""


class FormatDetectionError(FabricDataError):
    """A folder holds no annotation format we recognise (or several, ambiguously)."""


class ConfigError(FabricDataError):
    """A configuration file or option is invalid."""


class DatasetError(FabricDataError):
    """A FiftyOne dataset is missing or in a state the command cannot work with."""


class WriteBackConflictError(AnnotationError):
    """An annotation file changed on disk since it was imported; it is left untouched."""


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
