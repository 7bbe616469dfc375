"""Write-back touches only what was edited, and survives the machine failing under it (README "Guarantees").

Files are written as the tools that make them write them (tests/formats_contract.py: float32 VOC coordinates, .5-px
YOLO values, CRLF, pretty JSON); edits are made as the App makes them (relative coordinates straight into MongoDB).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from fabricdata.core import faults
from fabricdata.core.boxes import box_to_fiftyone
from fabricdata.formats import read_folder, registry
from fabricdata.store.dataset import load_dataset
from tests.formats_contract import SAMPLES
from tests.helpers import run
from tests.test_guarantees import edit_every_sample, leftovers, make_tree, tree_bytes

SLOW = pytest.mark.slow


def app_move(dataset: str, image: str, index: int, dx: float, label: str | None = None) -> None:
    """An annotator's App edit: box ``index`` of ``image`` moved right by ``dx`` pixels (and relabelled)."""
    import fiftyone as fo

    sample = load_dataset(dataset).one(fo.ViewField("filepath").ends_with(f"/{image}"))
    det = sample.ground_truth.detections[index]
    x, y, w, h = det.bounding_box
    det.bounding_box = [x + dx / sample.metadata.width, y, w, h]
    if label is not None:
        det.label = label
    sample.save()


def stored_boxes(dataset: str) -> dict[str, list[tuple[str, list[float]]]]:
    """Image name -> (label, relative box) of every box the dataset holds."""
    return {
        Path(sample.filepath).name: [(d.label, list(d.bounding_box)) for d in sample.ground_truth.detections]
        for sample in load_dataset(dataset)
    }


def file_boxes(folder: Path, fmt: str) -> dict[str, list[tuple[str, list[float]]]]:
    """The same, as a fresh import of ``folder`` stores it."""
    return {
        item.image_path.name: [(o.label, box_to_fiftyone(o.box, item.annotation.size)) for o in item.annotation.objects]
        for item in read_folder(folder, fmt).items
    }


