"""Small file helpers: atomic writes and content hashes."""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import secrets
import shutil
import stat
import tempfile
from collections.abc import Callable, Container
from pathlib import Path

from fabricdata.core import faults
from fabricdata.core.errors import InvalidValueError, MissingFieldError

#: the largest label file read (VOC, YOLO, class names): a LabelImg file for thousands of boxes is ~1 MB
MAX_LABEL_BYTES = 4 * 1024 * 1024
#: the largest CreateML file read (one file holds every image of a folder)
MAX_CREATEML_BYTES = 256 * 1024 * 1024


#: test hook: called with the target path after the temp file is complete and before ``expect`` is checked
#: (tests put a concurrent "LabelImg save" here); None in normal runs
before_replace: Callable[[Path], None] | None = None


class ChangedOnDiskError(Exception):
    """``atomic_write_bytes(..., expect=...)`` found the target changed since it was read; nothing written."""


def atomic_write_bytes(path: str | Path, data: bytes, overwrite: bool = True, expect: str | None = None) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder and an atomic rename.

    A crash leaves either the old file or the new one, never half of one, and no temp file beyond the crashed
    process's own (named ``.NAME.*.tmp``, hash-shortened so long names stay under NAME_MAX); an existing file
    keeps its mode. With ``expect`` (the sha256 the caller read the file with), the file is hashed again
    immediately before the rename and ChangedOnDiskError is raised, nothing written, when another program saved
    it meanwhile. With ``overwrite=False`` the complete file appears only where none exists (a hard link, which
    the kernel refuses atomically when ``path`` exists: FileExistsError, nothing written).

    Raises:
        OSError: naming ``path`` (or the folder that could not be made), also where the system named no file
            (a full disk, a file-size limit); the temp file is removed first.
    """
    target = Path(path)
    try:
        _write_and_rename(target, data, overwrite, expect)
    except OSError as exc:
        raise naming(exc, target) from None


def _write_and_rename(target: Path, data: bytes, overwrite: bool, expect: str | None) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{short_name(target.name, 120)}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            faults.point("fileio.write")
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if target.exists():
            os.chmod(tmp_name, target.stat().st_mode & 0o7777)
        else:
            os.chmod(tmp_name, 0o644)
        if before_replace is not None:
            before_replace(target)
        if expect is not None and _regular_hash(target) != expect:
            raise ChangedOnDiskError(str(target))
        if overwrite:
            os.replace(tmp_name, target)
        else:
            try:
                os.link(tmp_name, target)
            finally:
                os.unlink(tmp_name)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def naming(exc: OSError, path: str | Path, stage: Path | None = None) -> OSError:
    """``exc`` naming ``path`` where it named no file or only a temp file of ours (``write()`` on a full disk
    names none), and, for a folder built in ``stage`` (:func:`new_stage`), the file's place under ``path`` rather
    than in the stage (removed by then): the error line says which file could not be written. Same class, errno
    and message."""
    if exc.filename is None or Path(str(exc.filename)).name.endswith(".tmp"):
        exc.filename, exc.filename2 = str(path), None
    if stage is not None:
        inside = str(stage) + os.sep
        exc.filename, exc.filename2 = (
            name if not str(name).startswith(inside) else str(Path(path) / str(name)[len(inside) :])
            for name in (exc.filename, exc.filename2)
        )
    return exc


def read_limited(path: str | Path, limit: int = MAX_LABEL_BYTES) -> bytes:
    """The bytes of the regular file ``path``, checked with ``stat`` before reading: FIFOs, devices and folders
    are refused (never opened, so never hang), and so are files above ``limit`` bytes. One typed error, naming
    the file, for each problem."""
    source = Path(path)
    try:
        info = source.stat()
    except FileNotFoundError:
        raise MissingFieldError(source, "file") from None
    except OSError as exc:
        raise InvalidValueError(source, "file", cannot_read(exc)) from None
    if not stat.S_ISREG(info.st_mode):
        raise InvalidValueError(source, "file", f"not a regular file ({file_kind(info.st_mode)})")
    if info.st_size > limit:
        raise InvalidValueError(source, "document", f"larger than {limit} bytes", info.st_size)
    try:
        with source.open("rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise InvalidValueError(source, "file", cannot_read(exc)) from None
    if len(data) > limit:  # grew between stat and read
        raise InvalidValueError(source, "document", f"larger than {limit} bytes", len(data))
    return data


def cannot_read(exc: OSError) -> str:
    """The problem part of an error line for a file the system would not read."""
    return f"cannot be read ({exc.strerror or exc.__class__.__name__})"


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words (for error lines)."""
    for test, name in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "a special file"


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _regular_hash(path: Path) -> str | None:
    """The sha256 of the regular file ``path``; None for anything else in its place (a FIFO is never waited on)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        digest = hashlib.sha256()
        while block := handle.read(1 << 20):
            digest.update(block)
        return digest.hexdigest()


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def link_or_copy(source: str | Path, target: str | Path) -> None:
    """Hard-link ``source`` to ``target`` where the filesystem allows it, copy it otherwise (replacing ``target``)."""
    source, target = Path(source), Path(target)
    if target.exists():
        if target.samefile(source):
            return
        target.unlink()
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def short_name(name: str, limit: int = 200) -> str:
    """``name`` when its UTF-8 form fits in ``limit`` bytes; else its start, a hash of the whole name and its
    suffix, within ``limit`` bytes (NAME_MAX is 255 bytes on Linux and macOS, and temp and variant names add to
    a name)."""
    if len(name.encode("utf-8")) <= limit:
        return name
    suffix = Path(name).suffix if len(Path(name).suffix) <= 16 else ""
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:12]
    room = limit - len(suffix.encode("utf-8")) - len(digest) - 1
    stem = name[: len(name) - len(suffix)].encode("utf-8")[:room].decode("utf-8", "ignore")
    return f"{stem}~{digest}{suffix}"


def unique_name(name: str, taken: Container[str]) -> str:
    """``name``, or ``stem_2.ext``, ``stem_3.ext``, ... : the first that is not in ``taken``."""
    stem, suffix = Path(name).stem, Path(name).suffix
    candidate, counter = name, 2
    while candidate in taken:
        candidate, counter = f"{stem}_{counter}{suffix}", counter + 1
    return candidate


# --- folders replaced whole ---------------------------------------------------------------------------------

_RENAME_EXCHANGE = 2


def new_stage(target: Path) -> Path:
    """A fresh, empty sibling folder to build a replacement of ``target`` in (``.NAME.stage-PID-XXXXXXXX``), with
    the permissions of any folder the user makes (``0o777`` less the umask; ``mkdtemp`` would make it ``0o700``,
    and it becomes ``target``). Stages left by killed processes (their pid no longer alive) are removed first."""
    target.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{short_name(target.name, 100)}.stage-"
    for leftover in target.parent.glob(f"{glob.escape(prefix)}*"):
        pid = leftover.name[len(prefix) :].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(leftover, ignore_errors=True)
    while True:
        stage = target.parent / f"{prefix}{os.getpid()}-{secrets.token_hex(4)}"
        try:
            stage.mkdir()
        except FileExistsError:
            continue
        return stage


def swap_in(stage: Path, target: Path) -> None:
    """Make the complete folder ``stage`` the folder ``target`` and delete the old one. Readers see the old
    folder or the new one, never a mix: on Linux one ``renameat2(RENAME_EXCHANGE)``; elsewhere two renames."""
    if not target.exists():
        stage.rename(target)
        return
    if _exchange(stage, target):
        shutil.rmtree(stage, ignore_errors=True)  # the stage name now holds the old folder
        return
    old = stage.with_name(stage.name + "-old")
    target.rename(old)
    stage.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd = -100
    result = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    return bool(result == 0)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
