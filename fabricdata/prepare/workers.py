"""Worker process pools that never outlive the command that started them.

Every worker asks the kernel to kill it when its parent dies (Linux ``PR_SET_PDEATHSIG``, checked against a
parent that died before the request took effect), and ignores SIGINT (Ctrl-C reaches the parent, which shuts the
pool down). So ``kill -9`` of the command, SIGTERM or Ctrl-C never leave workers running.

The start method is ``fork`` where it exists: ``spawn`` would re-run the caller's main module in every worker,
which breaks any script that calls the Python API without an ``if __name__ == "__main__":`` guard. Workers only
run image code (no database, no locks of the parent).
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

_PR_SET_PDEATHSIG = 1


def process_pool(
    workers: int, initializer: Callable[..., None] | None = None, initargs: tuple[Any, ...] = ()
) -> ProcessPoolExecutor:
    """A pool of ``workers`` processes bound to this process's life."""
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn"),
        initializer=_bind_to_parent,
        initargs=(os.getpid(), initializer, initargs),
    )


def _bind_to_parent(parent: int, initializer: Callable[..., None] | None, initargs: tuple[Any, ...]) -> None:
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the parent shuts the pool down, no worker tracebacks
    if initializer is not None:
        initializer(*initargs)