def one_number(a: str, b: str) -> bool:
    """True when ``a`` and ``b`` differ in one number only (a one-line file: COCO's ``"bbox":[500.0,...`` where
    the moved box's x changed)."""
    head = next((k for k, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    rest = zip(reversed(a[head:]), reversed(b[head:]), strict=False)
    tail = next((k for k, (x, y) in enumerate(rest) if x != y), min(len(a), len(b)) - head)
    return all(re.fullmatch(r"[0-9.]+", text[head : len(text) - tail]) for text in (a, b))


# --- only what was edited -------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", registry.names())
def test_an_app_edit_of_one_box_changes_only_that_box_and_the_dataset_then_holds_the_file(
    fmt: str, tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / fmt
    SAMPLES[fmt](folder)
    before = {path.name: path.read_bytes() for path in folder.iterdir()}
    assert run(["import", str(folder), "-d", name], capsys)[0] == 0
    app_move(name, "a.png", 1, 3.25)
    code, out, err = run(["writeback", "-d", name], capsys)
    assert code == 0 and "1 file(s) written" in out, err
    after = {path.name: path.read_bytes() for path in folder.iterdir()}
    changed = [file for file in before if before[file] != after[file]]
    assert len(changed) == 1  # one label file; b's file (or entry), the images, classes.txt untouched
    old, new = before[changed[0]].decode(), after[changed[0]].decode()
    old_lines, new_lines = old.splitlines(keepends=True), new.splitlines(keepends=True)
    assert len(old_lines) == len(new_lines)
    differ = [(a, b) for a, b in zip(old_lines, new_lines, strict=True) if a != b]
    assert 1 <= len(differ) <= 2  # the moved box's x values (VOC xmin/xmax, YOLO cx, CreateML x, COCO x)
    for a, b in differ:
        assert a.endswith("\r\n") == b.endswith("\r\n")
        assert a.split()[0] == b.split()[0] or a.strip().startswith(("<x", '"x"', "[")) or one_number(a, b), (a, b)
    # the dataset holds exactly what the file says: re-import sees nothing new, a fresh import stores the same
    assert stored_boxes(name) == file_boxes(folder, fmt)
    code, out, _ = run(["import", str(folder), "-d", name, "--json"], capsys)
    assert code == 0 and json.loads(out)["unchanged"] == 2
    code, out, _ = run(["writeback", "-d", name], capsys)
    assert code == 0 and "0 file(s) written" in out


def test_untouched_float_voc_boxes_keep_their_text_and_both_datasets_export_the_same_bins(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """VOC2012-style float coordinates: an App edit of one box rewrites only that box; the written-back dataset and
    a fresh import of the folder export identical Florence-2 records."""
    import fiftyone as fo

    folder = tmp_path / "voc"
    SAMPLES["voc"](folder)
    xml = folder / "a.xml"
    original = xml.read_bytes()
    assert b"<xmin>45.70000076293945</xmin>\r\n" in original
    assert run(["import", str(folder), "-d", name], capsys)[0] == 0
    app_move(name, "a.png", 2, 0.5, label="wrinkle")
    assert run(["writeback", "-d", name], capsys)[0] == 0
    new = xml.read_bytes()
    first_two = original.split(b"<object>")[:3]
    assert new.split(b"<object>")[:3] == first_two  # header and the two untouched boxes, byte for byte
    edited = new.split(b"<object>")[3]
    assert b"<name>wrinkle</name>" in edited and b"<xmin>10.5</xmin>" in edited and b"<xmax>30.5</xmax>" in edited
    assert b"<ymin>400.0</ymin>" in edited and edited.count(b"\r\n") == original.split(b"<object>")[3].count(b"\r\n")
    fresh = f"{name}-fresh"
    try:
        assert run(["import", str(folder), "-d", fresh], capsys)[0] == 0
        assert stored_boxes(fresh) == stored_boxes(name)
        exports = []
        for dataset in (name, fresh):
            ds = fo.load_dataset(dataset)
            ds.match(fo.ViewField("filepath").ends_with("a.png")).tag_samples("train")
            ds.match(fo.ViewField("filepath").ends_with("b.png")).tag_samples("val")
            out = tmp_path / f"export-{dataset}"
            code, _, err = run(["export", "florence", str(out), "-d", dataset, "--allow-empty-split"], capsys)
            assert code == 0, err
            exports.append(tree_records(out))
        assert exports[0] == exports[1] and any("<loc_" in line for line in exports[0]["train"])
    finally:
        if fo.dataset_exists(fresh):
            fo.delete_dataset(fresh)


def tree_records(export: Path) -> dict[str, list[str]]:
    return {
        split.name: split.joinpath("annotations.jsonl").read_text().splitlines()
        for split in export.iterdir()
        if split.joinpath("annotations.jsonl").is_file()
    }


def test_a_move_of_a_third_of_a_pixel_on_an_integer_file_is_rounded_and_the_dataset_takes_the_file(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = make_tree(tmp_path / "voc", "voc", 2)
    before = tree_bytes(folder)
    assert run(["import", str(folder), "-d", name], capsys)[0] == 0
    files = file_boxes(folder, "voc")
    app_move(name, "fabric 001.png", 0, 0.33)
    code, out, err = run(["writeback", "-d", name], capsys)
    assert code == 0 and "0 file(s) written" in out and "1 edit(s) rounded" in out, out + err
    assert tree_bytes(folder) == before
    assert stored_boxes(name) == files  # the box is back where the file has it, for good
    code, out, _ = run(["writeback", "-d", name], capsys)
    assert code == 0 and "0 file(s) written" in out and "rounded" not in out


def test_a_yolo_dataset_imported_with_classes_writes_back_and_gets_its_classes_txt(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "weft"
    SAMPLES["yolo"](folder)
    (folder / "classes.txt").unlink()  # the names were only ever given on the command line
    lines = (folder / "a.txt").read_bytes().splitlines(keepends=True)
    code, _, err = run(
        ["import", str(folder), "-d", name, "--format", "yolo", "--classes", "wrinkle,drop,broken"], capsys
    )
    assert code == 0, err
    app_move(name, "a.png", 0, 0.0, label="broken")
    code, out, err = run(["writeback", "-d", name], capsys)
    assert code == 0 and "1 file(s) written" in out, err
    assert (folder / "classes.txt").read_text() == "wrinkle\ndrop\nbroken\n"
    new = (folder / "a.txt").read_bytes().splitlines(keepends=True)
    assert new[1:] == lines[1:] and new[0] == b"2" + lines[0][1:]  # only the class index changed
    code, out, _ = run(["import", str(folder), "-d", name, "--json"], capsys)
    assert code == 0 and json.loads(out)["unchanged"] == 2  # the new classes.txt says what --classes said


def test_a_yolo_box_read_from_a_polygon_is_relabelled_in_place_but_never_moved(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "seg"
    folder.mkdir()
    Image.new("RGB", (100, 100)).save(folder / "p.png")
    (folder / "classes.txt").write_text("hole\nstain\n")
    polygon = "0 0.1 0.1 0.4 0.12 0.35 0.5 0.12 0.45\n"
    (folder / "p.txt").write_text(polygon + "1 0.7 0.7 0.2 0.2\n")
    assert run(["import", str(folder), "-d", name], capsys)[0] == 0
    app_move(name, "p.png", 0, 0.0, label="stain")
    assert run(["writeback", "-d", name], capsys)[0] == 0
    assert (folder / "p.txt").read_text() == "1" + polygon[1:] + "1 0.7 0.7 0.2 0.2\n"  # the outline kept
    app_move(name, "p.png", 0, 5.0)
    code, _, err = run(["writeback", "-d", name], capsys)
    assert code == 1 and "p.txt: line 1: holds a segmentation polygon whose box was moved" in err
    assert (folder / "p.txt").read_text() == "1" + polygon[1:] + "1 0.7 0.7 0.2 0.2\n"


def test_an_edited_gb2312_xml_stays_gb2312_and_its_other_bytes_stay(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "neu"
    folder.mkdir()
    Image.new("RGB", (64, 48)).save(folder / "c.jpg")
    xml = (
        '<?xml version="1.0" encoding="gb2312"?>\n<annotation><folder>钢材</folder><filename>c.jpg</filename>'
        "<size><width>64</width><height>48</height><depth>3</depth></size>"
        "<object><name>裂纹</name><bndbox><xmin>2</xmin><ymin>3</ymin><xmax>30</xmax><ymax>20</ymax></bndbox></object>"
        "<object><name>斑块</name><bndbox><xmin>31</xmin><ymin>4</ymin><xmax>60</xmax><ymax>40</ymax></bndbox></object>"
        "</annotation>\n"
    ).encode("gb2312")
    (folder / "c.xml").write_bytes(xml)
    assert run(["import", str(folder), "-d", name], capsys)[0] == 0
    app_move(name, "c.jpg", 1, -2.0, label="裂纹")
    assert run(["writeback", "-d", name], capsys)[0] == 0
    expected = xml.replace("斑块".encode("gb2312"), "裂纹".encode("gb2312")).replace(b"<xmin>31<", b"<xmin>29<")
    assert (folder / "c.xml").read_bytes() == expected.replace(b"<xmax>60<", b"<xmax>58<")


# --- when the machine fails under it ------------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["EACCES", "ENOSPC"])
def test_a_fault_on_one_file_is_listed_and_the_others_are_written(
    code: str, tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = make_tree(tmp_path / "voc", "voc", 4)
    assert run(["import", str(folder), "-d", name], capsys)[0] == 0
    edit_every_sample(name)
    before = tree_bytes(folder)
    monkeypatch.setattr(faults, "_failures", Counter())
    monkeypatch.setenv("FABRICDATA_FAIL_AT", f"fileio.write:{code}:2")  # the second file written fails
    status, out, err = run(["writeback", "-d", name], capsys)
    assert status == 1 and "3 file(s) written" in out, out + err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "fabric 001.xml: file: cannot be written" in errors[0] and f"[{code}]" in errors[0]
    after = tree_bytes(folder)
    assert [f for f in before if before[f] != after[f]] == ["fabric 000.xml", "fabric 002.xml", "fabric 003.xml"]
    assert leftovers(folder) == []
    monkeypatch.delenv("FABRICDATA_FAIL_AT")
    status, out, _ = run(["writeback", "-d", name], capsys)  # the edit is still pending, and now lands
    assert status == 0 and "1 file(s) written" in out


def test_a_fifo_in_place_of_a_label_file_is_refused_without_hanging(tmp_path: Path, name: str) -> None:
    folder = make_tree(tmp_path / "voc", "voc", 3)
    done = subprocess.run(
        [sys.executable, "-m", "fabricdata", "import", str(folder), "-d", name], capture_output=True, timeout=300
    )
    assert done.returncode == 0
    edit_every_sample(name)
    fifo = folder / "fabric 001.xml"
    fifo.unlink()
    os.mkfifo(fifo)
    done = subprocess.run(
        [sys.executable, "-m", "fabricdata", "writeback", "-d", name],
        capture_output=True,
        text=True,
        timeout=120,  # before: blocked for good in open(), holding the dataset's lease
    )
    assert done.returncode == 1 and "2 file(s) written" in done.stdout, done.stdout + done.stderr
    [line] = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert "fabric 001.xml: file: not a regular file (a FIFO)" in line
    assert leftovers(folder) == []


@SLOW
def test_a_database_that_loses_its_last_writes_mid_writeback_reruns_clean_without_force(tmp_path: Path) -> None:
    """mongod killed while write-back runs, and its state rolled back to before the write-back (the worst case of
    "its last writes are lost"): the files write-back itself wrote are recognised, by import and by write-back."""
    from tests import mongod
    from tests.test_concurrency import start_paused

    folder, straight = make_tree(tmp_path / "crashed", "yolo", 6), tmp_path / "straight"
    shutil.copytree(folder, straight)
    dbpath, saved = tmp_path / "db", tmp_path / "db-before-writeback"
    uri, server = mongod.launch(dbpath)
    try:
        env = {"FIFTYONE_DATABASE_URI": uri}
        for tree, dataset in ((folder, "crashed"), (straight, "straight")):
            assert _cli(env, "import", str(tree), "-d", dataset).returncode == 0
            _edit_in(env, dataset)
        assert _cli(env, "writeback", "-d", "straight").returncode == 0
        _stop(server)
        shutil.copytree(dbpath, saved)
        uri, server = mongod.launch(dbpath)
        env = {"FIFTYONE_DATABASE_URI": uri}
        writing = start_paused("writeback.renamed:3", ["writeback", "-d", "crashed"], tmp_path, env)
        server.kill()  # three files renamed, two of them recorded, when the database dies
        server.wait(timeout=30)
        writing.go_on()
        code, _, err = writing.finish(timeout=120)
        assert code == 1 and "cannot reach the database" in err
        shutil.rmtree(dbpath)
        shutil.copytree(saved, dbpath)  # ... and comes back without any write of that write-back
        uri, server = mongod.launch(dbpath)
        env = {"FIFTYONE_DATABASE_URI": uri}
        done = _cli(env, "import", str(folder), "-d", "crashed")
        assert done.returncode == 0 and "App edits" not in done.stderr, done.stdout + done.stderr
        done = _cli(env, "writeback", "-d", "crashed")
        assert done.returncode == 0 and "changed on disk" not in done.stdout + done.stderr, done.stderr
        assert "3 file(s) written" in done.stdout
        assert tree_bytes(folder) == tree_bytes(straight) and leftovers(folder) == []
        again = _cli(env, "writeback", "-d", "crashed")
        assert again.returncode == 0 and "0 file(s) written" in again.stdout
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=30)


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fabricdata", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **env},
    )


def _edit_in(env: dict[str, str], dataset: str) -> None:
    code = f"from tests.test_guarantees import edit_every_sample; edit_every_sample({dataset!r})"
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def _stop(server: subprocess.Popen[bytes]) -> None:
    server.terminate()
    server.wait(timeout=60)
