"""Golden trees shaped like the folders people publish, built from synthetic fabric images.

Each builder returns the tree's root and the truth: for every image path (relative to the root) its boxes in
pixels (label, xmin, ymin, xmax, ymax), its expected split tag and category folder. Also used by the import
benchmark (a 1000-image Roboflow tree).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from PIL import Image

from fabricdata.core.boxes import ImageSize, box_to_yolo
from fabricdata.formats.voc import read_voc, write_voc
from fabricdata.prepare.synth import SynthConfig, generate

Row = tuple[str, float, float, float, float]


@dataclass(frozen=True)
class Expected:
    boxes: tuple[Row, ...]
    split: str | None
    category: str | None = None


def synth_pool(
    folder: Path, images: int, classes: tuple[str, ...], seed: int = 7, size: tuple[int, int] = (160, 120)
) -> list[Path]:
    """Synthetic JPEG + VOC pairs (small images by default, so trees build fast); the XML paths in order."""
    config = SynthConfig(images=images, seed=seed, width=size[0], height=size[1], classes=classes)
    generate(config, folder, workers=2)
    return sorted(folder.glob("*.xml"))


def _rows(xml: Path) -> tuple[Row, ...]:
    ann = read_voc(xml)
    return tuple((o.label, o.box.xmin, o.box.ymin, o.box.xmax, o.box.ymax) for o in ann.objects)


def _yolo_text(xml: Path, classes: tuple[str, ...]) -> str:
    ann = read_voc(xml)
    lines = []
    for obj in ann.objects:
        cx, cy, w, h = box_to_yolo(obj.box, ann.size)
        lines.append(f"{classes.index(obj.label)} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n")
    return "".join(lines)


def _put_yolo(xml: Path, image: Path, label: Path, classes: tuple[str, ...]) -> None:
    image.parent.mkdir(parents=True, exist_ok=True)
    label.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(xml.with_suffix(".jpg"), image)
    label.write_text(_yolo_text(xml, classes), encoding="utf-8")


ROBOFLOW_README = (
    "Fabric Holes - v2 2024-05-01\n==============================\nThis dataset was exported via roboflow.com\n"
)


def roboflow_tree(
    root: Path, pool: list[Path], classes: tuple[str, ...], names_as_dict: bool = False
) -> dict[str, Expected]:
    """A Roboflow YOLOv8 export: data.yaml (``../train/images`` paths that do not exist as written),
    ``{train,valid,test}/{images,labels}``, README.dataset.txt and README.roboflow.txt."""
    truth: dict[str, Expected] = {}
    splits = ("train", "valid", "test")
    for index, xml in enumerate(pool):
        folder = splits[0] if index % 10 < 7 else splits[1] if index % 10 < 9 else splits[2]
        name = f"{xml.stem}_jpg.rf.{index:08x}"
        _put_yolo(xml, root / folder / "images" / f"{name}.jpg", root / folder / "labels" / f"{name}.txt", classes)
        truth[f"{folder}/images/{name}.jpg"] = Expected(_rows(xml), "val" if folder == "valid" else folder)
    listed = "\n" + "\n".join(f"  {i}: {n}" for i, n in enumerate(classes))
    names = listed if names_as_dict else f" {list(classes)}"
    (root / "data.yaml").write_text(
        "train: ../train/images\nval: ../valid/images\ntest: ../test/images\n\n"
        f"nc: {len(classes)}\nnames:{names}\n\nroboflow:\n  workspace: mill\n  project: fabric-holes\n  version: 2\n",
        encoding="utf-8",
    )
    (root / "README.dataset.txt").write_text(
        "# Fabric Holes > 2024-05-01\nProvided by a Roboflow user\nLicense: CC BY 4.0\n"
    )
    (root / "README.roboflow.txt").write_text(ROBOFLOW_README)
    return truth


def flat_roboflow_tree(root: Path, pool: list[Path], classes: tuple[str, ...]) -> dict[str, Expected]:
    """A flat YOLO export: images, labels, data.yaml (names as a dict) and README files in one folder."""
    truth: dict[str, Expected] = {}
    for xml in pool:
        _put_yolo(xml, root / f"{xml.stem}.jpg", root / f"{xml.stem}.txt", classes)
        truth[f"{xml.stem}.jpg"] = Expected(_rows(xml), None)
    names = "".join(f"  {i}: {n}\n" for i, n in enumerate(classes))
    (root / "data.yaml").write_text(f"nc: {len(classes)}\nnames:\n{names}", encoding="utf-8")
    (root / "README.dataset.txt").write_text("# Fabric\nLicense: CC BY 4.0\n")
    (root / "README.roboflow.txt").write_text(ROBOFLOW_README)
    return truth


def ultralytics_tree(root: Path, pool: list[Path], classes: tuple[str, ...]) -> dict[str, Expected]:
    """Ultralytics' own layout: ``images/{train,val}`` + ``labels/{train,val}`` and a data.yaml with ``path``."""
    truth: dict[str, Expected] = {}
    for index, xml in enumerate(pool):
        split = "train" if index % 4 else "val"
        _put_yolo(
            xml, root / "images" / split / f"{xml.stem}.png", root / "labels" / split / f"{xml.stem}.txt", classes
        )
        truth[f"images/{split}/{xml.stem}.png"] = Expected(_rows(xml), split)
    (root / "fabric.yaml").write_text(
        f"path: /home/someone/datasets/fabric\ntrain: images/train\nval: images/val\nnames: {list(classes)}\n"
    )
    return truth


