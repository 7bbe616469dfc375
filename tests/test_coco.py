"""COCO detection JSON through the registry: a Roboflow COCO export and an ``annotations/instances_*.json`` set
import with their splits and class names, an App edit is written back into the one file of many images touching
only that box, and bad entries are one line each while the rest imports.

Trees are built from synthetic images (tests/layouts.py) as Roboflow and the COCO tools write them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from fabricdata.formats.layouts import split_in_name
from fabricdata.formats.pairing import ImageIndex
from tests.helpers import run
from tests.layouts import Expected, _rows, synth_pool
from tests.test_layouts import _check_dataset, _import
from tests.test_writeback import app_move

CLASSES = ("Hole", "Knot", "Stain")
SPLITS = {"train": "train", "valid": "val", "test": "test"}


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return synth_pool(tmp_path_factory.mktemp("coco-pool"), 10, CLASSES, seed=5)


def _number(value: float) -> float | int:
    return int(value) if value == int(value) else value


def coco_document(xmls: list[Path], names: list[str]) -> dict[str, Any]:
    """A COCO document as Roboflow writes it: the dataset's own category 0 above the classes, ``bbox`` and
    ``area`` with integers where they are whole, an empty segmentation."""
    categories = [{"id": 0, "name": "fabric-defects", "supercategory": "none"}]
    categories += [{"id": k + 1, "name": c, "supercategory": "fabric-defects"} for k, c in enumerate(CLASSES)]
    images, annotations = [], []
    for k, (xml, file_name) in enumerate(zip(xmls, names, strict=True)):
        images.append({"id": k, "license": 1, "file_name": file_name, "height": 120, "width": 160})
        for label, x0, y0, x1, y1 in _rows(xml):
            bbox = [_number(v) for v in (x0, y0, x1 - x0, y1 - y0)]
            row = {"id": len(annotations), "image_id": k, "category_id": CLASSES.index(label) + 1, "bbox": bbox}
            annotations.append(row | {"area": _number(bbox[2] * bbox[3]), "segmentation": [], "iscrowd": 0})
    return {"info": {"year": "2024"}, "categories": categories, "images": images, "annotations": annotations}


def roboflow_coco_tree(root: Path, pool: list[Path]) -> dict[str, Expected]:
    """Roboflow's COCO export: ``{train,valid,test}/`` each holding its images and ``_annotations.coco.json``
    (one compact line), and README.roboflow.txt."""
    truth: dict[str, Expected] = {}
    groups: dict[str, list[Path]] = {"train": pool[:6], "valid": pool[6:8], "test": pool[8:]}
    for folder, xmls in groups.items():
        (root / folder).mkdir(parents=True)
        names = [f"{xml.stem}_jpg.rf.{k:08x}.jpg" for k, xml in enumerate(xmls)]
        for xml, name in zip(xmls, names, strict=True):
            shutil.copyfile(xml.with_suffix(".jpg"), root / folder / name)
            truth[f"{folder}/{name}"] = Expected(_rows(xml), SPLITS[folder])
        document = coco_document(xmls, names)
        (root / folder / "_annotations.coco.json").write_text(json.dumps(document, separators=(",", ":")))
    (root / "README.roboflow.txt").write_text("exported via roboflow.com\n")
    return truth


def instances_tree(root: Path, pool: list[Path]) -> dict[str, Expected]:
    """The COCO tools' layout: ``annotations/instances_{train,val}.json`` (pretty-printed) and one ``images/``
    folder beside it; the split is in the JSON's name only."""
    truth: dict[str, Expected] = {}
    (root / "annotations").mkdir(parents=True)
    (root / "images").mkdir()
    for split, xmls in {"train": pool[:7], "val": pool[7:]}.items():
        for xml in xmls:
            shutil.copyfile(xml.with_suffix(".jpg"), root / "images" / f"{xml.stem}.jpg")
            truth[f"images/{xml.stem}.jpg"] = Expected(_rows(xml), split)
        document = coco_document(xmls, [f"{xml.stem}.jpg" for xml in xmls])
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(document, indent=2))
    return truth


