"""The FiftyOne store through the CLI: import, idempotency, stats, App-style edits and exact write-back."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest

from fabricdata.core.boxes import ImageSize, box_to_fiftyone, box_to_voc, fiftyone_to_box
from fabricdata.formats import read_folder
from fabricdata.formats.voc import read_voc
from fabricdata.prepare.synth import SynthConfig, generate
from tests.helpers import run


@pytest.fixture
def dataset_name(name: str) -> str:
    return name


@pytest.fixture
def synth_folder(tmp_path: Path) -> Path:
    return generate(SynthConfig(images=12, seed=3, width=320, height=240), tmp_path / "fabric")


def _mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


def test_import_is_idempotent_and_schema_ready_for_the_app(
    synth_folder: Path, dataset_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import fiftyone as fo

    code, out, _ = run(["import", str(synth_folder), "-d", dataset_name, "--json"], capsys)
    report = json.loads(out)
    assert code == 0 and report["added"] == 12 and report["errors"] == []
    ds = fo.load_dataset(dataset_name)
    assert ds.persistent and len(ds) == 12
    assert ds.default_classes == ["wrinkle", "drop", "broken"]
    schema = ds.label_schemas["ground_truth"]
    assert schema["classes"] == ["wrinkle", "drop", "broken"]
    assert {a["name"] for a in schema["attributes"]} == {"difficult", "truncated"}
    assert "ground_truth" in ds.active_label_schemas
    # boxes are exactly the files' boxes
    sample = ds.first()
    ann = read_voc(sample["annotation_path"])
    size = ImageSize(sample.metadata.width, sample.metadata.height)
    got = [(d.label, box_to_voc(fiftyone_to_box(d.bounding_box, size))) for d in sample.ground_truth.detections]
    assert got == [(o.label, box_to_voc(o.box)) for o in ann.objects]

    code, out, _ = run(["import", str(synth_folder), "-d", dataset_name, "--json"], capsys)
    again = json.loads(out)
    assert code == 0 and again["added"] == 0 and again["unchanged"] == 12 and len(ds) == 12


def test_the_bulk_reader_gives_every_files_boxes_in_pixels_whatever_the_batch(
    synth_folder: Path, dataset_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``columns.read_samples``, what stats, validate, export and review read boxes through: sizes, pixel boxes
    equal to the label files, requested attributes and sample fields in order, the same in batches."""
    import fiftyone as fo

    from fabricdata.store.columns import read_samples

    assert run(["import", str(synth_folder), "-d", dataset_name], capsys)[0] == 0
    view = fo.load_dataset(dataset_name).sort_by("filepath")
    whole = list(read_samples(view, {"ground_truth": ("truncated", "difficult")}, fields=["annotation_path"]))
    assert list(read_samples(view, {"ground_truth": ("truncated", "difficult")}, ["annotation_path"], 5)) == whole
    assert [s.filepath for s in whole] == sorted(view.values("filepath")) and len(whole) == 12
    for sample in whole:
        ann = read_voc(sample.values[0])
        assert sample.size == ann.size
        got = [(b.label, box_to_voc(b.box), b.attributes) for b in sample.boxes["ground_truth"]]
        assert got == [(o.label, box_to_voc(o.box), (o.truncated, o.difficult)) for o in ann.objects]
    assert sum(len(s.boxes["ground_truth"]) for s in whole) == view.count("ground_truth.detections")


def test_bulk_import_stores_exactly_what_fiftyones_add_samples_stores(synth_folder: Path, dataset_name: str) -> None:
    import warnings

    import fiftyone as fo

    from fabricdata.store.bulk import new_sample
    from fabricdata.store.dataset import open_dataset
    from fabricdata.store.fingerprints import refresh_fingerprints
    from fabricdata.store.importer import import_folder

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the layout check must pass: no fallback warning
        import_folder(synth_folder, dataset_name)
    ours = fo.load_dataset(dataset_name)
    reference = open_dataset(dataset_name + "-ref", ours.default_classes)
    try:
        scan = read_folder(synth_folder)
        reference.add_samples([new_sample(item, synth_folder.resolve()) for item in scan.items], progress=False)
        refresh_fingerprints(reference)  # what import does after its bulk insert (store/fingerprints)
        assert ours.get_field_schema(flat=True).keys() == reference.get_field_schema(flat=True).keys()

        def comparable(sample: fo.Sample) -> dict[str, object]:
            data = sample.to_dict()
            for key in ("_id", "created_at", "last_modified_at", "_rand", "_dataset_id"):
                data.pop(key, None)
            for det in data["ground_truth"]["detections"]:
                det.pop("_id")
            return data

        ours_by_path = {s.filepath: comparable(s) for s in ours}
        assert ours_by_path == {s.filepath: comparable(s) for s in reference}
        assert ours.count("ground_truth.detections") == reference.count("ground_truth.detections") > 0
        assert len(ours.take(3, seed=0).values("filepath")) == 3  # FiftyOne random views use _rand
    finally:
        reference.delete()


