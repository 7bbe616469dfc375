"""The FiftyOne App plugin: fabricdata's operators (write-back, verify drafts, prelabel, review, open a run's
view) and the runs panel, over the same library functions as the CLI.

``plugin/`` is the folder FiftyOne loads (``fiftyone.yml`` + ``__init__.py``, which only registers); the logic
lives in the importable modules beside it, testable without the App. :mod:`fabricdata.app.plugins` makes the
plugin available to the App that ``fabricdata app`` starts, without touching a user's other plugins.
"""
