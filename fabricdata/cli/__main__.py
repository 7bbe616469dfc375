"""``python -m fabricdata.cli``: the command line."""

from fabricdata.cli.main import main

main()
