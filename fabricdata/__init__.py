"""fabricdata: the data-centric loop around Florence-2 for fabric-defect detection.

The Python API (:mod:`fabricdata.api`) is available here, loaded on first use so that the CLI starts fast::

    import fabricdata as fd
    fd.validate(fd.load("fabric").match_tags("recheck"))
"""

from __future__ import annotations

import sys
import types
from typing import Any

__version__ = "0.1.0"

_API = frozenset(
    {
        "DatasetStats", "FabricDataError", "LabelImgExport", "Progress", "ProgressCallback", "Restored", "Snapshot",
        "audit", "augment", "balance", "diff", "export_florence", "export_labelimg", "import_folder", "load",
        "prelabel", "restore", "review", "snapshot", "split", "stats", "validate", "writeback",
    }
)  # fmt: skip


#: verbs named like a subpackage (``fabricdata.review``): see :class:`_VerbAndPackage`
_SHADOWED = frozenset({"review"})


class _VerbAndPackage:
    """``fabricdata.review``: called, the API's verb (its signature and docstring); for attributes, the subpackage
    ``fabricdata.review``, so ``import fabricdata.review.report as report`` keeps working."""

    def __init__(self, name: str) -> None:
        import functools
        import importlib

        from fabricdata import api

        self._package = importlib.import_module(f"{__name__}.{name}")
        self.__wrapped__: Any = getattr(api, name)
        functools.update_wrapper(self, self.__wrapped__)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.__wrapped__(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<function fabricdata.api.{self._package.__name__.rpartition('.')[2]} (and its subpackage)>"

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._package, attribute)


class _Face(types.ModuleType):
    """The package's module class: importing the subpackage ``fabricdata.review`` sets the package's attribute to
    it, so the verb of the same name is looked up first."""

    def __getattribute__(self, name: str) -> Any:
        if name in _SHADOWED:
            verbs = super().__getattribute__("_verbs")
            if name not in verbs:
                verbs[name] = _VerbAndPackage(name)
            return verbs[name]
        return super().__getattribute__(name)


_verbs: dict[str, _VerbAndPackage] = {}
sys.modules[__name__].__class__ = _Face


def __getattr__(name: str) -> Any:
    """``fabricdata.validate`` and the other verbs of :mod:`fabricdata.api`, imported when first asked for."""
    if name in _API:
        from fabricdata import api

        return getattr(api, name)
    raise AttributeError(f"module 'fabricdata' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})
