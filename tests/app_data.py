"""Data for the App plugin's tests: a LabelImg folder of flat grey images with two boxes each, and a run whose
predictions have designed confidences (no model involved), so the review's figures are known in advance."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from fabricdata.core.annotation import ImageAnnotation, LabeledBox
from fabricdata.core.boxes import Box, ImageSize
from fabricdata.formats.voc import write_voc
from tests.helpers import run

SIZE = ImageSize(320, 240)
WRINKLE = Box(20, 20, 150, 200)
DROP = Box(170, 40, 300, 220)
IMAGES = 8
#: the run's boxes, by image: right wrinkles (0.95 .. 0.88), right drops on images 0-5 (0.70 .. 0.65), two false
#: drops far from any box (0.85, 0.84) and one false wrinkle (0.60). 16 boxes; sorted by confidence the best F1 is
#: at 0.65: 14 hits of 16 predictions, 14 of 16 boxes found, F1 0.875.
BEST_THRESHOLD, BEST_F1 = 0.65, 0.875


def grey_folder(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for i in range(IMAGES):
        Image.new("RGB", (SIZE.width, SIZE.height), (128, 128, 128)).save(folder / f"g{i}.jpg")
        boxes = (LabeledBox("wrinkle", WRINKLE), LabeledBox("drop", DROP))
        write_voc(ImageAnnotation(f"g{i}.jpg", SIZE, boxes), folder / f"g{i}.xml")
    return folder


def designed_detections(i: int) -> list[dict[str, object]]:
    found: list[dict[str, object]] = [
        {"label": "wrinkle", "bbox": list(WRINKLE.as_tuple()), "confidence": round(0.95 - i / 100, 2)}
    ]
    if i < 6:
        found.append({"label": "drop", "bbox": list(DROP.as_tuple()), "confidence": round(0.70 - i / 100, 2)})
    if i < 2:
        found.append({"label": "drop", "bbox": [260, 2, 316, 34], "confidence": round(0.85 - i / 100, 2)})
    if i == 2:
        found.append({"label": "wrinkle", "bbox": [5, 205, 60, 235], "confidence": 0.60})
    return found


def write_predictions(run_folder: Path, folder: Path) -> Path:
    """``run_folder/predictions.jsonl`` with the designed boxes for the images of ``folder``."""
    run_folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(IMAGES):
        image = folder / f"g{i}.jpg"
        record = {"image": image.name, "filepath": str(image), "task": "<OD>", "text": "",
                  "detections": designed_detections(i)}  # fmt: skip
        lines.append(json.dumps(record))
    (run_folder / "predictions.jsonl").write_text("\n".join(lines) + "\n")
    return run_folder


def imported_grey(root: Path, name: str, capsys: pytest.CaptureFixture[str]) -> Path:
    folder = grey_folder(root / "grey")
    code, _, err = run(["import", str(folder), "-d", name], capsys)
    assert code == 0, err
    return folder
