"""When the machine fails under a command, the command says so in one line and exits 1 (README "Guarantees").

A database that is down or dies mid-command names its URI within seconds; a full disk, a quota, a file-size
limit, a forbidden or read-only folder, a file where a folder should be, on the product's own writes (export,
augment, writeback's temp file, review's report) name the path, leave no temp file and no half-written file.
Real faults where this machine can make them (RLIMIT_FSIZE in a child process, a file in the way); the suite runs
as root, where chmod stops nothing and no read-only mount can be made, so the rest are OSErrors raised at the
write point with no file name (fabricdata.core.faults: FABRICDATA_FAIL_AT), as write() reports a full disk.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fabricdata.store.dataset import F_SOURCE_ID, load_dataset, managed_dir
from fabricdata.store.importer import import_folder
from tests import mongod
from tests.helpers import free_port, run
from tests.test_concurrency import _review_run, review_state, start_paused
from tests.test_guarantees import edit_every_sample, fabricdata_cli, leftovers, make_tree, tree_bytes

SLOW = pytest.mark.slow


def error_line(err: str) -> str:
    """The one ``error:`` line of a failed command (and no traceback, no "internal error")."""
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "internal error" not in err and "Traceback" not in err, err
    return lines[0]


# --- the database ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command", [["stats"], pytest.param(["split"], marks=SLOW), pytest.param(["import", "."], marks=SLOW)]
)
def test_a_database_that_is_down_is_one_line_naming_it_within_seconds(command: list[str], tmp_path: Path) -> None:
    uri = f"mongodb://127.0.0.1:{free_port()}"
    began = time.monotonic()
    subprocess.run([sys.executable, "-c", "import fiftyone, fabricdata.cli.main"], check=True, env=os.environ)
    start_up = time.monotonic() - began  # on a busy machine, importing FiftyOne alone takes seconds
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "fabricdata", *command, "-d", "fabric"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "FIFTYONE_DATABASE_URI": uri},
    )
    took = time.monotonic() - began
    assert done.returncode == 1, done.stderr
    line = error_line(done.stderr)
    assert f"cannot reach the database at {uri} (" in line and "Connection refused" in line
    assert "FIFTYONE_DATABASE_URI" in line
    assert took - start_up < 20, f"{took:.0f} s, {start_up:.0f} s of it start-up (MongoDB's own wait is 30 s)"


@pytest.mark.slow
def test_a_database_that_dies_mid_import_is_one_line_naming_it(
    tmp_path: Path,
) -> None:
    uri, server = mongod.launch(tmp_path / "second-mongod")
    try:
        folder = make_tree(tmp_path / "voc", "voc", 30)
        importing = start_paused(
            "import.added:1", ["import", str(folder), "-d", "dying"], tmp_path, {"FIFTYONE_DATABASE_URI": uri}
        )
        server.kill()
        server.wait(timeout=30)
        began = time.monotonic()
        importing.go_on()
        code, _, err = importing.finish(timeout=120)
        took = time.monotonic() - began
    finally:
        if server.poll() is None:
            server.kill()
    assert code == 1, err
    assert f"cannot reach the database at {uri}" in error_line(err)
    assert took < 30, f"{took:.0f} s (MongoDB's own wait is 30 s)"


# --- the disk ---------------------------------------------------------------------------------------------------


@pytest.fixture
def split_dataset(
    tmp_path: Path,
    name: str,
) -> str:
    """An imported, split dataset of 12 images with texture (PNGs of a few KB each)."""
    folder = make_tree(tmp_path / "voc", "voc", 12)
    rng = np.random.default_rng(0)
    for image in folder.glob("*.png"):
        Image.fromarray(rng.integers(0, 255, (64, 96, 3), dtype=np.uint8)).save(image)
    dataset = name
    assert not import_folder(folder, dataset).errors
    assert fabricdata_cli("split", "-d", dataset, "--ratios", "0.5,0.25,0.25").returncode == 0
    return dataset


def _fail_at(monkeypatch: pytest.MonkeyPatch, point: str, code: str) -> None:
    monkeypatch.setenv("FABRICDATA_FAIL_AT", f"{point}:{code}")


@pytest.mark.parametrize("code", ["ENOSPC", pytest.param("EROFS", marks=SLOW)])
def test_export_on_a_full_or_read_only_disk_names_the_export_and_leaves_nothing(
    code: str,
    split_dataset: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "export"
    _fail_at(monkeypatch, "export.written", code)
    status, _, err = run(["export", "florence", str(out), "-d", split_dataset], capsys)
    assert status == 1
    assert error_line(err).startswith(f"error: {out}: ") and f"[{code}]" in err
    assert not out.exists() and leftovers(tmp_path) == []


@pytest.mark.slow
@pytest.mark.parametrize("blocked", ["blocker/out", "blocker/sub/out"], ids=["EEXIST", "ENOTDIR"])
def test_export_below_a_file_names_it(
    blocked: str, split_dataset: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Real faults: a file where the export's parent folder should be (EEXIST), or above it (ENOTDIR)."""
    (tmp_path / "blocker").write_text("a file, not a folder")
    status, _, err = run(["export", "florence", str(tmp_path / blocked), "-d", split_dataset], capsys)
    assert status == 1
    line = error_line(err)
    assert str(tmp_path / "blocker") in line and ("[EEXIST]" if blocked.count("/") == 1 else "[ENOTDIR]") in line


