"""The command line: help with examples, real work, one-line errors with exit code 1."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fabricdata.cli.common import ORDER, app
from fabricdata.cli.main import main as _registered  # noqa: F401 - registers every command
from fabricdata.formats import read_folder
from tests.helpers import run


def test_help_lists_commands_and_examples(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["--help"], capsys)
    assert code == 0 and "synth" in out and "Examples" in out
    order = [out.index(f"│ {name} ") for name in ORDER]
    assert order == sorted(order)  # the order of the loop, every command listed (prelabel and serve before sweep)
    commands = {info.name or info.callback.__name__.replace("_", "-") for info in app.registered_commands}
    assert commands | {"export"} == set(ORDER)
    code, out, _ = run(["synth", "--help"], capsys)
    assert code == 0 and "fabricdata synth data/fabric" in out


def test_synth_writes_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["synth", str(tmp_path / "d"), "--images", "5", "--size", "128x96"]
    args += ["--classes", "wrinkle,broken-weft", "--workers", "1", "--sheet", str(tmp_path / "sheet.png")]
    code, out, _ = run(args, capsys)
    assert code == 0 and "wrote 5 images" in out
    scan = read_folder(tmp_path / "d", classes=("wrinkle", "broken-weft"))
    assert len(scan.items) == 5 and not scan.errors
    assert (tmp_path / "sheet.png").stat().st_size > 1000


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["synth", "x", "--size", "big"], "--size: expected WIDTHxHEIGHT"),
        (["synth", "x", "--classes", "a<b"], "Florence-2 labels cannot hold"),
    ],
)
def test_bad_options_give_one_line_and_exit_1(
    args: list[str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(args, capsys)
    assert code == 1
    assert fragment in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_console_script_starts_fast_without_heavy_imports() -> None:
    heavy = "('fiftyone', 'torch', 'transformers', 'albumentations')"
    code = f"import sys, fabricdata.cli.main; print(sorted(m for m in {heavy} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_unexpected_errors_are_one_line_with_exit_2(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import fabricdata.prepare.synth

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(fabricdata.prepare.synth, "generate", broken)
    monkeypatch.delenv("FABRICDATA_DEBUG", raising=False)
    code, _, err = run(["synth", str(tmp_path / "x"), "--images", "1"], capsys)
    assert code == 2 and "RuntimeError: disk on fire" in err and "Traceback" not in err


def test_a_sample_without_a_stored_size_is_the_same_one_line_error_everywhere(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """stats, validate and export read image sizes in bulk; a sample that lost its metadata is one line naming
    its file (it was 1x1 in stats, 0x0 in validate, a crash in review)."""
    import fiftyone as fo

    from tests.helpers import imported_synth

    imported_synth(tmp_path / "fabric", name, capsys, images=6)
    assert run(["split", "-d", name, "--ratios", "0.5,0.5,0"], capsys)[0] == 0
    sample = fo.load_dataset(name).sort_by("filepath").first()
    sample.metadata = None
    sample.save()
    expected = f"{sample.filepath}: sample has no image size metadata; re-import its folder"
    for args in (["stats"], ["validate"], ["export", "florence", str(tmp_path / "export"), "--allow-empty-split"]):
        code, out, err = run([*args, "-d", name], capsys)
        assert code == 1 and expected in " ".join(err.split()), (args, out[-500:], err[-500:])
