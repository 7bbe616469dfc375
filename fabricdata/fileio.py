"""Small file helpers: atomic writes and content hashes."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Container
from pathlib import Path


def atomic_write_bytes(path: str | Path, data: bytes, overwrite: bool = True) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder and an atomic rename.

    A crash leaves either the old file or the new one, never half of one; an existing file keeps its mode.
    With ``overwrite=False`` the complete file appears only where none exists (a hard link, which the kernel
    refuses atomically when ``path`` exists: FileExistsError, nothing written).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if target.exists():
            os.chmod(tmp_name, target.stat().st_mode & 0o7777)
        else:
            os.chmod(tmp_name, 0o644)
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


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def link_or_copy(source: str | Path, target: str | Path) -> None:
    """Hard-link ``source`` to ``target`` where the filesystem allows it, copy it otherwise (replacing ``target``)."""
    import shutil

    source, target = Path(source), Path(target)
    if target.exists():
        if target.samefile(source):
            return
        target.unlink()
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def unique_name(name: str, taken: Container[str]) -> str:
    """``name``, or ``stem_2.ext``, ``stem_3.ext``, ... : the first that is not in ``taken``."""
    stem, suffix = Path(name).stem, Path(name).suffix
    candidate, counter = name, 2
    while candidate in taken:
        candidate, counter = f"{stem}_{counter}{suffix}", counter + 1
    return candidate
