"""Helpers shared by the dataset tests (run the CLI in-process, temporary datasets)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from fabricdata.cli import main
from fabricdata.synth import SynthConfig, generate


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run ``fabricdata ARGS`` in this process; returns exit code, stdout, stderr."""
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def new_name(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def imported_synth(
    folder: Path, name: str, capsys: pytest.CaptureFixture[str], images: int = 30, seed: int = 3
) -> Path:
    """A synthetic LabelImg folder imported into dataset ``name``."""
    generate(SynthConfig(images=images, seed=seed, width=256, height=192), folder)
    code, _, err = run(["import", str(folder), "-d", name], capsys)
    assert code == 0, err
    return folder
