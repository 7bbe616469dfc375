"""Folders as people publish them import as they come: darknet, Roboflow, Ultralytics, LabelImg VOC with TIFF.

Each tree is built from synthetic images in the published shape (tests/layouts.py) and imported through the CLI,
from its root and from the folder above it; boxes, split tags, categories, warnings and ignored files are
compared with the truth the builder returns.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fabricdata.core.boxes import ImageSize, fiftyone_to_box
from fabricdata.core.errors import InvalidValueError
from fabricdata.formats.layouts import read_darknet_data, read_data_yaml
from tests.helpers import run
from tests.layouts import (
    Expected,
    darknet_tree,
    flat_roboflow_tree,
    roboflow_tree,
    synth_pool,
    ultralytics_tree,
    voc_tiff_tree,
)

ROBOFLOW_CLASSES = ("Hole", "Knot", "Stain")
STAIN_CLASSES = ("stain", "hole")


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return synth_pool(tmp_path_factory.mktemp("pool"), 20, ROBOFLOW_CLASSES)


@pytest.fixture(scope="module")
def stain_pool(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return synth_pool(tmp_path_factory.mktemp("stain-pool"), 18, STAIN_CLASSES, seed=11)


def _import(folder: Path, name: str, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, dict, str]:  # type: ignore[type-arg]
    code, out, err = run(["import", str(folder), "-d", name, "--json", *extra], capsys)
    return code, json.loads(out) if out.strip().startswith("{") else {}, err


def _check_dataset(name: str, root: Path, truth: dict[str, Expected]) -> None:
    """Every image of the truth is one sample with exactly its boxes (1e-3 px), split tag and category."""
    import fiftyone as fo

    dataset = fo.load_dataset(name)
    samples = {Path(s.filepath).relative_to(root.resolve()).as_posix(): s for s in dataset}
    assert set(samples) == set(truth)
    for relative, expected in truth.items():
        sample = samples[relative]
        size = ImageSize(sample.metadata.width, sample.metadata.height)
        got = sorted(
            (d.label, *fiftyone_to_box(d.bounding_box, size).as_tuple()) for d in sample.ground_truth.detections
        )
        want = sorted(expected.boxes)
        assert [g[0] for g in got] == [w[0] for w in want], relative
        for g, w in zip(got, want, strict=True):
            assert max(abs(a - b) for a, b in zip(g[1:], w[1:], strict=True)) < 1e-3, (relative, g, w)
        assert [t for t in sample.tags if t in ("train", "val", "test")] == ([expected.split] if expected.split else [])
        assert sample["category"] == expected.category, relative


# --- darknet ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("level", ["root", "above"])
def test_darknet_project_imports_as_it_comes(
    tmp_path: Path, stain_pool: list[Path], name: str, level: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "above" / "fabric-stains"
    truth = darknet_tree(root, stain_pool, STAIN_CLASSES)
    target = root if level == "root" else root.parent
    code, report, err = _import(target, name, capsys)
    assert code == 0, err
    _check_dataset(name, root, truth)
    assert report["added"] == len(truth) and report["errors"] == []
    # train/valid from the list files (one entry was written as the author's /content/darknet/... path)
    assert report["split_sources"] == {
        "list file data/train.txt" if level == "root" else "list file fabric-stains/data/train.txt": 12,
        "list file data/valid.txt" if level == "root" else "list file fabric-stains/data/valid.txt": 3,
        "folder names": 3,
    }
    assert report["splits"] == {"train": 12, "val": 3, "test": 3}
    unlabeled = sorted(Path(p).name for p in report["unlabeled"])
    assert unlabeled == ["new photo 1.jpg", "new photo 2.jpg"]
    assert any("ghost.txt: label without an image" in w for w in report["warnings"])
    assert [Path(p).name for p in report["ignored"]] == ["README.md"]
    assert {Path(p).name for p in report["layout_files"]} == {"obj.data", "train.txt", "valid.txt", "classes.names"}
    import fiftyone as fo

    assert fo.load_dataset(name).default_classes == list(STAIN_CLASSES)


def test_strict_turns_warnings_into_exit_1_and_reimport_is_clean(
    tmp_path: Path, stain_pool: list[Path], name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "darknet"
    truth = darknet_tree(root, stain_pool, STAIN_CLASSES)
    code, out, _ = run(["import", str(root), "-d", name], capsys)
    assert code == 0
    [summary] = [line for line in out.splitlines() if line.startswith("import: ")]
    boxes = sum(len(e.boxes) for e in truth.values())
    assert summary == (
        f"import: 18 images (18 added, 0 updated, 0 unchanged); {boxes} boxes; 2 classes; "
        "splits: train 12, val 3, test 3 (from folder names, list file data/train.txt, list file data/valid.txt); "
        "1 ignored; 3 warnings; 0 errors; ledger: 44 files (36 imported, 4 layout, 0 refused, 4 ignored)"
    )  # the ledger: 18 images + 18 labels, obj.data + 2 lists + names, README + 2 unlabeled images + ghost.txt
    code, report, _ = _import(root, name, capsys)
    assert code == 0 and report["unchanged"] == 18 and report["added"] == 0
    code, _, _ = _import(root, name, capsys, "--strict")
    assert code == 1


# --- Roboflow / Ultralytics ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("names_as_dict", "level"), [(False, "root"), (True, "above")])
def test_roboflow_export_imports_with_its_splits(
    tmp_path: Path, pool: list[Path], name: str, names_as_dict: bool, level: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "above" / "Fabric-Holes.v2i.yolov8"
    truth = roboflow_tree(root, pool, ROBOFLOW_CLASSES, names_as_dict)
    code, report, err = _import(root if level == "root" else root.parent, name, capsys)
    assert code == 0, err
    _check_dataset(name, root, truth)
    assert sorted(Path(p).name for p in report["ignored"]) == ["README.dataset.txt", "README.roboflow.txt"]
    assert report["warnings"] == [] and report["unlabeled"] == []
    assert report["splits"] == {"train": 14, "val": 4, "test": 2}
    assert set(report["split_sources"]) == {f"data.yaml {'' if level == 'root' else root.name + '/'}data.yaml"}


@pytest.mark.parametrize("level", ["root", "above"])
def test_flat_yolo_export_with_readme_beside_the_labels(
    tmp_path: Path, pool: list[Path], name: str, level: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "above" / "flat"
    truth = flat_roboflow_tree(root, pool[:6], ROBOFLOW_CLASSES)
    code, report, err = _import(root if level == "root" else root.parent, name, capsys)
    assert code == 0, err
    _check_dataset(name, root, truth)
    assert sorted(Path(p).name for p in report["ignored"]) == ["README.dataset.txt", "README.roboflow.txt"]


@pytest.mark.parametrize("level", ["root", "above"])
def test_ultralytics_layout_with_named_yaml(
    tmp_path: Path, pool: list[Path], name: str, level: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "above" / "ultra"
    truth = ultralytics_tree(root, pool[:8], ROBOFLOW_CLASSES)
    code, report, err = _import(root if level == "root" else root.parent, name, capsys)
    assert code == 0, err
    _check_dataset(name, root, truth)
    assert report["splits"] == {"train": 6, "val": 2}


def test_classes_option_alone_is_enough_for_yolo(
    tmp_path: Path, pool: list[Path], name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "bare"
    truth = flat_roboflow_tree(root, pool[:4], ROBOFLOW_CLASSES)
    (root / "data.yaml").unlink()
    code, _, err = _import(root, name, capsys)
    assert code == 1 and "no class names: give --classes" in err and str(root) in err
    code, _, err = _import(root, name, capsys, "--classes", ",".join(ROBOFLOW_CLASSES))
    assert code == 0, err
    _check_dataset(name, root, truth)


# --- LabelImg VOC, grayscale TIFF ---------------------------------------------------------------------------


@pytest.mark.parametrize("level", ["root", "above"])
def test_voc_in_split_subfolders_with_grayscale_tiff(
    tmp_path: Path, pool: list[Path], name: str, level: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import fiftyone as fo
    from PIL import Image

    root = tmp_path / "above" / "maskdb"
    truth = voc_tiff_tree(root, pool[:6])
    code, report, err = _import(root if level == "root" else root.parent, name, capsys)
    assert code == 0, err
    _check_dataset(name, root, truth)
    assert report["proxies"] == 6
    dataset = fo.load_dataset(name)
    assert dataset.app_config.grid_media_field == "proxy_filepath" == dataset.app_config.modal_media_field
    for sample in dataset:
        assert sample.filepath.endswith(".tif") and sample.metadata.num_channels == 1
        proxy = Path(sample["proxy_filepath"])
        assert proxy.suffix == ".png" and root not in proxy.parents  # never beside the user's files
        with Image.open(proxy) as shown, Image.open(sample.filepath) as original:
            assert shown.format == "PNG" and shown.size == original.size
            assert list(shown.getdata()) == list(original.getdata())  # 8-bit grey: the same pixels


def test_export_labelimg_keeps_depth_database_and_segmented(
    tmp_path: Path, pool: list[Path], name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from fabricdata.formats.voc import read_voc

    root = tmp_path / "maskdb"
    voc_tiff_tree(root, pool[:3])
    assert _import(root, name, capsys)[0] == 0
    assert run(["export", "labelimg", str(tmp_path / "out"), "-d", name], capsys)[0] == 0
    exported = sorted((tmp_path / "out").glob("*.xml"))
    assert len(exported) == 3
    for xml in exported:
        ann = read_voc(xml)
        assert (ann.depth, ann.database, ann.segmented) == (1, "maskdb", 0)


def test_sixteen_bit_png_gets_a_proxy_scaled_by_its_bit_depth(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The proxy is the one decode (README "Bring your own folder"): a 16-bit sample's high byte, as the model
    sees it; not a constant white, not a stretch of this frame's own range."""
    import fiftyone as fo
    import numpy as np
    from PIL import Image

    from fabricdata.core.annotation import ImageAnnotation, LabeledBox
    from fabricdata.core.boxes import Box
    from fabricdata.formats.voc import write_voc

    folder = tmp_path / "deep"
    folder.mkdir()
    ramp = (np.arange(64 * 48, dtype=np.uint16).reshape(48, 64) * 8).astype(np.uint16)
    Image.fromarray(ramp).save(folder / "ramp.png")
    write_voc(
        ImageAnnotation("ramp.png", ImageSize(64, 48), (LabeledBox("Hole", Box(2, 2, 30, 20)),)), folder / "ramp.xml"
    )
    assert _import(folder, name, capsys)[0] == 0
    sample = fo.load_dataset(name).first()
    with Image.open(sample["proxy_filepath"]) as proxy:
        pixels = np.asarray(proxy)
    assert proxy.mode == "L" and np.array_equal(pixels, (ramp >> 8).astype(np.uint8)) and pixels.max() == 95


