"""Planted label errors and a simulated out-of-fold model, for the audit's tests and figures.

``plant_errors`` corrupts a synthetic LabelImg folder in place, in the four known ways (a share of the labels,
split evenly: boxes deleted, classes swapped, boxes shifted by 40% of their size, spurious boxes added) and
returns the truth and what it did. ``simulate_predictions`` writes what a decent detector would predict for each
image, from the TRUE boxes (never the corrupted labels): most boxes found surely with a little jitter, some weakly,
a few missed, a few given another class, and false positives, each with a confidence. ``average_precision`` ranks
items by a score (lower = more suspicious, ties as one step) against known positives.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fabricdata.core.annotation import ImageAnnotation, LabeledBox
from fabricdata.core.boxes import Box, ImageSize, iou
from fabricdata.formats.voc import read_voc, voc_to_bytes


@dataclass(frozen=True)
class Model:
    """How the simulated detector behaves per true box (the rest of 1.0 is: missed entirely) and per image."""

    sure: float = 0.95  # found, confidence ~ Beta(12, 1)
    weak: float = 0.028  # found, confidence uniform 0.05..0.5
    confused: float = 0.02  # found with another class, confidence uniform 0.05..0.6
    jitter: float = 0.04  # std of each coordinate, share of the box's size
    false_positives: float = 0.2  # per image (Poisson), random class and place, confidence ~ Beta(2, 5)


DECENT = Model()


@dataclass
class Planted:
    """Per image file name: its true boxes, and the boxes of each kind of planted error (as in the label file)."""

    truth: dict[str, list[tuple[str, Box]]] = field(default_factory=dict)
    missing: dict[str, list[Box]] = field(default_factory=dict)
    swapped: dict[str, list[Box]] = field(default_factory=dict)
    mislocated: dict[str, list[Box]] = field(default_factory=dict)
    spurious: dict[str, list[Box]] = field(default_factory=dict)

    def count(self, kind: str) -> int:
        return sum(len(boxes) for boxes in getattr(self, kind).values())


def plant_errors(folder: Path, classes: list[str], share: float = 0.05, seed: int = 0) -> Planted:
    """Corrupt ``share`` of the labels of a LabelImg folder, a quarter in each way (see the module docstring)."""
    rng = np.random.default_rng(seed)
    files = sorted(folder.glob("*.xml"))
    notes = {path: read_voc(path) for path in files}
    planted = Planted(truth={n.filename: [(o.label, o.box) for o in n.objects] for n in notes.values()})
    everything = [(path, i) for path, n in notes.items() for i in range(len(n.objects))]
    per_kind = round(share * len(everything)) // 4
    chosen = [everything[k] for k in rng.permutation(len(everything))[: 3 * per_kind]]
    objects = {path: list(n.objects) for path, n in notes.items()}
    drop: set[tuple[Path, int]] = set()
    for position, (path, i) in enumerate(chosen):
        obj, name, size = objects[path][i], notes[path].filename, notes[path].size
        if position < per_kind:
            drop.add((path, i))
            planted.missing.setdefault(name, []).append(obj.box)
        elif position < 2 * per_kind:
            other = str(rng.choice([c for c in classes if c != obj.label]))
            objects[path][i] = LabeledBox(label=other, box=obj.box)
            planted.swapped.setdefault(name, []).append(obj.box)
        else:
            objects[path][i] = LabeledBox(label=obj.label, box=_shifted(obj.box, size, rng))
            planted.mislocated.setdefault(name, []).append(objects[path][i].box)
    while planted.count("spurious") < per_kind:
        path = files[int(rng.integers(len(files)))]
        box = _random_box(notes[path].size, rng)
        if any(iou(box, o.box) > 0 for o in objects[path]):
            continue
        objects[path].append(LabeledBox(label=str(rng.choice(classes)), box=box))
        planted.spurious.setdefault(notes[path].filename, []).append(box)
    for path, note in notes.items():
        kept = tuple(o for i, o in enumerate(objects[path]) if (path, i) not in drop)
        path.write_bytes(voc_to_bytes(_with(note, kept)))
    return planted


def _with(note: ImageAnnotation, objects: tuple[LabeledBox, ...]) -> ImageAnnotation:
    from dataclasses import replace

    return replace(note, objects=objects)


def _shifted(box: Box, size: ImageSize, rng: np.random.Generator) -> Box:
    """The box moved by 40% of its width and of its height, towards the side with room (integers, as VOC stores)."""
    dx, dy = 0.4 * box.width, 0.4 * box.height
    dx = dx if box.xmax + dx <= size.width or box.xmin - dx < 0 else -dx
    dy = dy if box.ymax + dy <= size.height or box.ymin - dy < 0 else -dy
    if rng.random() < 0.5 and box.xmin - abs(dx) >= 0 and box.xmax + abs(dx) <= size.width:
        dx = -dx
    xmin, ymin = max(0.0, box.xmin + dx), max(0.0, box.ymin + dy)
    xmax, ymax = min(float(size.width), box.xmax + dx), min(float(size.height), box.ymax + dy)
    return Box(round(xmin), round(ymin), round(xmax), round(ymax))


def _random_box(size: ImageSize, rng: np.random.Generator) -> Box:
    w, h = rng.uniform(0.1, 0.35) * size.width, rng.uniform(0.1, 0.35) * size.height
    x, y = rng.uniform(0, size.width - w), rng.uniform(0, size.height - h)
    return Box(round(x), round(y), round(x + w), round(y + h))


def simulate_predictions(
    folder: Path, planted: Planted, classes: list[str], out: Path, seed: int = 0, model: Model = DECENT
) -> list[dict[str, object]]:
    """predictions.jsonl records (PredictionRecord) for every image of the folder, from its TRUE boxes."""
    rng = np.random.default_rng(seed + 1)
    records = []
    for image in sorted(folder.glob("*.jpg")):
        size = read_voc(image.with_suffix(".xml")).size
        detections = [
            d for label, box in planted.truth[image.name] for d in _detect(label, box, size, classes, rng, model)
        ]
        for _ in range(rng.poisson(model.false_positives)):
            box = _random_box(size, rng)
            detections.append(_record(str(rng.choice(classes)), box, size, float(rng.beta(2, 5))))
        records.append(
            {
                "image": image.name,
                "filepath": str(image.resolve()),
                "task": "<OD>",
                "text": "",
                "detections": detections,
            }
        )
    out.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return records


def _detect(
    label: str, box: Box, size: ImageSize, classes: list[str], rng: np.random.Generator, model: Model
) -> list[dict[str, object]]:
    noise = rng.normal(0.0, model.jitter, 4) * np.array([box.width, box.height, box.width, box.height])
    moved = Box(*(np.array(box.as_tuple()) + noise))
    draw = rng.random()
    if draw < model.confused:
        return [
            _record(str(rng.choice([c for c in classes if c != label])), moved, size, float(rng.uniform(0.05, 0.6)))
        ]
    if draw < model.confused + model.sure:
        return [_record(label, moved, size, float(rng.beta(12, 1)))]
    if draw < model.confused + model.sure + model.weak:
        return [_record(label, moved, size, float(rng.uniform(0.05, 0.5)))]
    return []


def _record(label: str, box: Box, size: ImageSize, confidence: float) -> dict[str, object]:
    xmin, ymin = min(max(box.xmin, 0.0), size.width - 1.0), min(max(box.ymin, 0.0), size.height - 1.0)
    xmax, ymax = max(min(box.xmax, float(size.width)), xmin + 1.0), max(min(box.ymax, float(size.height)), ymin + 1.0)
    return {"label": label, "bbox": [xmin, ymin, xmax, ymax], "confidence": min(max(confidence, 0.0), 1.0)}


def average_precision(scores: list[float], hits: list[bool], positives: int) -> float:
    """AP of a ranking, lowest score first, tied scores as one step (as scikit-learn counts ties); positives that
    were never ranked (no item stands for them) count as never found."""
    if positives == 0:
        return float("nan")
    order = np.argsort(np.asarray(scores, float), kind="stable")
    ranked, found = np.asarray(scores, float)[order], np.asarray(hits, bool)[order]
    last = np.r_[np.diff(ranked) != 0, True]
    tp, n = np.cumsum(found)[last], (np.arange(len(ranked)) + 1)[last]
    recall, precision = tp / positives, tp / n
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
