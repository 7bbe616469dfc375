"""Never silently wrong on real folders (import side): every file accounted for, class names proven, pairing that
picks the right photo, readers as open as the formats, and faults listed like bad files.

Every tree is built here from synthetic images (tests/layouts.py) in the shape people publish, and imported
through the CLI; boxes are compared with the label files' own values.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from fabricdata.core.annotation import ImageAnnotation, LabeledBox
from fabricdata.core.boxes import Box, ImageSize
from fabricdata.formats.pairing import ImageIndex, folder_role
from fabricdata.formats.voc import read_voc, write_voc
from tests.helpers import run
from tests.layouts import Expected, flat_roboflow_tree, roboflow_tree, synth_pool
from tests.test_layouts import _check_dataset, _import, _voc_rows

CLASSES = ("Hole", "Knot", "Stain")
VOC_TEMPLATE = (
    "path: ../datasets/VOC\ntrain: [images/train2012, images/train2007]\nval: images/test2007\n"
    "names:\n  0: aeroplane\n  1: bicycle\n  2: bird\n  3: boat\n  4: bottle\n"
)


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return synth_pool(tmp_path_factory.mktemp("pool"), 12, CLASSES, seed=21)


def _errors(report: dict) -> list[str]:  # type: ignore[type-arg]
    return [f"{e['file']}: {e['element']}: {e['problem']}" for e in report["errors"]]


# --- every file accounted for: sibling folders ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("annotations", "images", "split"),
    [
        ("ANNOTATIONS", "IMAGES", None),  # upper case, as a widely used steel-defect set ships
        ("Validation_Annotations", "Validation_Images", "val"),  # beside Train_Annotations + Train_Images
        ("labels", "data", None),  # FiftyOne's own VOC export
        ("Annotations", "JPEGImages", None),  # Pascal VOC
    ],
)
def test_sibling_voc_folders_in_four_namings_import_every_image_with_its_boxes(
    tmp_path: Path,
    pool: list[Path],
    name: str,
    annotations: str,
    images: str,
    split: str | None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = tmp_path / "steel"
    truth: dict[str, Expected] = {}
    groups = [(annotations, images, pool[:6], split)]
    if split:  # the prefix must choose the sibling: Validation_Annotations never pairs with Train_Images
        groups.append(("Train_Annotations", "Train_Images", pool[6:], "train"))
    for label_dir, image_dir, xmls, tag in groups:
        (root / label_dir).mkdir(parents=True)
        (root / image_dir).mkdir()
        for index, xml in enumerate(xmls):
            stem = f"{xml.stem}_{label_dir[:3]}" if index % 2 else xml.stem.upper()  # stems shared across pairs
            shutil.copyfile(xml, root / label_dir / f"{stem}.xml")
            shutil.copyfile(xml.with_suffix(".jpg"), root / image_dir / f"{stem}.jpg")
            truth[f"{image_dir}/{stem}.jpg"] = Expected(tuple(_voc_rows(xml)), tag)
    code, report, err = _import(root, name, capsys)
    assert code == 0, err
    assert report["warnings"] == [] and report["unlabeled"] == [] and report["errors"] == []
    _check_dataset(name, root, truth)
    assert report["files"] == {"imported": 2 * len(truth), "layout": 0, "refused": 0, "ignored": 0}


def test_folder_roles_and_the_image_folder_beside_a_label_folder(tmp_path: Path) -> None:
    assert folder_role("Validation_Images") == ("images", "validation")
    assert folder_role("ANNOTATIONS") == ("labels", "")
    assert folder_role("data") == ("images", "")
    assert folder_role("unlabeled_images") == ("images", "unlabeled")  # says images first
    assert folder_role("stain") == (None, "")
    root = tmp_path
    dirs = [root / "labels" / "train", root / "labels", root / "images" / "train", root / "images", root / "x"]
    index = ImageIndex([root / "images" / "train" / "a.jpg"], dirs)
    assert index.folders(root / "labels" / "train") == (root / "labels" / "train", root / "images" / "train")
    assert index.pair(root / "labels" / "train" / "a.txt").image == root / "images" / "train" / "a.jpg"
    assert index.folders(root / "x") == (root / "x",)


# --- no import of annotation files ends with exit 0 and 0 images ---------------------------------------------


def _voc_in(folder: Path, images: Path, pool: list[Path]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    images.mkdir(parents=True, exist_ok=True)
    for xml in pool:
        shutil.copyfile(xml, folder / xml.name)
        shutil.copyfile(xml.with_suffix(".jpg"), images / f"{xml.stem}.jpg")


def test_annotation_files_that_pair_with_no_image_are_exit_1_naming_the_best_guess(
    tmp_path: Path, pool: list[Path], name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "set"
    _voc_in(root / "xmls", root / "pictures", pool[:5])  # folder names that say neither labels nor images
    code, out, err = run(["import", str(root), "-d", name], capsys)
    assert code == 1
    assert "5 of 5 annotation files pair with no image: 5 XML files in xmls/ name images that are in pictures/" in err
    assert "import: 0 images" in out


def test_fewer_than_half_paired_is_exit_1_and_the_paired_ones_import(
    tmp_path: Path, pool: list[Path], name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "set"
    _voc_in(root / "xmls", root / "pictures", pool[:6])
    for xml in pool[:2]:  # two of them beside their images
        shutil.copyfile(xml.with_suffix(".jpg"), root / "xmls" / f"{xml.stem}.jpg")
    code, report, _ = _import(root, name, capsys)
    assert code == 1 and report["added"] == 2
    [error] = report["errors"]
    assert error["element"] == "pairing" and error["file"] == str(root.resolve())
    assert error["problem"].startswith("4 of 6 annotation files pair with no image: 4 XML files in xmls/")
    assert "pictures/" in error["problem"]


@pytest.mark.parametrize("what", ["yolo-orphans", "coco-only", "all-refused"])
def test_no_import_of_a_folder_holding_annotation_files_ends_with_exit_0_and_0_images(
    tmp_path: Path, pool: list[Path], name: str, what: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "set"
    root.mkdir()
    if what == "yolo-orphans":
        flat_roboflow_tree(root, pool[:3], CLASSES)
        for image in root.glob("*.jpg"):
            image.rename(root / f"photo-{image.name}")
    elif what == "coco-only":  # a COCO file whose images are not in the folder (renamed)
        for xml in pool[:3]:
            shutil.copyfile(xml.with_suffix(".jpg"), root / f"photo-{xml.stem}.jpg")
        (root / "instances_train.json").write_text(json.dumps(_coco(pool[:3])))
    else:
        for xml in pool[:3]:
            shutil.copyfile(xml.with_suffix(".jpg"), root / f"{xml.stem}.jpg")
            (root / xml.name).write_text(xml.read_text().replace("<width>160", "<width>161"))
    code, out, err = run(["import", str(root), "-d", name], capsys)
    assert code == 1, out
    assert "Traceback" not in err and "internal error" not in err
    assert " 0 images" in out or "no annotations found" in err


# --- the ledger ----------------------------------------------------------------------------------------------


def _coco(xmls: list[Path]) -> dict:  # type: ignore[type-arg]
    images = [{"id": i, "file_name": f"{x.stem}.jpg", "width": 160, "height": 120} for i, x in enumerate(xmls)]
    return {"images": images, "annotations": [], "categories": [{"id": 1, "name": "Hole"}]}


def test_the_ledger_accounts_for_every_file_with_a_reason(
    tmp_path: Path, pool: list[Path], name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "mixed"
    _voc_in(root, root, pool[:4])
    (root / "README.md").write_text("# defects\n")
    (root / "annotations").mkdir()
    (root / "annotations" / "instances_val.json").write_text(json.dumps(_coco(pool[6:8])))
    (root / "images").mkdir()  # the COCO file's images, beside its annotations/ folder
    for xml in pool[6:8]:
        shutil.copyfile(xml.with_suffix(".jpg"), root / "images" / f"{xml.stem}.jpg")
    shutil.copyfile(pool[4].with_suffix(".jpg"), root / "new.jpg")  # an image without labels
    shutil.copyfile(pool[5], root / "ghost.xml")  # a label without an image
    bad = root / f"{pool[3].stem}.xml"
    bad.write_text(bad.read_text().replace("<width>160", "<width>999"))  # refused: size disagrees with the image
    ledger_file = tmp_path / "ledger.jsonl"
    code, report, _ = _import(root, name, capsys, "--ledger", str(ledger_file))
    assert code == 1 and report["added"] == 5
    written = [json.loads(line) for line in ledger_file.read_text().splitlines()]
    assert written == report["ledger"]
    by_path = {Path(entry["path"]).relative_to(root.resolve()).as_posix(): entry for entry in written}
    files = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert set(by_path) == files  # every file once, nothing else
    status = {path: (entry["status"], entry["reason"]) for path, entry in by_path.items()}
    assert status["annotations/instances_val.json"][0] == "imported"
    assert {status[f"images/{xml.stem}.jpg"][0] for xml in pool[6:8]} == {"imported"}
    assert status["README.md"] == ("ignored", "not an image or annotation")
    assert status["new.jpg"] == ("ignored", "image without labels")
    assert status["ghost.xml"][0] == "ignored" and "label without an image" in status["ghost.xml"][1]
    assert status[bad.name][0] == "refused" and "size: annotation says 999x120" in status[bad.name][1]
    image = f"{pool[3].stem}.jpg"
    assert status[image][0] == "refused" and f"its annotation {bad.name} was refused" in status[image][1]
    assert report["files"] == {"imported": 9, "layout": 0, "refused": 2, "ignored": 3}
    assert not any("instances_val.json" in path for path in report["ignored"])
    code, out, _ = run(["import", str(root), "-d", name], capsys)
    assert "ledger: 14 files (9 imported, 0 layout, 2 refused, 3 ignored)" in out


# --- class names proven, never guessed -----------------------------------------------------------------------


def test_several_names_files_are_refused_listing_them_until_names_chooses(
    tmp_path: Path, pool: list[Path], name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import fiftyone as fo

    root = tmp_path / "flat"
    truth = flat_roboflow_tree(root, pool[:6], CLASSES)  # data.yaml names without paths
    (root / "voc.yaml").write_text(VOC_TEMPLATE)  # a template that happens to lie beside it
    code, report, err = _import(root, name, capsys)
    assert code == 1 and report["added"] == 0
    [error] = _errors(report)
    assert error.startswith(f"{root.resolve()}: classes: 6 YOLO label file(s) and 2 class-name files")
    assert "data.yaml (3 names), voc.yaml (5 names); choose one with --names FILE" in error
    code, report, err = _import(root, name, capsys, "--names", str(root / "data.yaml"))
    assert code == 0, err
    _check_dataset(name, root, truth)
    assert fo.load_dataset(name).default_classes == list(CLASSES)
    assert all(sample["class_file"] == str((root / "data.yaml").resolve()) for sample in fo.load_dataset(name))


def test_a_data_yaml_that_names_the_label_folders_wins_over_a_template(
    tmp_path: Path, pool: list[Path], name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "rf"
    truth = roboflow_tree(root, pool[:10], CLASSES)
    (root / "voc.yaml").write_text(VOC_TEMPLATE)
    code, report, err = _import(root, name, capsys)
    assert code == 0, err
    _check_dataset(name, root, truth)
    assert str(root / "data.yaml") in report["layout_files"] and str(root / "voc.yaml") not in report["layout_files"]


def test_a_data_yaml_in_a_sibling_config_folder_gives_the_names(
    tmp_path: Path, pool: list[Path], name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "cfg"
    flat = flat_roboflow_tree(tmp_path / "flat", pool[:4], CLASSES)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    truth = {}
    for relative, expected in flat.items():
        stem = Path(relative).stem
        shutil.copyfile(tmp_path / "flat" / relative, root / "images" / relative)
        shutil.copyfile(tmp_path / "flat" / f"{stem}.txt", root / "labels" / f"{stem}.txt")
        truth[f"images/{relative}"] = expected
    (root / "config").mkdir()
    (root / "config" / "data.yaml").write_text(f"nc: 3\nnames: {list(CLASSES)}\n")
    code, report, err = _import(root, name, capsys)
    assert code == 0, err
    _check_dataset(name, root, truth)
    assert str(root / "config" / "data.yaml") in report["layout_files"]


def test_stats_lists_the_classes_labels_use_and_marks_the_declared_unused(
    tmp_path: Path, pool: list[Path], name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "flat"
    truth = flat_roboflow_tree(root, pool[:6], CLASSES)
    (root / "data.yaml").write_text("names: [Hole, Knot, Stain, Slub]\n")  # Slub: declared, never drawn
    used = [c for c in CLASSES if any(row[0] == c for e in truth.values() for row in e.boxes)]
    unused = [c for c in (*CLASSES, "Slub") if c not in used]
    code, report, err = _import(root, name, capsys)
    assert code == 0, err
    assert report["unused_classes"] == unused and report["classes"] == used
    code, out, _ = run(["stats", "-d", name, "--json"], capsys)
    data = json.loads(out)
    assert data["unused_classes"] == unused and data["classes"] == used
    code, out, _ = run(["stats", "-d", name], capsys)
    assert "Slub (declared, unused)" in out


# --- readers as open as the formats ---------------------------------------------------------------------------


def test_a_gb2312_xml_imports_with_its_chinese_class_names(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import fiftyone as fo

    folder = tmp_path / "neu"
    folder.mkdir()
    Image.new("RGB", (64, 48), (90, 90, 90)).save(folder / "crazing_1.jpg")
    xml = (
        '<?xml version="1.0" encoding="gb2312"?>\n<annotation><folder>钢材</folder><filename>crazing_1.jpg</filename>'
        "<size><width>64</width><height>48</height><depth>3</depth></size>"
        "<object><name>裂纹</name><bndbox><xmin>2</xmin><ymin>3</ymin><xmax>30</xmax><ymax>20</ymax></bndbox></object>"
        "<object><name>斑块</name><bndbox><xmin>31</xmin><ymin>4</ymin><xmax>60</xmax><ymax>40</ymax></bndbox></object>"
        "</annotation>\n"
    )
    data = xml.encode("gb2312")
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")  # the bytes really are not UTF-8
    (folder / "crazing_1.xml").write_bytes(data)
    code, report, err = _import(folder, name, capsys)
    assert code == 0, err
    [sample] = list(fo.load_dataset(name))
    assert [d.label for d in sample.ground_truth.detections] == ["裂纹", "斑块"]
    assert report["classes"] == ["裂纹", "斑块"]


def test_yolo_segmentation_lines_become_their_bounding_boxes_and_are_counted(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import fiftyone as fo

    from fabricdata.core.boxes import fiftyone_to_box

    folder = tmp_path / "seg"
    folder.mkdir()
    Image.new("RGB", (200, 100), (90, 90, 90)).save(folder / "a.jpg")
    (folder / "classes.txt").write_text("hole\nstain\n")
    # a polygon (Ultralytics segment) and a plain box
    (folder / "a.txt").write_text("1 0.1 0.2 0.4 0.25 0.35 0.8 0.15 0.6\n0 0.7 0.5 0.2 0.4\n")
    code, report, err = _import(folder, name, capsys)
    assert code == 0, err
    assert report["polygons_as_boxes"] == 1
    sample = fo.load_dataset(name).first()
    size = ImageSize(200, 100)
    boxes = {d.label: fiftyone_to_box(d.bounding_box, size).as_tuple() for d in sample.ground_truth.detections}
    expected = {"stain": (20.0, 20.0, 80.0, 80.0), "hole": (120.0, 30.0, 160.0, 70.0)}
    for label, box in expected.items():
        assert boxes[label] == pytest.approx(box, abs=1e-6)
    code, out, _ = run(["import", str(folder), "-d", name], capsys)
    assert "1 YOLO segmentation polygon read as bounding boxes" in out


def test_channels_come_from_the_image_not_from_the_xml_depth(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import fiftyone as fo

    folder = tmp_path / "grey"
    folder.mkdir()
    Image.new("L", (64, 48), 100).save(folder / "g.png")
    Image.new("RGB", (64, 48), (1, 2, 3)).save(folder / "c.png")
    for stem, depth in (("g", 3), ("c", 1)):  # both XMLs claim the wrong depth
        box = (LabeledBox("Hole", Box(2, 2, 30, 20)),)
        write_voc(ImageAnnotation(f"{stem}.png", ImageSize(64, 48), box, depth=depth), folder / f"{stem}.xml")
    assert _import(folder, name, capsys)[0] == 0
    channels = {Path(s.filepath).stem: s.metadata.num_channels for s in fo.load_dataset(name)}
    assert channels == {"g": 1, "c": 3}
    assert run(["export", "labelimg", str(tmp_path / "out"), "-d", name], capsys)[0] == 0
    assert {xml.stem: read_voc(xml).depth for xml in (tmp_path / "out").glob("*.xml")} == {"g": 1, "c": 3}
    assert "<depth>3</depth>" in (folder / "g.xml").read_text()  # the source file is left as it is


# --- pairing that picks the right photo -------------------------------------------------------------------------


def _pair_folder(folder: Path, images: list[str], labels: dict[str, tuple[str, Box]]) -> None:
    """Images of distinct colours; each label file names ``<filename>`` and has one box of its own class."""
    folder.mkdir(parents=True)
    for index, image in enumerate(images):
        Image.new("RGB", (64, 48), (index * 40, 0, 0)).save(folder / image)
    for xml, (filename, box) in labels.items():
        ann = ImageAnnotation(filename, ImageSize(64, 48), (LabeledBox(f"from-{Path(xml).stem}", box),))
        write_voc(ann, folder / xml)


def _labels_by_image(name: str) -> dict[str, list[str]]:
    import fiftyone as fo

    dataset = fo.load_dataset(name)
    return {Path(s.filepath).name: [d.label for d in s.ground_truth.detections] for s in dataset}


def test_an_exact_stem_wins_over_a_case_insensitive_one(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "p"
    _pair_folder(folder, ["B.jpg", "b.jpg"], {"b.xml": ("b.jpg", Box(1, 1, 9, 9))})
    code, report, err = _import(folder, name, capsys)
    assert code == 0, err
    assert _labels_by_image(name) == {"b.jpg": ["from-b"]}
    assert [Path(p).name for p in report["unlabeled"]] == ["B.jpg"]


def test_labels_differing_in_case_go_to_their_own_images(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "p"
    labels = {"A.xml": ("A.jpg", Box(1, 1, 9, 9)), "a.xml": ("a.jpg", Box(2, 2, 9, 9))}
    _pair_folder(folder, ["A.jpg", "a.jpg"], labels)
    code, _, err = _import(folder, name, capsys)
    assert code == 0, err
    assert _labels_by_image(name) == {"A.jpg": ["from-A"], "a.jpg": ["from-a"]}


def test_the_filename_chooses_between_images_of_one_stem(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "p"
    _pair_folder(folder, ["y.jpg", "y.png"], {"y.xml": ("y.png", Box(1, 1, 9, 9))})
    code, report, err = _import(folder, name, capsys)
    assert code == 0, err
    assert _labels_by_image(name) == {"y.png": ["from-y"]}
    assert [Path(p).name for p in report["unlabeled"]] == ["y.jpg"]


def test_ambiguous_pairings_are_one_error_naming_both_files(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "p"
    labels = {
        "z.xml": ("elsewhere.jpg", Box(1, 1, 9, 9)),  # z.jpg or z.png: nothing says which
        "c.xml": ("c.jpg", Box(1, 1, 9, 9)),  # only C.jpg: case-insensitive, unambiguous
        "d.xml": ("x.jpg", Box(1, 1, 9, 9)),  # D.jpg and D.JPG: case-insensitive, ambiguous
        "e.xml": ("e.jpg", Box(1, 1, 9, 9)),
        "E.xml": ("E.jpg", Box(1, 1, 9, 9)),  # only e.jpg: e.xml names it exactly, E.xml only ignoring case
    }
    _pair_folder(folder, ["z.jpg", "z.png", "C.jpg", "D.jpg", "D.JPG", "e.jpg"], labels)
    code, report, _ = _import(folder, name, capsys)
    assert code == 1
    assert _labels_by_image(name) == {"C.jpg": ["from-c"], "e.jpg": ["from-e"]}
    errors = sorted(_errors(report))
    assert errors == [
        f"{folder / 'E.xml'}: image: also annotated by {folder / 'e.xml'}",
        f"{folder / 'd.xml'}: filename: 2 images match its name: D.JPG and D.jpg",
        f"{folder / 'z.xml'}: filename: 2 images match its name: z.jpg and z.png",
    ]


def test_a_yolo_label_of_two_same_stem_images_is_an_error_naming_both(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "p"
    folder.mkdir()
    for suffix in ("jpg", "png"):
        Image.new("RGB", (64, 48)).save(folder / f"q.{suffix}")
        Image.new("RGB", (64, 48)).save(folder / f"ok.{suffix}" if suffix == "jpg" else folder / "other.png")
    (folder / "classes.txt").write_text("hole\n")
    (folder / "q.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (folder / "ok.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    code, report, _ = _import(folder, name, capsys)
    assert code == 1 and report["added"] == 1
    assert _errors(report) == [f"{folder / 'q.txt'}: image: 2 images match its name: q.jpg and q.png"]


# --- dataset names, unreadable folders, sidecars ------------------------------------------------------------------


def test_dataset_names_differing_only_in_case_are_refused_in_one_line(
    tmp_path: Path, pool: list[Path], name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import fiftyone as fo

    folder = tmp_path / "a"
    _voc_in(folder, folder, pool[:2])
    assert run(["import", str(folder), "-d", name], capsys)[0] == 0
    other = name.upper()
    code, _, err = run(["import", str(folder), "-d", other], capsys)
    assert code == 1, err
    assert f"dataset name {other!r} clashes with the existing dataset {name!r}" in err
    assert "internal error" not in err and not fo.dataset_exists(other)


def test_a_folder_that_cannot_be_listed_is_one_error_and_the_rest_imports(
    tmp_path: Path, pool: list[Path], name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "set"
    _voc_in(root / "good", root / "good", pool[:5])
    _voc_in(root / "locked", root / "locked", pool[5:10])
    locked = (root / "locked").resolve()
    real_scandir = os.scandir

    def scandir(path: object = ".") -> object:  # chmod 000 does not stop root: refuse the listing itself
        if Path(str(path)) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "scandir", scandir)
    code, report, _ = _import(root, name, capsys)
    assert code == 1 and report["added"] == 5
    assert _errors(report) == [f"{locked}: folder: cannot be listed (Permission denied); nothing below it is read"]


@pytest.mark.parametrize("content", ['{"dataset": "x", "samples": [', "[1, 2]", '{"dataset": "D", "samples": 3}'])
def test_a_malformed_sidecar_is_one_error_and_the_folder_still_imports(
    tmp_path: Path, pool: list[Path], name: str, content: str, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "f"
    _voc_in(folder, folder, pool[:3])
    sidecar = folder / ".fabricdata.json"
    sidecar.write_text(content.replace('"D"', json.dumps(name)))
    code, report, _ = _import(folder, name, capsys)
    assert code == 1 and report["added"] == 3
    [error] = _errors(report)
    assert error.startswith(f"{sidecar.resolve()}: document: malformed export sidecar (")
    assert error.endswith("; imported as an ordinary folder")