def test_changed_and_removed_files(synth_folder: Path, dataset_name: str, capsys: pytest.CaptureFixture[str]) -> None:
    import fiftyone as fo

    run(["import", str(synth_folder), "-d", dataset_name], capsys)
    xml = synth_folder / "fabric_00001.xml"
    ann = read_voc(xml)
    from fabricdata.formats.voc import write_voc

    write_voc(ann.with_objects([]), xml)  # annotator cleared the image in LabelImg
    (synth_folder / "fabric_00002.xml").unlink()
    (synth_folder / "fabric_00002.jpg").unlink()
    code, out, _ = run(["import", str(synth_folder), "-d", dataset_name, "--json"], capsys)
    report = json.loads(out)
    assert report["updated"] == 1 and report["unchanged"] == 10 and len(report["missing"]) == 1
    ds = fo.load_dataset(dataset_name)
    assert len(ds) == 12
    cleared = ds.one(fo.ViewField("filepath") == str(synth_folder / "fabric_00001.jpg"))
    assert cleared.ground_truth.detections == []
    code, out, _ = run(["import", str(synth_folder), "-d", dataset_name, "--prune", "--json"], capsys)
    assert code == 0
    assert json.loads(out)["removed"] == [str(synth_folder / "fabric_00002.jpg")] and len(ds) == 11