@pytest.mark.parametrize("layout", ["roboflow", "instances"])
def test_a_coco_export_imports_with_its_splits_and_class_names(
    tmp_path: Path, pool: list[Path], name: str, layout: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / layout
    truth = (roboflow_coco_tree if layout == "roboflow" else instances_tree)(root, pool)
    code, report, err = _import(root, name, capsys)
    assert code == 0, err
    assert report["added"] == len(truth) and report["errors"] == []
    _check_dataset(name, root, truth)  # boxes to 1e-3 px, split tags, no category
    if layout == "roboflow":
        assert report["splits"] == {"train": 6, "val": 2, "test": 2}
        assert report["split_sources"] == {"folder names": 10}
    else:
        assert report["splits"] == {"train": 7, "val": 3}
        assert report["split_sources"] == {"COCO file instances_train.json": 7, "COCO file instances_val.json": 3}
    labels = {label for expected in truth.values() for label, *_ in expected.boxes}
    import fiftyone as fo

    stored = fo.load_dataset(name).distinct("ground_truth.detections.label")
    assert set(stored) == labels and "fabric-defects" not in stored  # names by category id, not the dataset's
    status = {Path(entry["path"]).name: entry["status"] for entry in report["ledger"]}
    assert {s for n, s in status.items() if n.endswith(".json")} == {"imported"}


def test_an_app_edit_is_written_into_the_one_coco_file_changing_only_that_box(
    tmp_path: Path, pool: list[Path], name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "rf"
    roboflow_coco_tree(root, pool)
    files = {path: path.read_bytes() for path in root.rglob("*.json")}
    code, _, err = _import(root, name, capsys)
    assert code == 0, err
    valid = root / "valid" / "_annotations.coco.json"
    document = json.loads(files[valid])
    image = document["images"][1]
    [k, old] = next((k, a) for k, a in enumerate(document["annotations"]) if a["image_id"] == image["id"])
    app_move(name, image["file_name"], 0, 3.0)
    code, out, err = run(["writeback", "-d", name], capsys)
    assert code == 0, err + out
    for path, data in files.items():
        if path != valid:
            assert path.read_bytes() == data, path  # the other splits' files: not one byte
    new_text, old_text = valid.read_text(), files[valid].decode()
    piece = json.dumps(old, separators=(",", ":"))
    start = old_text.index(piece)
    end = start + len(piece)
    assert new_text.startswith(old_text[:start]) and new_text.endswith(old_text[end:])  # all else byte for byte
    new = json.loads(new_text)["annotations"][k]
    assert new["bbox"][1:] == old["bbox"][1:] and abs(new["bbox"][0] - (old["bbox"][0] + 3.0)) < 0.01
    assert new["area"] == pytest.approx(new["bbox"][2] * new["bbox"][3])
    assert {key: v for key, v in new.items() if key not in ("bbox", "area")} == {
        key: v for key, v in old.items() if key not in ("bbox", "area")
    }
    code, report, _ = _import(root, name, capsys)
    assert code == 0 and report["unchanged"] == 10 and report["updated"] == 0  # the dataset holds what the file says


def test_hostile_coco_entries_are_one_line_each_and_the_rest_imports(
    tmp_path: Path, pool: list[Path], name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "bad"
    root.mkdir()
    names = [f"{xml.stem}.jpg" for xml in pool[:5]]
    for xml, file_name in zip(pool[:4], names[:4], strict=True):
        shutil.copyfile(xml.with_suffix(".jpg"), root / file_name)  # the fifth image is missing
    document = coco_document(pool[:5], names)
    by_image = {a["image_id"]: a for a in document["annotations"]}
    by_image[1]["bbox"] = [10, 10, 20]
    by_image[2]["category_id"] = 99
    document["annotations"].append({"id": 999, "image_id": 42, "category_id": 1, "bbox": [1, 1, 2, 2]})
    path = root / "_annotations.coco.json"
    path.write_text(json.dumps(document))
    code, report, err = _import(root, name, capsys)
    assert code == 1 and "Traceback" not in err
    assert report["added"] == 2  # images 0 and 3
    assert all(e["file"] == str(path.resolve()) for e in report["errors"])
    bbox_at = document["annotations"].index(by_image[1])
    category_at = document["annotations"].index(by_image[2])
    stray_at = len(document["annotations"]) - 1
    assert {(e["element"], e["problem"]) for e in report["errors"]} == {
        (f"annotations[{bbox_at}].bbox", "expected 4 numbers: x, y, width, height in pixels"),
        (f"annotations[{category_at}].category_id", "no category has this id"),
        (f"annotations[{stray_at}].image_id", "no image has this id"),
    }
    code, out, err = run(["import", str(root), "-d", name], capsys)
    shown = out + err
    assert code == 1 and "Traceback" not in shown
    for line in (
        f"annotations[{bbox_at}].bbox: expected 4 numbers: x, y, width, height in pixels (got [10, 10, 20])",
        f"annotations[{category_at}].category_id: no category has this id (got 99)",
        f"annotations[{stray_at}].image_id: no image has this id (got 42)",
    ):
        assert f"{path.resolve()}: {line}" in shown, shown
    [missing] = [w for w in report["warnings"] if "images[4]" in w]
    assert missing == f"{path.resolve()}: images[4].file_name {names[4]!r}: no such image in the folder"


def test_a_coco_file_name_finds_its_image_and_its_split_in_each_layout(tmp_path: Path) -> None:
    images = [tmp_path / "images" / "a.jpg", tmp_path / "train2017" / "b.jpg", tmp_path / "sub" / "c.jpg"]
    index = ImageIndex(images, [tmp_path / "images", tmp_path / "train2017", tmp_path / "sub"])
    label = tmp_path / "annotations" / "instances_train2017.json"
    assert index.relative(label, "a.jpg") == images[0]  # an images/ folder beside annotations/
    assert index.relative(label, "b.jpg") == images[1]  # the folder the file's name ends with
    assert index.relative(tmp_path / "x.json", "sub\\c.jpg") == images[2]  # relative, with Windows separators
    assert [split_in_name(Path(n)) for n in ("instances_val2017.json", "_annotations.coco.json", "test.json")] == [
        "val",
        None,
        "test",
    ]


def test_an_error_value_that_looks_like_console_markup_is_printed_whole(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``[nan, 1, 2, 2]`` reads like a rich style tag: the error line must still show it (no markup in errors)."""
    from PIL import Image

    folder = tmp_path / "coco"
    folder.mkdir()
    for stem in ("a", "b"):
        Image.new("RGB", (32, 24), (80, 70, 60)).save(folder / f"{stem}.jpg")
    document = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 32, "height": 24},
                   {"id": 2, "file_name": "b.jpg", "width": 32, "height": 24}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [float("nan"), 1, 2, 2]},
                        {"id": 2, "image_id": 2, "category_id": 1, "bbox": [4, 4, 10, 8]}],
        "categories": [{"id": 1, "name": "wrinkle"}],
    }  # fmt: skip
    (folder / "_annotations.coco.json").write_text(json.dumps(document))  # json writes NaN as NaN
    code, _, err = run(["import", str(folder), "-d", name], capsys)
    assert code == 1
    assert "annotations[0].bbox: expected 4 numbers: x, y, width, height in pixels (got [nan, 1, 2, 2])" in err, err


def test_images_that_share_an_id_are_refused_each_in_one_line(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two entries with one id: whose are the annotations? Both are refused, named; the other images import."""
    from PIL import Image

    folder = tmp_path / "coco"
    folder.mkdir()
    for stem in ("a", "b", "c"):
        Image.new("RGB", (32, 24), (80, 70, 60)).save(folder / f"{stem}.jpg")
    document = {
        "images": [{"id": 4, "file_name": "a.jpg"}, {"id": 4, "file_name": "b.jpg"}, {"id": 5, "file_name": "c.jpg"}],
        "annotations": [{"id": 1, "image_id": 4, "category_id": 1, "bbox": [1, 1, 5, 5]},
                        {"id": 2, "image_id": 5, "category_id": 1, "bbox": [4, 4, 10, 8]}],
        "categories": [{"id": 1, "name": "wrinkle"}],
    }  # fmt: skip
    (folder / "_annotations.coco.json").write_text(json.dumps(document))
    code, _, err = run(["import", str(folder), "-d", name], capsys)
    assert code == 1
    for k in (0, 1):
        assert f"images[{k}].id: 2 images share this id: their annotations cannot be told apart (got 4)" in err, err
    import fiftyone as fo

    assert [Path(p).name for p in fo.load_dataset(name).values("filepath")] == ["c.jpg"]
