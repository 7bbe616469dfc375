"""A private MongoDB for the test suite and the benchmarks, so they can only ever see their own datasets.

FiftyOne attaches to any running ``--51-service db --multi`` of the same OS user whatever
``FIFTYONE_DATABASE_DIR`` says, and honours an inherited ``FIFTYONE_DATABASE_URI``: with a user's App open, a
suite that only moved its database folder listed and wrote into the user's datasets. Here the bundled ``mongod``
is started on a free loopback port with a temp ``--dbpath`` and FiftyOne is pointed at it through
``FIFTYONE_DATABASE_URI``, overriding any inherited value. Call :func:`start` before ``fiftyone`` is imported
(its config is read once, at import); it is found without importing it.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import socket
import subprocess
import time
from pathlib import Path


def bundled_mongod() -> Path:
    """FiftyOne's bundled mongod, located without importing fiftyone."""
    spec = importlib.util.find_spec("fiftyone")
    for root in (spec.submodule_search_locations or []) if spec is not None else []:
        candidate = Path(root) / "db" / "bin" / "mongod"
        if candidate.is_file():
            return candidate
    raise RuntimeError("FiftyOne's bundled mongod is missing: run 'make setup' (it installs one where needed)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(folder: Path, timeout: float = 60.0) -> str:
    """Start a private mongod with its data in ``folder``; set and return ``FIFTYONE_DATABASE_URI``.

    The server is stopped when this process exits (registered before fiftyone is imported, so it runs after
    FiftyOne's own exit handlers).
    """
    uri, server = launch(folder, timeout)
    atexit.register(_stop, server)
    os.environ["FIFTYONE_DATABASE_URI"] = uri
    return uri


def launch(folder: Path, timeout: float = 60.0) -> tuple[str, subprocess.Popen[bytes]]:
    """Start a mongod with its data in ``folder`` on a free loopback port; its URI and process (the caller stops
    it; a test may kill it to see a command meet a dying database)."""
    folder.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    log = (folder / "mongod.log").open("ab")
    server = subprocess.Popen(
        [str(bundled_mongod()), "--dbpath", str(folder), "--port", str(port), "--bind_ip", "127.0.0.1"],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # Ctrl-C in the terminal reaches pytest, which then stops the server itself
    )
    deadline = time.monotonic() + timeout
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"the private mongod exited at start (see {folder / 'mongod.log'})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            if time.monotonic() > deadline:
                server.kill()
                raise RuntimeError(f"the private mongod did not listen within {timeout:.0f} s") from None
            time.sleep(0.1)
    return f"mongodb://127.0.0.1:{port}", server


def _stop(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
