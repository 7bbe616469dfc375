"""``python -m fabricdata``: the command line."""

from fabricdata.cli.main import main

main()
