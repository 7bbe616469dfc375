"""The plugin FiftyOne loads (``fiftyone.yml`` beside this file names it): it only registers fabricdata's operators
and panel, whose logic lives in :mod:`fabricdata.app`. ``fabricdata app`` puts this folder on the App's plugins
path (:mod:`fabricdata.app.plugins`)."""

from __future__ import annotations

from typing import Any

from fabricdata.app.delegated import Prelabel, ReviewRun
from fabricdata.app.panel import RunsPanel
from fabricdata.app.views import OpenRunView
from fabricdata.app.writing import VerifyDrafts, WriteBack

#: every operator and panel of the plugin, in the order the App lists them
REGISTERED = (WriteBack, VerifyDrafts, Prelabel, ReviewRun, OpenRunView, RunsPanel)


def register(plugin: Any) -> None:
    """FiftyOne's entry point: ``plugin`` is its PluginContext."""
    for cls in REGISTERED:
        plugin.register(cls)
