"""Builds copy the top-level ``pipelines/`` and ``schemas/`` into the package (``fabricdata/_data/``), so a
wheel or ``pip install .`` ships the recipes, the phrase table and the schemas (fabricdata/core/contracts.py: shipped).
Everything else is in pyproject.toml."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SHIPPED = ("pipelines", "schemas")


class BuildWithData(build_py):
    def run(self) -> None:
        super().run()
        for name in SHIPPED:
            target = Path(self.build_lib) / "fabricdata" / "_data" / name
            shutil.copytree(Path(__file__).parent / name, target, dirs_exist_ok=True)


setup(cmdclass={"build_py": BuildWithData})