def test_augment_refused_by_the_file_system_names_the_variant_and_adds_nothing(
    split_dataset: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _fail_at(monkeypatch, "fileio.write", "EACCES")
    args = ["augment", "-d", split_dataset, "--recipe", "flip", "--split", "all", "--workers", "1"]
    status, _, err = run(args, capsys)
    assert status == 1
    line = error_line(err)
    folder = managed_dir(split_dataset, "variants")
    assert f"error: {folder}/flip/" in line and "[EACCES]" in line, line
    assert leftovers(folder) == [] and not [p for p in folder.rglob("*") if p.is_file()]
    assert len(load_dataset(split_dataset).exists(F_SOURCE_ID)) == 0


@pytest.mark.slow
def test_augment_where_its_folder_is_a_file_names_it(split_dataset: str, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = managed_dir(split_dataset, "variants") / "flip"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("a file, not a folder")
    status, _, err = run(["augment", "-d", split_dataset, "--recipe", "flip", "--workers", "1"], capsys)
    assert status == 1
    line = error_line(err)
    assert f"error: {blocker}/" in line and "[ENOTDIR]" in line, line


@pytest.mark.parametrize("command", ["augment", pytest.param("export", marks=SLOW)])
def test_a_file_size_limit_names_the_file_and_leaves_no_part_of_it(
    command: str, split_dataset: str, tmp_path: Path
) -> None:
    """RLIMIT_FSIZE in a child process: the kernel refuses the write (EFBIG) past the limit."""
    limit = 4096 if command == "augment" else 512
    args = {
        "augment": ["augment", "-d", split_dataset, "--recipe", "flip", "--split", "all", "--workers", "1"],
        "export": ["export", "florence", str(tmp_path / "export"), "-d", split_dataset],
    }[command]
    if command == "export":  # the label version every export records is taken first, so the limit meets the export
        subprocess.run([sys.executable, "-m", "fabricdata", "snapshot", "-d", split_dataset], check=True, timeout=300)
    done = subprocess.run(
        [sys.executable, "-m", "fabricdata", *args],
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)),
    )
    assert done.returncode == 1, done.stderr
    line = error_line(done.stderr)
    assert "[EFBIG]" in line and "ulimit -f" in line
    where = managed_dir(split_dataset, "variants") if command == "augment" else tmp_path / "export"
    assert f"error: {where}" in line, line
    assert leftovers(tmp_path) == [] and leftovers(managed_dir(split_dataset, "variants").parent) == []
    if command == "augment":
        assert all(p.stat().st_size <= limit for p in managed_dir(split_dataset, "variants").rglob("*") if p.is_file())
    else:
        assert not (tmp_path / "export").exists()


