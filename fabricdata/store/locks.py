"""Advisory locks that serialize fabricdata's own writers (``fcntl.flock``; released by the kernel when a
process dies, so a killed command never leaves a stale lock).

- :func:`dataset_lock`: one per dataset (and database), held for a whole write-back, so two write-backs of
  one dataset run one after the other instead of reporting each other's files as conflicts.
- :func:`file_lock`: one per annotation file (the file itself is locked), so two datasets that share a folder
  never write one file at once.

LabelImg takes no lock: a save from it is caught by re-checking the file's hash just before the rename
(:func:`fabricdata.core.fileio.atomic_write_bytes` with ``expect``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def lock_dir() -> Path:
    """Where dataset locks live: a per-user folder in the temp dir (``FABRICDATA_LOCK_DIR`` overrides it)."""
    folder = Path(os.environ.get("FABRICDATA_LOCK_DIR") or Path(tempfile.gettempdir()) / f"fabricdata-{os.getuid()}")
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder


@contextlib.contextmanager
def dataset_lock(dataset_name: str) -> Iterator[None]:
    """Hold the exclusive lock of ``dataset_name`` in this database (blocks while another process holds it)."""
    database = os.environ.get("FIFTYONE_DATABASE_URI") or os.environ.get("FIFTYONE_DATABASE_DIR") or "default"
    key = hashlib.sha256(f"{database}\0{dataset_name}".encode()).hexdigest()[:24]
    fd = os.open(lock_dir() / f"{key}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


@contextlib.contextmanager
def file_lock(path: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on the existing file ``path``. A writer that replaced the file (a rename) while we
    waited leaves us holding the old inode: then the new one is locked instead."""
    target = Path(path)
    while True:
        fd = os.open(target, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_ino == target.stat().st_ino:
                break
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    try:
        yield
    finally:
        os.close(fd)