def darknet_tree(root: Path, pool: list[Path], classes: tuple[str, ...]) -> dict[str, Expected]:
    """An AlexeyAB darknet project: ``data/obj.data``, ``data/classes.names``, list files whose paths are relative
    to the folder above ``data/`` (one written with the author's absolute path), images + YOLO txt nested as
    ``data/obj/{train,valid,test}/<category>/`` with upper-case ``.JPG``, spaces in names, empty label files for
    defect-free images, an unlabeled ``data/sample_test/`` and a label whose image is missing."""
    data = root / "data"
    truth: dict[str, Expected] = {}
    listed: dict[str, list[str]] = {"train": [], "valid": []}
    for index, xml in enumerate(pool):
        folder = "train" if index % 5 < 3 else "valid" if index % 5 == 3 else "test"
        clean = index % 6 == 5
        category = "defect_free" if clean else "stain"
        name = f"{category} _{index}"
        image = data / "obj" / folder / category / f"{name}.JPG"
        label = image.with_suffix(".txt")
        _put_yolo(xml, image, label, classes)
        rows = _rows(xml)
        if clean:
            label.write_text("")
            rows = ()
        relative = image.relative_to(root).as_posix()
        split = {"train": "train", "valid": "val", "test": "test"}[folder]
        truth[relative] = Expected(rows, split, category)
        if folder in listed:
            entry = relative if index % 7 else f"/content/darknet/{relative}"  # written on the author's Colab
            listed[folder].append(entry)
    for split, entries in listed.items():
        (data / f"{split}.txt").write_text("".join(f"{e}\n" for e in entries))
    (data / "classes.names").write_text("".join(f"{c}\n" for c in classes))
    (data / "obj.data").write_text(
        f"classes = {len(classes)}\ntrain = data/train.txt\nvalid = data/valid.txt\n"
        "names = data/classes.names\nbackup = backup/\n"
    )
    sample = data / "sample_test"
    sample.mkdir()
    shutil.copyfile(pool[0].with_suffix(".jpg"), sample / "new photo 1.jpg")
    shutil.copyfile(pool[1].with_suffix(".jpg"), sample / "new photo 2.jpg")
    (data / "obj" / "train" / "stain" / "ghost.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    (root / "README.md").write_text("# Fabric stains (darknet)\nTrain with ./darknet detector train data/obj.data\n")
    return truth


def voc_tiff_tree(root: Path, pool: list[Path]) -> dict[str, Expected]:
    """LabelImg VOC in split subfolders with grayscale TIFF images (``<depth>1</depth>``), one ``<filename>`` that
    differs from the image's real name (the XML's stem matches) and Windows ``<path>`` elements."""
    truth: dict[str, Expected] = {}
    for index, xml in enumerate(pool):
        split = "train" if index % 3 else "test"
        folder = root / split
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"mask_{index:03d}"
        with Image.open(xml.with_suffix(".jpg")) as image:
            image.convert("L").save(folder / f"{stem}.tif")
        ann = read_voc(xml)
        filename = f"IMG_{index:04d}.tif" if index == 1 else f"{stem}.tif"
        windows = f"C:\\Users\\annotator\\Desktop\\maskdb\\{split}\\{filename}"
        tiff_ann = replace(ann, filename=filename, folder=split, path=windows, depth=1, database="maskdb")
        write_voc(tiff_ann, folder / f"{stem}.xml")
        truth[f"{split}/{stem}.tif"] = Expected(_rows(xml), split)
    return truth


def size_of(path: Path) -> ImageSize:
    with Image.open(path) as image:
        return ImageSize(*image.size)