@pytest.mark.parametrize("code", ["ENOSPC", pytest.param("EDQUOT", marks=SLOW), pytest.param("EROFS", marks=SLOW)])
def test_writeback_on_a_full_or_read_only_disk_names_every_label_file_and_changes_none(
    code: str,
    tmp_path: Path,
    name: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = make_tree(tmp_path / "voc", "voc", 4)
    dataset = name
    import_folder(folder, dataset)
    edit_every_sample(dataset)
    before = tree_bytes(folder)
    _fail_at(monkeypatch, "fileio.write", code)
    status, _, err = run(["writeback", "-d", dataset], capsys)
    assert status == 1 and "internal error" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 4, err  # write-back carries on with the other files: each failure listed
    assert all(f"{folder}/fabric 00" in line and f"[{code}]" in line for line in errors), err
    assert tree_bytes(folder) == before and leftovers(folder) == []


@pytest.mark.slow
@pytest.mark.parametrize("code", ["EACCES", "EROFS"])
def test_a_review_report_that_cannot_be_written_names_it(
    code: str,
    tmp_path: Path,
    name: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    dataset = name
    run_folder = _review_run(tmp_path, dataset)
    _fail_at(monkeypatch, "fileio.write", code)
    status, _, err = run(["review", "--run", str(run_folder), "-d", dataset], capsys)
    assert status == 1
    line = error_line(err)
    assert line.startswith(f"error: {run_folder}/review.json: ") and f"[{code}]" in line
    assert leftovers(run_folder) == [] and not (run_folder / "review.json").exists()


# --- the predictions file ---------------------------------------------------------------------------------------


def test_invalid_utf8_in_predictions_is_one_line_naming_the_file_and_line(
    tmp_path: Path,
    name: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    dataset = name
    run_folder = _review_run(tmp_path, dataset)
    predictions = run_folder / "predictions.jsonl"
    lines = predictions.read_bytes().splitlines(keepends=True)
    lines[1] = lines[1].replace(b'"<OD>"', b'"<OD>\xff"')
    predictions.write_bytes(b"".join(lines))
    status, _, err = run(["review", "--run", str(run_folder), "-d", dataset], capsys)
    assert status == 1
    line = error_line(err)
    assert f"{predictions}: line 2: not UTF-8 text (byte 0xff" in line


def _huge_label(record: dict) -> None:  # type: ignore[type-arg]
    record["detections"][0]["label"] = "x" * 40_000_000  # a 40 MB line


def _many_boxes(record: dict) -> None:  # type: ignore[type-arg]
    record["detections"] = record["detections"][:1] * 12_000


def _long_labels(record: dict) -> None:  # type: ignore[type-arg]
    record["detections"] = [{**record["detections"][0], "label": "y" * 1_000_000} for _ in range(9)]  # 9 MB


@pytest.mark.parametrize(
    ("spoil", "problem"),
    [
        (_huge_label, "longer than 16777216 bytes"),
        (_many_boxes, "more than 10000 boxes for one image"),
        pytest.param(_long_labels, "of the 16 MiB a MongoDB document holds", marks=SLOW),
    ],
    ids=["40MB-line", "12000-boxes", "9MB-of-labels"],
)
def test_oversize_predictions_are_refused_before_the_earlier_review_is_touched(
    spoil: Callable[[dict], None],  # type: ignore[type-arg]
    problem: str,
    tmp_path: Path,
    name: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    dataset = name
    run_folder = _review_run(tmp_path, dataset)
    assert run(["review", "--run", str(run_folder), "-d", dataset], capsys)[0] == 0
    before = review_state(dataset)
    predictions = run_folder / "predictions.jsonl"
    records = [json.loads(line) for line in predictions.read_text().splitlines()]
    spoil(records[2])
    predictions.write_text("".join(json.dumps(record) + "\n" for record in records))
    status, _, err = run(["review", "--run", str(run_folder), "-d", dataset], capsys)
    assert status == 1
    assert f"{predictions}: line 3" in error_line(err) and problem in err
    assert review_state(dataset) == before  # its views load, its evaluation and predictions are there