def test_bad_files_are_listed_and_good_ones_imported(
    assets: Path, dataset_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import fiftyone as fo

    folder = assets / "voc"
    (folder / "other tool.xml").write_bytes(b"<annotation><filename>other tool.jpg</filename></annotation>")
    code, _, err = run(["import", str(folder), "-d", dataset_name], capsys)
    assert code == 1
    assert "other tool.xml" in err and "size" in err and "required element is missing" in err
    assert len(fo.load_dataset(dataset_name)) == 3  # every good file imported


def test_app_edit_flows_to_writeback_within_half_a_pixel(
    synth_folder: Path, dataset_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import fiftyone as fo

    run(["import", str(synth_folder), "-d", dataset_name], capsys)
    ds = fo.load_dataset(dataset_name)
    sample = ds.match(fo.ViewField("ground_truth.detections").length() > 0).first()
    xml = Path(sample["annotation_path"])
    size = ImageSize(sample.metadata.width, sample.metadata.height)
    before = _mtimes(synth_folder)
    # an App edit: the box moved by fractional coordinates, straight into MongoDB
    det = sample.ground_truth.detections[0]
    box = fiftyone_to_box(det.bounding_box, size)
    moved = type(box)(box.xmin + 10.37, box.ymin + 3.61, box.xmax + 10.37, box.ymax + 3.61)
    det.bounding_box = box_to_fiftyone(moved, size)
    det.label = "broken"
    sample.save()

    code, out, _ = run(["writeback", "-d", dataset_name], capsys)
    assert code == 0 and "1 file(s) written" in out
    after = _mtimes(synth_folder)
    assert [n for n in before if before[n] != after[n]] == [xml.name]  # nothing else touched
    written = read_voc(xml)
    new = next(o for o in written.objects if o.label == "broken").box
    for got, want in zip(new.as_tuple(), moved.as_tuple(), strict=True):
        assert abs(got - want) <= 0.5
    assert written.folder == "fabric" and written.database == "fabricdata-synth"  # header kept
    # a second write-back has nothing to do; a re-import sees the file as unchanged
    code, out, _ = run(["writeback", "-d", dataset_name], capsys)
    assert "0 file(s) written" in out
    code, out, _ = run(["import", str(synth_folder), "-d", dataset_name, "--json"], capsys)
    assert json.loads(out)["unchanged"] == 12


def test_writeback_refuses_files_changed_on_disk_unless_forced(
    synth_folder: Path, dataset_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import fiftyone as fo

    run(["import", str(synth_folder), "-d", dataset_name], capsys)
    ds = fo.load_dataset(dataset_name)
    sample = ds.match(fo.ViewField("ground_truth.detections").length() > 0).first()
    sample.ground_truth.detections = sample.ground_truth.detections[1:]
    sample.save()
    xml = Path(sample["annotation_path"])
    edited_in_labelimg = xml.read_bytes().replace(b"<difficult>0</difficult>", b"<difficult>1</difficult>")
    xml.write_bytes(edited_in_labelimg)
    code, _, err = run(["writeback", "-d", dataset_name], capsys)
    assert code == 1 and xml.name in err and "changed on disk" in err
    assert xml.read_bytes() == edited_in_labelimg  # the LabelImg edit is not lost
    # and re-import refuses to overwrite the App edit with the file
    code, _, err = run(["import", str(synth_folder), "-d", dataset_name], capsys)
    assert code == 1 and "App edits" in err
    code, _, _ = run(["writeback", "-d", dataset_name, "--force"], capsys)
    assert code == 0 and len(read_voc(xml).objects) == len(sample.ground_truth.detections)


def test_unchanged_import_then_writeback_reproduces_every_byte(
    assets: Path, dataset_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import fiftyone as fo

    folder = assets / "voc"
    originals = {p.name: p.read_bytes() for p in folder.glob("*.xml")}
    run(["import", str(folder), "-d", dataset_name], capsys)
    ds = fo.load_dataset(dataset_name)
    for sample in ds.iter_samples(autosave=True):  # touch every label without changing it
        sample.ground_truth = sample.ground_truth.copy()
    code, out, _ = run(["writeback", "-d", dataset_name, "--force"], capsys)
    assert code == 0 and "0 file(s) written" in out
    assert {p.name: p.read_bytes() for p in folder.glob("*.xml")} == originals


@pytest.mark.parametrize("fmt", ["yolo", "createml"])
def test_writeback_keeps_each_files_own_format(
    assets: Path, dataset_name: str, fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import fiftyone as fo

    folder = assets / fmt
    assert run(["import", str(folder), "-d", dataset_name], capsys)[0] == 0
    ds = fo.load_dataset(dataset_name)
    sample = ds.one(fo.ViewField("filepath") == str(folder / "tissu_défaut_é.jpg"))
    sample.ground_truth.detections[0].label = "wrinkle"
    sample.save()
    code, out, _ = run(["writeback", "-d", dataset_name], capsys)
    assert code == 0 and "1 file(s) written" in out
    scan = read_folder(folder)
    labels = {item.image_path.name: [o.label for o in item.annotation.objects] for item in scan.items}
    assert labels["tissu_défaut_é.jpg"] == ["wrinkle"]
    assert labels["0 (1).jpg"] == ["wrinkle", "broken-weft", "broken-weft"]


def test_export_labelimg_and_reimport_updates_the_same_samples(
    synth_folder: Path, dataset_name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import fiftyone as fo

    run(["import", str(synth_folder), "-d", dataset_name], capsys)
    ds = fo.load_dataset(dataset_name)
    ds.take(3, seed=1).tag_samples("recheck")
    out = tmp_path / "fixes"
    code, text, _ = run(["export", "labelimg", str(out), "-d", dataset_name, "--tag", "recheck"], capsys)
    assert code == 0 and "exported 3" in text
    assert len(list(out.glob("*.xml"))) == 3 and (out / "classes.txt").exists()
    xml = sorted(out.glob("*.xml"))[0]
    ann = read_voc(xml)
    from fabricdata.formats.voc import write_voc

    write_voc(ann.with_objects([]), xml)  # the annotator removes every box in LabelImg
    code, text, _ = run(["import", str(out), "-d", dataset_name, "--json"], capsys)
    report = json.loads(text)
    assert code == 0 and report["updated"] == 1 and report["unchanged"] == 2 and len(ds) == 12
    fixed = ds.one(fo.ViewField("filepath") == str(synth_folder / ann.filename))
    assert fixed.ground_truth.detections == []
    run(["writeback", "-d", dataset_name], capsys)
    assert read_voc(synth_folder / f"{Path(ann.filename).stem}.xml").objects == ()


def test_stats_json(synth_folder: Path, dataset_name: str, capsys: pytest.CaptureFixture[str]) -> None:
    run(["import", str(synth_folder), "-d", dataset_name], capsys)
    code, out, _ = run(["stats", "-d", dataset_name, "--json"], capsys)
    data = json.loads(out)
    truth = read_folder(synth_folder)
    total = sum(len(i.annotation.objects) for i in truth.items)
    assert code == 0 and data["samples"] == 12
    assert sum(sum(v.values()) for v in data["instances"].values()) == total
    assert data["defect_free"]["unassigned"] == sum(1 for i in truth.items if not i.annotation.objects)
    assert set(data["box_sizes"]) <= {"wrinkle", "drop", "broken"}


def test_missing_dataset_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["stats", "-d", "no-such-dataset"], capsys)
    assert code == 1 and "does not exist" in err and len(err.strip().splitlines()) == 1


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_import_into_a_shared_mongodb_server(synth_folder: Path, tmp_path: Path) -> None:
    """The scale-out path: a separately started mongod, reached through FIFTYONE_DATABASE_URI."""
    import subprocess
    import sys

    import pymongo

    sys.path.insert(0, str(Path(__file__).parents[1] / "scripts"))
    from check_mongod import bundled_mongod

    mongod = bundled_mongod()
    assert mongod is not None
    port = _free_port()
    dbpath = tmp_path / "shared-db"
    dbpath.mkdir()
    server = subprocess.Popen(
        [str(mongod), "--dbpath", str(dbpath), "--bind_ip", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        uri = f"mongodb://127.0.0.1:{port}"
        client: pymongo.MongoClient = pymongo.MongoClient(uri, serverSelectionTimeoutMS=20000)
        client.admin.command("ping")
        env = {**os.environ, "FIFTYONE_DATABASE_URI": uri}
        cmd = [sys.executable, "-m", "fabricdata", "import", str(synth_folder), "-d", "shared", "--json"]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["added"] == 12
        names = client["fiftyone"]["datasets"].distinct("name")
        assert "shared" in names
        client.close()
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.slow
def test_demo_generates_imports_and_prints_stats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import fiftyone as fo

    name = f"demo-{uuid.uuid4().hex[:6]}"
    code, out, _ = run(["demo", "--out", str(tmp_path / "demo"), "--images", "10", "-d", name], capsys)
    try:
        assert code == 0 and "demo done" in out and "defect-free" in out and "validate" in out
        ds = fo.load_dataset(name)
        originals = len(ds.match(~fo.ViewField("source_id").exists()))
        total = len(ds)
        assert originals == 10 and total > 10  # flipped and balancing variants
        assert (tmp_path / "demo" / "contact_sheet.png").exists()
        code, out, _ = run(["demo", "--out", str(tmp_path / "demo"), "--images", "10", "-d", name], capsys)
        assert code == 0 and len(fo.load_dataset(name)) == total  # recreated, not duplicated
    finally:
        fo.delete_dataset(name)


def test_exif_rotated_images_keep_stored_sizes_and_are_reported(
    synth_folder: Path, dataset_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import fiftyone as fo
    from PIL import Image

    image_path = synth_folder / "fabric_00003.jpg"
    with Image.open(image_path) as image:
        exif = image.getexif()
        exif[0x0112] = 6  # "rotate 90 CW to display"
        image.save(image_path, exif=exif)
    code, out, _ = run(["import", str(synth_folder), "-d", dataset_name, "--json"], capsys)
    report = json.loads(out)
    assert code == 0 and report["exif_rotated"] == [str(image_path)] and report["errors"] == []
    sample = fo.load_dataset(dataset_name).one(fo.ViewField("filepath") == str(image_path))
    assert (sample.metadata.width, sample.metadata.height) == (320, 240)  # stored size, not swapped
