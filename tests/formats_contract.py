"""A small folder of each registered label format, written as the tools that make such files write them, with the
numbers and layouts write-back must keep byte for byte (float32 decimals, .5-pixel YOLO values, CRLF line ends,
pretty-printed JSON). ``tests/test_formats.py``'s contract runs on each; a registered format without a sample
here fails it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from PIL import Image

#: image name -> size, and (label, xmin, ymin, xmax, ymax) per box, as every sample folder holds them
SIZES = {"a.png": (640, 480), "b.png": (320, 240)}
BOXES: dict[str, list[tuple[str, float, float, float, float]]] = {
    "a.png": [
        ("drop", 45.70000076293945, 30.5, 120.25, 99.0),
        ("wrinkle", 500.0, 200.0, 600.0, 260.0),
        ("drop", 10.0, 400.0, 30.0, 470.0),
    ],
    "b.png": [("broken", 8.0, 8.0, 40.0, 20.0)],
}
CLASSES = ("wrinkle", "drop", "broken")


def _images(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, (width, height) in SIZES.items():
        Image.new("RGB", (width, height), (120, 110, 100)).save(folder / name)


def voc(folder: Path) -> None:
    """a.xml as VOC2012-style tools write it (float32 coordinates, CRLF, two-space indent); b.xml as LabelImg."""
    _images(folder)
    for name, boxes in BOXES.items():
        width, height = SIZES[name]
        crlf = name == "a.png"
        indent = "  " if crlf else "\t"
        lines = ["<annotation>", f"{indent}<folder>set</folder>", f"{indent}<filename>{name}</filename>"]
        lines += [f"{indent}<size>", f"{indent * 2}<width>{width}</width>", f"{indent * 2}<height>{height}</height>"]
        lines += [f"{indent * 2}<depth>3</depth>", f"{indent}</size>"]
        for label, *coords in boxes:
            shown = [repr(c) if crlf else str(int(c)) for c in coords]
            lines += [f"{indent}<object>", f"{indent * 2}<name>{label}</name>", f"{indent * 2}<difficult>0</difficult>"]
            lines += [f"{indent * 2}<bndbox>"]
            lines += [
                f"{indent * 3}<{k}>{v}</{k}>" for k, v in zip(("xmin", "ymin", "xmax", "ymax"), shown, strict=True)
            ]
            lines += [f"{indent * 2}</bndbox>", f"{indent}</object>"]
        lines.append("</annotation>")
        newline = "\r\n" if crlf else "\n"
        (folder / f"{Path(name).stem}.xml").write_bytes((newline.join(lines) + newline).encode())


def yolo(folder: Path) -> None:
    """a.txt with Roboflow's shortest decimals (.5-pixel edges: 0.7921875), double spaces and CRLF; b.txt as LabelImg
    writes it (%.6f)."""
    _images(folder)
    (folder / "classes.txt").write_text("".join(f"{name}\n" for name in CLASSES))
    for name, boxes in BOXES.items():
        width, height = SIZES[name]
        rows = []
        for label, x0, y0, x1, y1 in boxes:
            values = ((x0 + x1) / 2 / width, (y0 + y1) / 2 / height, (x1 - x0) / width, (y1 - y0) / height)
            shown = [repr(v) for v in values] if name == "a.png" else [f"{v:.6f}" for v in values]
            rows.append(f"{CLASSES.index(label)}{'  ' if name == 'a.png' else ' '}{' '.join(shown)}")
        newline = "\r\n" if name == "a.png" else "\n"
        (folder / f"{Path(name).stem}.txt").write_bytes((newline.join(rows) + newline).encode())


def createml(folder: Path) -> None:
    """annotations.json pretty-printed (indent 2), pixel centres with decimals."""
    _images(folder)
    entries = []
    for name, boxes in BOXES.items():
        annotations = [
            {
                "label": label,
                "coordinates": {"x": (x0 + x1) / 2, "y": (y0 + y1) / 2, "width": x1 - x0, "height": y1 - y0},
            }
            for label, x0, y0, x1, y1 in boxes
        ]
        entries.append({"image": name, "verified": False, "annotations": annotations})
    (folder / "annotations.json").write_text(json.dumps(entries, indent=2))


def coco(folder: Path) -> None:
    """_annotations.coco.json as Roboflow writes it: one compact line, a dataset category of id 0 above the
    classes, float32 decimals in bbox and area, an empty segmentation."""
    _images(folder)
    categories = [{"id": 0, "name": "defects", "supercategory": "none"}]
    categories += [{"id": n + 1, "name": name, "supercategory": "defects"} for n, name in enumerate(CLASSES)]
    images, annotations = [], []
    for k, (name, boxes) in enumerate(BOXES.items()):
        width, height = SIZES[name]
        images.append({"id": k, "license": 1, "file_name": name, "height": height, "width": width})
        for label, x0, y0, x1, y1 in boxes:
            bbox = [x0, y0, x1 - x0, y1 - y0]
            category = CLASSES.index(label) + 1
            annotations.append(
                {
                    "id": len(annotations),
                    "image_id": k,
                    "category_id": category,
                    "bbox": bbox,
                    "area": bbox[2] * bbox[3],
                }
                | {"segmentation": [], "iscrowd": 0}
            )
    document = {"info": {"year": "2024"}, "categories": categories, "images": images, "annotations": annotations}
    (folder / "_annotations.coco.json").write_text(json.dumps(document, separators=(",", ":")))


#: format name -> the function that writes its sample folder
SAMPLES: dict[str, Callable[[Path], None]] = {"voc": voc, "yolo": yolo, "createml": createml, "coco": coco}

#: how close a format's reader gets to the sample's pixel coordinates (YOLO: what six decimals of a normalised
#: value leave of a pixel)
READ_TOLERANCE = {"yolo": 1e-3}