# --- what is not an import ----------------------------------------------------------------------------------


def test_nothing_found_names_the_layouts_tried(tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "photos" / "new"
    folder.mkdir(parents=True)
    (folder / "notes.md").write_text("to label\n")
    shutil.copyfile(Path(__file__).parent / "assets" / "voc" / "0 (1).jpg", folder / "a.jpg")
    code, _, err = run(["import", str(tmp_path / "photos"), "-d", name], capsys)
    assert code == 1
    line = err.strip().splitlines()[-1]
    assert "no annotations found at any depth" in line and "darknet (obj.data + list files)" in line
    assert "Ultralytics/Roboflow" in line and "1 image(s) without labels, e.g. new/a.jpg" in line


def test_format_filter_points_to_the_format_that_is_there(
    tmp_path: Path, pool: list[Path], name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "rf"
    roboflow_tree(root, pool[:4], ROBOFLOW_CLASSES)
    code, _, err = run(["import", str(root), "-d", name, "--format", "voc"], capsys)
    assert code == 1 and "yolo annotations found in train/labels (use --format yolo or auto)" in err


def test_two_annotations_of_one_image_are_one_error_naming_both(
    tmp_path: Path, pool: list[Path], name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "dup"
    folder.mkdir()
    shutil.copyfile(pool[0].with_suffix(".jpg"), folder / "a.jpg")
    shutil.copyfile(pool[0], folder / "a.xml")
    text = pool[0].read_text().replace(f"<filename>{pool[0].stem}.jpg", "<filename>a.jpg")
    (folder / "copy of a.xml").write_text(text)
    code, report, _ = _import(folder, name, capsys)
    assert code == 1 and report["added"] == 1
    [error] = report["errors"]
    assert error["file"].endswith("copy of a.xml") and "also annotated by" in error["problem"]
    assert error["problem"].endswith("a.xml")


# --- layout file readers ------------------------------------------------------------------------------------


def test_data_yaml_names_as_list_or_dict_and_their_errors(tmp_path: Path) -> None:
    path = tmp_path / "data.yaml"
    path.write_text("names: [a, b]\nnc: 2\ntrain: ../train/images\nvalid: [x/images, y/images]\n")
    config = read_data_yaml(path)
    assert config is not None and config.names == ("a", "b")
    assert config.splits == {"train": ["../train/images"], "val": ["x/images", "y/images"]}
    path.write_text("names:\n  1: b\n  0: a\n")
    assert read_data_yaml(path).names == ("a", "b")  # type: ignore[union-attr]
    path.write_text("lr: 0.1\n")
    assert read_data_yaml(path) is None  # a YAML without names is not a dataset file
    for text, element in (
        ("names: [a, b]\nnc: 3\n", "nc"),
        ("names:\n  0: a\n  2: c\n", "names"),
        ("names: 7\n", "names"),
    ):
        path.write_text(text)
        with pytest.raises(InvalidValueError) as info:
            read_data_yaml(path)
        assert info.value.element == element and str(path) in str(info.value)


def test_obj_data_keys(tmp_path: Path) -> None:
    path = tmp_path / "obj.data"
    path.write_text("classes= 2\r\ntrain  = data/train.txt\r\nvalid = data/test.txt\r\nnames = data/obj.names\r\n")
    config = read_darknet_data(path)
    assert config is not None and config.names_file == "data/obj.names"
    assert config.splits == {"train": ["data/train.txt"], "val": ["data/test.txt"]}


def test_split_keeps_the_authors_splits_and_stats_says_where_they_came_from(
    tmp_path: Path, pool: list[Path], name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import fiftyone as fo

    root = tmp_path / "mixed"
    published = roboflow_tree(root / "rf", pool[:10], ROBOFLOW_CLASSES)
    flat_roboflow_tree(root / "new", pool[10:16], ROBOFLOW_CLASSES)
    assert _import(root, name, capsys)[0] == 0
    before = {s.filepath: s.tags for s in fo.load_dataset(name) if s.tags}
    assert len(before) == len(published)
    assert run(["split", "-d", name, "--seed", "1"], capsys)[0] == 0
    after = {s.filepath: s.tags for s in fo.load_dataset(name)}
    assert all(after[path] == tags for path, tags in before.items())
    assert all(len(tags) == 1 for tags in after.values())
    code, out, _ = run(["stats", "-d", name, "--json"], capsys)
    assert code == 0
    assert json.loads(out)["split_sources"] == {"data.yaml rf/data.yaml": 10, "fabricdata split": 6}
    code, out, _ = run(["stats", "-d", name], capsys)
    assert "splits from: data.yaml rf/data.yaml 10, fabricdata split 6" in out


@pytest.mark.parametrize("level", ["root", "above"])
def test_category_folders_side_by_side_become_the_category_field(
    tmp_path: Path, pool: list[Path], name: str, level: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import fiftyone as fo

    root = tmp_path / "above" / "fabric"
    for index, xml in enumerate(pool[:6]):
        folder = root / ("stain" if index % 2 else "defect_free")
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(xml, folder / xml.name)
        shutil.copyfile(xml.with_suffix(".jpg"), folder / f"{xml.stem}.jpg")
    assert _import(root if level == "root" else root.parent, name, capsys)[0] == 0
    categories = fo.load_dataset(name).count_values("category")
    assert categories == {"stain": 3, "defect_free": 3}


def test_a_tiff_that_cannot_be_decoded_is_one_error_and_the_rest_imports(
    tmp_path: Path, pool: list[Path], name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "maskdb"
    voc_tiff_tree(root, pool[:3])
    broken = sorted(root.rglob("*.tif"))[0]
    broken.write_bytes(broken.read_bytes()[: broken.stat().st_size // 3])  # header intact, pixels cut
    code, report, _ = _import(root, name, capsys)
    assert code == 1 and report["added"] == 2
    [error] = report["errors"]
    assert error["file"] == str(broken) and "truncated or corrupt" in error["problem"]


def test_pascal_voc_annotations_beside_jpegimages(
    tmp_path: Path, pool: list[Path], name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "VOCdevkit" / "VOC2012"
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    truth = {}
    for xml in pool[:4]:
        shutil.copyfile(xml, root / "Annotations" / xml.name)
        shutil.copyfile(xml.with_suffix(".jpg"), root / "JPEGImages" / f"{xml.stem}.jpg")
        truth[f"JPEGImages/{xml.stem}.jpg"] = Expected(tuple(_voc_rows(xml)), None)
    code, report, err = _import(tmp_path, name, capsys)
    assert code == 0 and report["warnings"] == [] and report["unlabeled"] == [], err
    _check_dataset(name, root, truth)


def _voc_rows(xml: Path) -> list[tuple[str, float, float, float, float]]:
    from fabricdata.formats.voc import read_voc

    return [(o.label, *o.box.as_tuple()) for o in read_voc(xml).objects]


def test_app_edits_of_a_roboflow_tree_write_back_with_the_yaml_class_indices(
    tmp_path: Path, pool: list[Path], name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import fiftyone as fo

    root = tmp_path / "rf"
    roboflow_tree(root, pool[:4], ROBOFLOW_CLASSES, names_as_dict=True)
    assert _import(root, name, capsys)[0] == 0
    dataset = fo.load_dataset(name)
    sample = dataset.match(fo.ViewField("ground_truth.detections").length() > 0).first()
    assert sample["class_file"] == str(root / "data.yaml")
    sample.ground_truth.detections[0].label = "Stain"  # an annotator's fix in the App
    sample.save()
    code, out, err = run(["writeback", "-d", name], capsys)
    assert code == 0 and "1 file(s) written" in out, err
    first = Path(sample["annotation_path"]).read_text().splitlines()[0]
    assert first.split()[0] == "2"  # Stain is index 2 of data.yaml's names
    code, report, _ = _import(root, name, capsys)
    assert code == 0 and report["unchanged"] == 4  # the written file is what the dataset holds
    sample.ground_truth.detections[0].label = "Thread"  # a class data.yaml does not list
    sample.save()
    code, _, err = run(["writeback", "-d", name], capsys)
    assert code == 1 and "data.yaml: names: class 'Thread' is not listed" in err
