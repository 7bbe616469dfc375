"""The ``fabricdata`` command line (typer + rich). Commands stay thin; heavy imports happen inside them.

The commands live in ``store``, ``versions``, ``prepare``, ``model``, ``audit``, ``experiments`` and ``demo`` of
this package and share ``common``; this module only registers them and is the entry point (``fabricdata``,
``python -m fabricdata``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from rich.markup import escape

from fabricdata.cli import (  # noqa: F401 - they register the commands
    audit,
    demo,
    experiments,
    model,
    prepare,
    store,
    versions,
)
from fabricdata.cli.common import app, console, err_console, setup_environment
from fabricdata.core.errors import FabricDataError, environment_fault


@app.command()
def version() -> None:
    """Print the fabricdata version."""
    from fabricdata import __version__

    console.print(__version__)


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point: one line and exit code 1 for expected errors and environment faults (disk, permissions,
    database), never a bare traceback; exit 2 only for a bug."""
    setup_environment()
    try:
        app(args=list(argv) if argv is not None else None, prog_name="fabricdata")
    except FabricDataError as exc:
        err_console.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        sys.exit(130)
    except Exception as exc:
        if os.environ.get("FABRICDATA_DEBUG"):
            raise
        fault = environment_fault(exc)  # a full disk, a read-only folder, the database down: not a bug
        if fault is not None:
            err_console.print(f"[red]error:[/] {escape(str(fault))}", highlight=False, soft_wrap=True)
            sys.exit(1)
        err_console.print(
            f"[red]internal error:[/] {exc.__class__.__name__}: {escape(str(exc))} "
            "(a bug in fabricdata; FABRICDATA_DEBUG=1 shows the traceback)",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(2)


if __name__ == "__main__":
    main()
