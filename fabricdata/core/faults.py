"""Crash and fault points for the tests: a process can be told to stop at a named point (so a test can kill it
there with SIGKILL, or let it go on later), or to fail there with an operating-system error, as a full disk or a
read-only file system would make it fail.

- ``FABRICDATA_PAUSE_AT=POINT:N`` makes the N-th arrival at ``POINT`` (1 = the first) create the file named by
  ``FABRICDATA_PAUSE_FILE`` and sleep: until killed, or, with ``FABRICDATA_RESUME_FILE`` set, until that file
  exists (then it carries on).
- ``FABRICDATA_FAIL_AT=POINT:ERRNO`` (an errno name such as ``ENOSPC``) makes every arrival at ``POINT`` raise
  ``OSError(ERRNO)`` without a file name, as ``write()`` reports a full disk: whoever writes must add the path;
  ``POINT:ERRNO:N`` fails only the N-th arrival (1 = the first), as one file of a batch would.

Unset (every normal run), :func:`point` is two dictionary lookups. Points: ``lease.acquired``, ``import.added``,
``writeback.journaled``, ``writeback.renamed``, ``augment.written``, ``export.written``, ``fileio.write`` (every
atomic write, with its temp file made), ``review.stored``, ``train.checkpoint``.
"""

from __future__ import annotations

import errno
import os
import time
from collections import Counter
from pathlib import Path

_arrivals: Counter[str] = Counter()
_failures: Counter[str] = Counter()


def point(name: str) -> None:
    """Arrive at the crash point ``name``."""
    failing = os.environ.get("FABRICDATA_FAIL_AT")
    if failing:
        _fail(name, failing)
    wanted = os.environ.get("FABRICDATA_PAUSE_AT")
    if not wanted:
        return
    where, _, count = wanted.partition(":")
    if where != name:
        return
    _arrivals[name] += 1
    if _arrivals[name] != int(count or 1):
        return
    marker = os.environ.get("FABRICDATA_PAUSE_FILE")
    if marker:
        Path(marker).write_text(f"{os.getpid()}\n", encoding="utf-8")
    resume = os.environ.get("FABRICDATA_RESUME_FILE")
    while not (resume and Path(resume).exists()):  # until the test's SIGKILL, or until it says resume
        time.sleep(0.05 if resume else 60)


def _fail(name: str, spec: str) -> None:
    where, _, rest = spec.partition(":")
    if where != name:
        return
    code, _, nth = rest.partition(":")
    if nth:
        _failures[name] += 1
        if _failures[name] != int(nth):
            return
    number = getattr(errno, code, errno.EIO)
    raise OSError(number, os.strerror(number))
