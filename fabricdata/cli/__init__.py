"""The ``fabricdata`` command line (typer + rich): one module per stage of the loop, sharing ``common``; ``main``
registers them and is the entry point. Importing this package registers nothing: :func:`main` imports the commands
when it runs, so ``import fabricdata`` stays light."""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point (``fabricdata``, ``python -m fabricdata``): see :func:`fabricdata.cli.main.main`."""
    from fabricdata.cli.main import main as run

    run(argv)
