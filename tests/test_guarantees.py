"""What a crash, a second writer or a LabelImg save can and cannot do (README "Guarantees").

Crash tests stop a real `fabricdata` process at a named point (fabricdata.core.faults), SIGKILL it from here, rerun
the command without --force and compare with an uninterrupted run: same bytes, no duplicates, no temp files,
no worker left alive.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from PIL import Image

from fabricdata.core import fileio
from fabricdata.core.annotation import ImageAnnotation, LabeledBox
from fabricdata.core.boxes import Box, ImageSize, box_to_xywh
from fabricdata.formats import registry
from fabricdata.formats.createml import createml_entry
from fabricdata.formats.voc import write_voc
from fabricdata.formats.yolo import write_classes, yolo_to_text
from fabricdata.store.dataset import GT_FIELD, load_dataset
from fabricdata.store.importer import import_folder
from fabricdata.store.writeback import writeback
from tests.helpers import new_name

CLASSES = ("wrinkle", "drop", "broken-weft")
SIZE = ImageSize(96, 64)


def make_tree(folder: Path, fmt: str, images: int) -> Path:
    """``images`` small LabelImg images with two boxes each, in ``fmt`` (voc, yolo, createml or coco)."""
    folder.mkdir(parents=True)
    entries = []
    for index in range(images):
        name = f"fabric {index:03d}.png"
        Image.new("RGB", (SIZE.width, SIZE.height), (90 + index, 80, 70)).save(folder / name)
        objects = (
            LabeledBox(CLASSES[index % 3], Box(4 + index % 7, 4, 40, 30)),
            LabeledBox(CLASSES[(index + 1) % 3], Box(50, 20 + index % 5, 90, 60)),
        )
        annotation = ImageAnnotation(name, SIZE, objects, folder=folder.name)
        if fmt == "voc":
            write_voc(annotation, folder / f"fabric {index:03d}.xml")
        elif fmt == "yolo":
            (folder / f"fabric {index:03d}.txt").write_text(yolo_to_text(annotation, CLASSES))
        elif fmt == "createml":
            entries.append(createml_entry(annotation))
        else:
            entries.append({"id": index, "file_name": name, "width": SIZE.width, "height": SIZE.height})
            entries += [_coco_box(obj, index, len(entries) + k) for k, obj in enumerate(objects)]
    if fmt == "yolo":
        write_classes(folder / "classes.txt", CLASSES)
    if fmt == "createml":
        (folder / "annotations.json").write_text(json.dumps(entries))
    if fmt == "coco":
        categories = [{"id": k + 1, "name": name} for k, name in enumerate(CLASSES)]
        images = [entry for entry in entries if "file_name" in entry]
        annotations = [entry for entry in entries if "bbox" in entry]
        document = {"categories": categories, "images": images, "annotations": annotations}
        (folder / "_annotations.coco.json").write_text(json.dumps(document))
    return folder


def _coco_box(obj: LabeledBox, image_id: int, index: int) -> dict[str, object]:
    x, y, w, h = box_to_xywh(obj.box)
    return {"id": index, "image_id": image_id, "category_id": CLASSES.index(obj.label) + 1, "bbox": [x, y, w, h]}


def edit_every_sample(dataset_name: str) -> None:
    """An annotator's App edits: the first box of every image moves right by 3 pixels."""
    for sample in load_dataset(dataset_name).iter_samples(autosave=True):
        det = sample[GT_FIELD].detections[0]
        x, y, w, h = det.bounding_box
        det.bounding_box = [x + 3 / SIZE.width, y, w, h]


def tree_bytes(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def leftovers(folder: Path) -> list[str]:
    """Temp files and stage folders anything of ours may leave (none may survive a rerun)."""
    return [str(p) for p in folder.rglob("*") if p.name.endswith(".tmp") or ".stage-" in p.name]


def fabricdata_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "fabricdata", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, **(env or {})})


