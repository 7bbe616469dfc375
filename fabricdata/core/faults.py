"""Crash points for the crash tests: a process can be told to stop dead at a named point, so a test can kill it
(SIGKILL) exactly there and check that the rerun recovers.

``FABRICDATA_PAUSE_AT=POINT:N`` makes the N-th arrival at ``POINT`` (1 = the first) create the file named by
``FABRICDATA_PAUSE_FILE`` and sleep until killed. Unset (every normal run), :func:`point` is one dictionary
lookup. Points: ``import.added``, ``writeback.journaled``, ``writeback.renamed``, ``augment.written``,
``export.written``, ``train.checkpoint``.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

_arrivals: Counter[str] = Counter()


def point(name: str) -> None:
    """Arrive at the crash point ``name``."""
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
    while True:  # until the test's SIGKILL
        time.sleep(60)
