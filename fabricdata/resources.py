"""Where the files shipped beside the code live: augmentation recipes and the phrase table (``pipelines/``) and
the JSON Schemas (``schemas/``).

In a source checkout or an editable install they are the top-level folders of the repository. In a wheel (or
``pip install .``) the build copies them into the package as ``fabricdata/_data/`` (``setup.py``), found here
through ``importlib.resources``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

SHIPPED = ("pipelines", "schemas")


def shipped(name: str) -> Path:
    """The folder ``name`` (one of :data:`SHIPPED`) of this installation."""
    packaged = resources.files("fabricdata").joinpath("_data", name)
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[1] / name