def kill_at(point: str, args: list[str], tmp_path: Path) -> list[int]:
    """Run ``fabricdata ARGS`` until it reaches crash point ``point`` (``NAME:N``), SIGKILL it there; return the
    pids of the children it had (checked dead by the caller)."""
    marker = tmp_path / f"paused-{point.replace(':', '-')}"
    env = {**os.environ, "FABRICDATA_PAUSE_AT": point, "FABRICDATA_PAUSE_FILE": str(marker)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "fabricdata", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 300
    while not marker.exists():
        if proc.poll() is not None:
            output = proc.stdout.read().decode() if proc.stdout else ""
            pytest.fail(f"{args} ended (rc {proc.returncode}) before {point}:\n{output[-3000:]}")
        assert time.monotonic() < deadline, f"{point} never reached"
        time.sleep(0.05)
    children = [child.pid for child in psutil.Process(proc.pid).children(recursive=True)]
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    if proc.stdout:
        proc.stdout.close()
    return children


def assert_all_dead(pids: list[int], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]
        time.sleep(0.1)
    assert not alive, f"orphaned processes still running: {alive}"


# --- write-back -----------------------------------------------------------------------------------------------

# (format, crash point): killed with the journal written and the file not yet replaced, and with the file
# replaced but its hash not yet recorded (the 3rd file for VOC/YOLO; CreateML has one file for all images)
WRITEBACK_CRASHES = [(fmt, point) for fmt in registry.names() for point in ("writeback.journaled", "writeback.renamed")]


@pytest.mark.parametrize(
    ("fmt", "point"), WRITEBACK_CRASHES, ids=[f"{f}-{p.split('.')[1]}" for f, p in WRITEBACK_CRASHES]
)
@pytest.mark.slow
def test_writeback_killed_mid_way_finishes_on_rerun_byte_identical(
    fmt: str, point: str, tmp_path: Path, names: Callable[[], str]
) -> None:
    crashed, straight = make_tree(tmp_path / "crashed", fmt, 8), tmp_path / "straight"
    shutil.copytree(crashed, straight)
    datasets = names(), names()
    for folder, dataset in zip((crashed, straight), datasets, strict=True):
        assert not import_folder(folder, dataset).errors
        edit_every_sample(dataset)
    assert len(writeback(datasets[1]).written) == 8
    kill_at(
        f"{point}:{1 if registry.get(fmt).hash_unit == 'entry' else 3}",
        ["writeback", "--dataset", datasets[0]],
        tmp_path,
    )
    assert tree_bytes(crashed) != tree_bytes(straight) or point.endswith("renamed")

    done = fabricdata_cli("writeback", "--dataset", datasets[0])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "changed on disk" not in done.stdout + done.stderr
    assert tree_bytes(crashed) == tree_bytes(straight)
    assert leftovers(crashed) == []
    again = writeback(datasets[0])
    assert (again.written, again.errors, again.unchanged) == ([], [], 8)
    reimport = import_folder(crashed, datasets[0])
    assert (reimport.errors, reimport.added, reimport.unchanged) == ([], 0, 8)


def test_import_after_a_killed_writeback_takes_the_written_files_without_conflicts(
    tmp_path: Path, names: Callable[[], str]
) -> None:
    folder = make_tree(tmp_path / "yolo", "yolo", 6)
    dataset = names()
    import_folder(folder, dataset)
    edit_every_sample(dataset)
    kill_at("writeback.renamed:2", ["writeback", "--dataset", dataset], tmp_path)
    report = import_folder(folder, dataset)
    assert (report.errors, report.added) == ([], 0)
    rest = writeback(dataset)
    assert (len(rest.written), rest.errors) == (4, [])  # the two written before the kill are done


def test_two_writebacks_at_once_serialize_without_conflicts(tmp_path: Path, names: Callable[[], str]) -> None:
    folder = make_tree(tmp_path / "voc", "voc", 40)
    dataset = names()
    import_folder(folder, dataset)
    edit_every_sample(dataset)
    cmd = [sys.executable, "-m", "fabricdata", "writeback", "--dataset", dataset]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [proc.communicate(timeout=300)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], outputs
    written = sorted(int(out.split(" file(s) written")[0].split()[-1]) for out in outputs)
    assert written == [0, 40], outputs  # one did the work, the other found nothing left to do
    assert not any("changed on disk" in out for out in outputs)
    again = writeback(dataset)
    assert (again.written, again.errors) == ([], [])


@pytest.mark.parametrize("fmt", registry.names())
def test_a_labelimg_save_during_writeback_is_never_overwritten(
    fmt: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, names: Callable[[], str]
) -> None:
    folder = make_tree(tmp_path / fmt, fmt, 3)
    dataset = names()
    files = {"voc": "fabric 001.xml", "yolo": "fabric 001.txt", "createml": "annotations.json"}
    label_file = files.get(fmt, "_annotations.coco.json")
    saved: dict[Path, bytes] = {}

    def labelimg_saves(target: Path) -> None:  # between write-back's check and its rename
        if target.name == label_file and target not in saved:
            data = target.read_bytes().replace(b"wrinkle", b"drop") + b"\n"
            target.write_bytes(data)
            saved[target] = data

    import_folder(folder, dataset)
    edit_every_sample(dataset)
    monkeypatch.setattr(fileio, "before_replace", labelimg_saves)
    report = writeback(dataset)
    monkeypatch.setattr(fileio, "before_replace", None)
    [(path, data)] = saved.items()
    assert path.read_bytes() == data, "the LabelImg save was overwritten"
    assert [e.path for e in report.errors] == [str(path)]  # CreateML: one error for its one file
    assert "saved by another program during write-back" in str(report.errors[0])
    assert leftovers(folder) == []
    # nothing lost: the App edits are still pending, the save is on disk; import names the conflict
    again = import_folder(folder, dataset)
    assert any("App edits that were not written back" in str(e) for e in again.errors)


def test_long_file_names_write_back_and_augment(tmp_path: Path, names: Callable[[], str]) -> None:
    """A 240-character name (NAME_MAX is 255 bytes): temp and variant names are hash-shortened."""
    folder = tmp_path / "long"
    folder.mkdir()
    stem = "é" * 120  # 240 bytes in UTF-8
    Image.new("RGB", (SIZE.width, SIZE.height)).save(folder / f"{stem}.png")
    write_voc(ImageAnnotation(f"{stem}.png", SIZE, (LabeledBox("drop", Box(2, 2, 30, 30)),)), folder / f"{stem}.xml")
    dataset = names()
    import_folder(folder, dataset)
    edit_every_sample(dataset)
    report = writeback(dataset)
    assert (len(report.written), report.errors) == (1, [])
    done = fabricdata_cli("augment", "--dataset", dataset, "--recipe", "flip", "--split", "all")
    assert done.returncode == 0, done.stdout + done.stderr
    [variant] = load_dataset(dataset).exists("source_id").values("filepath")
    assert len(Path(variant).name.encode()) <= 255 and Path(variant).is_file()


# --- import, augment, export ----------------------------------------------------------------------------------


def _signature(dataset_name: str) -> list[tuple[str, str]]:
    dataset = load_dataset(dataset_name)
    return sorted(zip(dataset.values("filepath"), dataset.values("labels_hash"), strict=True))


@pytest.mark.slow
def test_import_killed_after_its_first_insert_completes_on_rerun_without_duplicates(
    tmp_path: Path, names: Callable[[], str]
) -> None:
    folder = make_tree(tmp_path / "voc", "voc", 12)
    crashed, straight = names(), names()
    import_folder(folder, straight)
    kill_at("import.added:1", ["import", str(folder), "--dataset", crashed], tmp_path)
    done = fabricdata_cli("import", str(folder), "--dataset", crashed)
    assert done.returncode == 0, done.stdout + done.stderr
    assert _signature(crashed) == _signature(straight)
    assert len(set(load_dataset(crashed).values("filepath"))) == 12


@pytest.mark.slow
def test_augment_killed_leaves_no_workers_and_completes_on_rerun(tmp_path: Path, names: Callable[[], str]) -> None:
    folder = make_tree(tmp_path / "voc", "voc", 10)
    crashed, straight = names(), names()
    args = ["--recipe", "fabric-default", "--copies", "2", "--split", "all", "--seed", "7"]
    for dataset in (crashed, straight):
        import_folder(folder, dataset)
    done = fabricdata_cli("augment", "--dataset", straight, *args, "--workers", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    children = kill_at("augment.written:5", ["augment", "--dataset", crashed, *args, "--workers", "2"], tmp_path)
    assert len(children) >= 2, "the pool had no workers to check"
    assert_all_dead(children)
    done = fabricdata_cli("augment", "--dataset", crashed, *args, "--workers", "2")
    assert done.returncode == 0, done.stdout + done.stderr

    def variants(name: str) -> Counter[str]:
        paths = load_dataset(name).exists("source_id").values("filepath")
        return Counter(hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths)

    assert variants(crashed) == variants(straight) and sum(variants(crashed).values()) == 20
    assert len(set(load_dataset(crashed).exists("source_id").values("aug_key"))) == 20


@pytest.mark.slow
def test_export_killed_keeps_the_old_export_and_the_rerun_replaces_it_whole(
    tmp_path: Path, names: Callable[[], str]
) -> None:
    folder = make_tree(tmp_path / "voc", "voc", 12)
    dataset = names()
    out, fresh = tmp_path / "export", tmp_path / "fresh"
    import_folder(folder, dataset)
    assert fabricdata_cli("split", "--dataset", dataset, "--ratios", "0.5,0.25,0.25").returncode == 0
    assert fabricdata_cli("export", "florence", str(out), "--dataset", dataset).returncode == 0
    (out / "train" / "stale.png").write_bytes(b"a file the next export must not keep")
    before = tree_bytes(out)
    edit_every_sample(dataset)
    kill_at("export.written:4", ["export", "florence", str(out), "--dataset", dataset], tmp_path)
    assert tree_bytes(out) == before, "an interrupted export changed the previous one"
    done = fabricdata_cli("export", "florence", str(out), "--dataset", dataset)
    assert done.returncode == 0, done.stdout + done.stderr
    assert fabricdata_cli("export", "florence", str(fresh), "--dataset", dataset).returncode == 0
    assert tree_bytes(out) == tree_bytes(fresh)
    assert leftovers(tmp_path) == []


def test_export_refuses_a_folder_that_is_not_an_export(tmp_path: Path, names: Callable[[], str]) -> None:
    folder = make_tree(tmp_path / "voc", "voc", 4)
    dataset = names()
    import_folder(folder, dataset)
    done = fabricdata_cli("export", "florence", str(folder), "--dataset", dataset, "--allow-empty-split")
    assert done.returncode == 1 and "not a fabricdata export" in done.stderr.replace("\n", " ")
    assert len(list(folder.iterdir())) == 8  # untouched


@pytest.fixture
def names() -> Iterator[Callable[[], str]]:
    """Fresh dataset names; every dataset made with them is deleted after the test."""
    made: list[str] = []

    def make() -> str:
        made.append(new_name("g"))
        return made[-1]

    yield make
    for dataset in made:
        _delete(dataset)


def _delete(name: str) -> None:
    import fiftyone as fo

    if fo.dataset_exists(name):
        fo.delete_dataset(name)
