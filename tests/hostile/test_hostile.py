"""The hostile corpus (tests/hostile/corpus.py) against import: every bad file is one clear error naming it,
every good file of the folder still imports, nothing hangs, nothing crashes the command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fabricdata.store.importer import import_folder
from tests.hostile.corpus import Case, build_case, cases

#: chmod 000 does not stop root: the unreadable-file case only means something for other users
CASES = [case for case in cases() if not (case.name == "fs-unreadable" and os.geteuid() == 0)]
CASE_TIMEOUT_S = 30


def test_the_corpus_is_large_and_mostly_hostile() -> None:
    assert len(CASES) >= 80
    assert sum(case.expect == "error" for case in CASES) >= 60


@pytest.fixture
def deadline() -> Iterator[None]:
    """Fail (instead of hanging the suite) when one case takes longer than CASE_TIMEOUT_S."""

    def expire(signum: int, frame: object) -> None:
        raise TimeoutError(f"import did not finish within {CASE_TIMEOUT_S} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(CASE_TIMEOUT_S)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_one_bad_entry_is_one_clear_error_and_the_rest_imports(
    case: Case, tmp_path: Path, name: str, deadline: None
) -> None:
    import fiftyone as fo

    folder = build_case(case, tmp_path / case.name)
    report = import_folder(folder, name)
    imported = {Path(path).name for path in fo.load_dataset(name).values("filepath")}
    assert "good.png" in imported, f"the good file of {case.name} was not imported"
    lines = [str(error) for error in report.errors]
    if case.expect == "error":
        assert len(lines) == 1, lines
        line = lines[0]
        assert line.startswith(str(folder / case.culprit) + ":"), line
        assert "\n" not in line and len(line) < 400, line
        assert "Traceback" not in line and "internal error" not in line
    else:
        assert lines == [], lines
        if case.expect == "ok":
            assert len(imported) >= 2, imported
        else:
            assert imported == {"good.png"}, imported


def test_the_whole_corpus_in_one_cli_import_ends_with_exit_1_naming_every_bad_file(tmp_path: Path) -> None:
    """One tree holding every case: the command finishes in time with exit 1 (never 2, never a traceback),
    names every culprit once in its JSON report, and imports every good file."""
    import fiftyone as fo

    root = tmp_path / "corpus"
    for case in CASES:
        build_case(case, root / case.name)
    dataset = "hostile-corpus"
    cmd = [sys.executable, "-m", "fabricdata", "import", str(root), "--dataset", dataset, "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr, done.stderr[-3000:]
    report = json.loads(done.stdout[done.stdout.index("{") :])
    named = [error["file"] for error in report["errors"]]
    for case in CASES:
        if case.expect == "error":
            assert named.count(str(root / case.name / case.culprit)) == 1, case.name
    try:
        goods = [p for p in fo.load_dataset(dataset).values("filepath") if Path(p).name == "good.png"]
        assert len(goods) == len(CASES)
    finally:
        fo.delete_dataset(dataset)


def test_a_roboflow_export_with_hostile_entries_imports_everything_else_with_its_splits(tmp_path: Path) -> None:
    """A published layout, not a flat folder: a Roboflow YOLOv8 export (data.yaml, train/valid/test) where one
    image is truncated, one label is a FIFO and one label links outside the export. The CLI names those three,
    once each, and imports every other image with the split its authors gave it."""
    import fiftyone as fo

    from tests.layouts import roboflow_tree, synth_pool

    classes = ("hole", "stain", "broken-weft")
    root = tmp_path / "fabric-holes.v2i.yolov8"
    truth = roboflow_tree(root, synth_pool(tmp_path / "pool", 20, classes), classes)
    truncated = next(root.glob("train/images/*.jpg"))
    truncated.write_bytes(truncated.read_bytes()[:-400])
    fifo = next(root.glob("valid/labels/*.txt"))
    fifo.unlink()
    os.mkfifo(fifo)
    linked = next(root.glob("test/labels/*.txt"))
    outside = tmp_path / "elsewhere.txt"
    linked.rename(outside)
    linked.symlink_to(outside)
    dataset = "hostile-roboflow"
    cmd = [sys.executable, "-m", "fabricdata", "import", str(root), "--dataset", dataset, "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    try:
        assert done.returncode == 1, done.stderr[-3000:]
        report = json.loads(done.stdout[done.stdout.index("{") :])
        assert sorted(error["file"] for error in report["errors"]) == sorted(map(str, (truncated, fifo, linked)))
        problems = " | ".join(error["problem"] for error in report["errors"])
        assert "truncated or corrupt" in problems and "FIFO" in problems and "outside the import folder" in problems
        imported = fo.load_dataset(dataset)
        bad_images = {truncated.name, fifo.with_suffix(".jpg").name, linked.with_suffix(".jpg").name}
        expected = {Path(rel).name: e.split for rel, e in truth.items() if Path(rel).name not in bad_images}
        got = dict(zip(imported.values("filepath"), imported.values("tags"), strict=True))
        assert {Path(p).name for p in got} == set(expected)
        assert all(expected[Path(p).name] in tags for p, tags in got.items())
    finally:
        if fo.dataset_exists(dataset):
            fo.delete_dataset(dataset)
