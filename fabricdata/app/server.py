"""The FiftyOne App's server as ``fabricdata app`` runs it: FiftyOne's own server application behind a Host-header
check.

FiftyOne's server answers any Host header, so a web page the user opens elsewhere could reach the App on
127.0.0.1 through DNS rebinding and read any file the user can read through its media route. Bound to a loopback
address, the server here answers only requests whose Host is ``localhost`` or ``127.0.0.1`` (anything else: 400,
"Invalid host header"); bound to another address (``--address 0.0.0.0``: every machine that can reach this one), it
answers any Host, as the user asked. It runs in its own process, as FiftyOne runs its server, and
``fo.launch_app`` finds it already listening and connects to it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

from fabricdata.assist.serve import allowed_hosts
from fabricdata.core.errors import ConfigError


def start(port: int, address: str, timeout: float = 120.0) -> subprocess.Popen[bytes]:
    """Start the App server (a child process) and wait until it answers; the caller stops it (``terminate``).

    Raises:
        ConfigError: the server exited or did not answer within ``timeout`` seconds (the port taken?).
    """
    command = [sys.executable, "-m", "fabricdata.app.server", "--port", str(port), "--address", address]
    server = subprocess.Popen(command)
    url = f"http://{'127.0.0.1' if address in ('0.0.0.0', '::') else address}:{port}/fiftyone"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise ConfigError(f"the App server on {address}:{port} stopped at start (exit {server.returncode}): is "
                              "the port taken? (--port)")  # fmt: skip
        try:
            with urllib.request.urlopen(url, timeout=2):
                return server
        except (urllib.error.URLError, OSError):
            time.sleep(0.5)
    server.terminate()
    raise ConfigError(f"the App server on {address}:{port} did not answer within {timeout:.0f} s")


def _exit_with_parent(parent: int) -> None:
    """End this server when ``fabricdata app`` is gone (killed without its ``finally``): no orphan keeps the port."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def main(argv: list[str] | None = None) -> None:
    """``python -m fabricdata.app.server --port P --address A``: FiftyOne's server application behind the
    Host check, served by hypercorn as FiftyOne serves it."""
    parser = argparse.ArgumentParser(prog="python -m fabricdata.app.server")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--address", required=True)
    args = parser.parse_args(argv)
    os.environ.pop("FIFTYONE_DISABLE_SERVICES", None)
    os.environ["FIFTYONE_SERVER"] = "1"  # what FiftyOne's server main sets before importing fiftyone
    import asyncio

    from fiftyone.server.app import app
    from fiftyone.server.events import set_port
    from hypercorn.asyncio import serve
    from hypercorn.config import Config
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    config = Config()
    config.bind = [f"{args.address}:{args.port}"]
    set_port(args.port)
    guarded = TrustedHostMiddleware(app, allowed_hosts=allowed_hosts(args.address))
    asyncio.run(serve(guarded, config))  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
