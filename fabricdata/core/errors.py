"""Typed errors. Every message names the file, the element and the offending value.

The CLI turns any :class:`FabricDataError` into one line on stderr and exit code 1, and so it does with what
:func:`environment_fault` recognises (a full disk, a read-only folder, a database that cannot be reached: the
machine failing, not fabricdata); anything else is a bug.
"""

from __future__ import annotations

import errno
import os
import re
import sys
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


class EnvironmentFaultError(FabricDataError):
    """The machine failed under a command, not the input: a full disk, a file-size limit, a read-only or
    forbidden folder, a database that cannot be reached. One line naming the path (or the database) and the fix."""


#: errno -> the fix, for the operating-system errors a command meets on its own reads and writes
OS_FIXES: dict[int, str] = {
    errno.ENOSPC: "free some space or write to another disk",
    errno.EDQUOT: "free some space or ask for a larger quota",
    errno.EFBIG: "raise the file-size limit (ulimit -f) or write to a file system that takes larger files",
    errno.EACCES: "give this user access to it, or choose another folder",
    errno.EPERM: "give this user access to it, or choose another folder",
    errno.EROFS: "choose a folder on a writable disk",
    errno.ENOTDIR: "a part of the path is a file, not a folder: move that file away or choose another path",
    errno.EEXIST: "something is in the way (a file where a folder is needed): move it away or choose another path",
    errno.EISDIR: "a folder is where a file is needed: move it away or choose another path",
    errno.ENAMETOOLONG: "choose a shorter path",
    errno.EMFILE: "raise the open-files limit (ulimit -n)",
    errno.ENFILE: "close some programs or raise the system's open-files limit",
    errno.EIO: "check the disk (dmesg) and its connection",
    errno.EMLINK: "choose another folder",
}


def environment_fault(exc: BaseException) -> EnvironmentFaultError | None:
    """The one-line error for an environment fault anywhere in ``exc``'s chain (its causes and contexts): an
    ``OSError`` of :data:`OS_FIXES` (naming its path), or a MongoDB connection failure (naming the database URI,
    without its password); None for anything else (a bug)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _is_database_failure(current):
            return EnvironmentFaultError(
                f"cannot reach the database at {database_uri()} ({current.__class__.__name__}: "
                f"{_first_line(current)}): start MongoDB there, or point FIFTYONE_DATABASE_URI at a running one"
            )
        if isinstance(current, OSError) and current.errno in OS_FIXES:
            return EnvironmentFaultError(_os_message(current))
        current = current.__cause__ or current.__context__
    return None


def _os_message(exc: OSError) -> str:
    names = [str(name) for name in (exc.filename, exc.filename2) if name is not None]
    where = " -> ".join(names) if names else "(a file of this command)"
    code = errno.errorcode.get(exc.errno or 0, str(exc.errno))
    return f"{where}: {exc.strerror or os.strerror(exc.errno or 0)} [{code}]: {OS_FIXES[exc.errno or 0]}"


def _is_database_failure(exc: BaseException) -> bool:
    """pymongo's ConnectionFailure (refused, reset, timed out server selection), found without importing pymongo."""
    return any(
        cls.__module__.startswith("pymongo") and cls.__name__ == "ConnectionFailure" for cls in type(exc).__mro__
    )


def database_uri() -> str:
    """The database FiftyOne talks to, as a URI without its password (or where the local one lives)."""
    fiftyone = sys.modules.get("fiftyone")
    config = getattr(fiftyone, "config", None)
    uri = getattr(config, "database_uri", None) or os.environ.get("FIFTYONE_DATABASE_URI")
    if not uri:
        folder = getattr(config, "database_dir", None) or os.environ.get("FIFTYONE_DATABASE_DIR") or "~/.fiftyone"
        return f"FiftyOne's local database ({folder})"
    shown = re.sub(r"(//[^:/@]*):[^@/]*@", r"\1:***@", str(uri))
    shown = re.sub(r"([?&])serverSelectionTimeoutMS=\d+&?", r"\1", shown)  # the CLI's own connect timeout
    return shown.removesuffix("?").removesuffix("&").removesuffix("/?").removesuffix("/")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = (text[0] if text else "").split(" (configured timeouts")[0]  # pymongo's topology dump follows
    return line if len(line) <= 160 else line[:157] + "..."


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
