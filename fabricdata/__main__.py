"""``python -m fabricdata``: the command line."""

from fabricdata.cli import main

main()
