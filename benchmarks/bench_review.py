"""Review figures: `fabricdata review` (store predictions, evaluate, mistakes, views, report) beside FiftyOne's
own `evaluate_detections` on the same 1000 samples, with the predictions of a decent and of a poor model."""

from __future__ import annotations

import json
import random
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks.bench_store import isolated_database
from benchmarks.harness import Figure

#: how a simulated model errs: share of boxes missed, shift (share of the box's size), share given a random
#: class, and how many spurious boxes per image (drawn from the tuple)
DECENT = {"missed": 0.15, "shift": 0.08, "swapped": 0.08, "spurious": (0, 0, 1, 2)}
#: a model early in its fine-tune: most boxes far off, half with another class, many spurious boxes; the worst
#: case for the review's passes over the leftovers (nearly every image has some)
POOR = {"missed": 0.3, "shift": 0.6, "swapped": 0.5, "spurious": (0, 1, 3, 5)}


def realistic_predictions(dataset: Any, out: Path, seed: int = 0, model: dict[str, Any] = DECENT) -> int:
    """predictions.jsonl of a simulated model (``DECENT``: most boxes found with jitter, some missed, some
    spurious or with another class), confidences spread between 0.05 and 1.0."""
    from fabricdata.core.boxes import ImageSize, fiftyone_to_box

    rng = random.Random(seed)
    shift = model["shift"]
    classes = list(dataset.default_classes)
    lines = []
    for sample in dataset.select_fields(["metadata", "ground_truth"]):
        size = ImageSize(sample.metadata.width, sample.metadata.height)
        detections = []
        for det in sample.ground_truth.detections:
            if rng.random() < model["missed"]:
                continue
            box = fiftyone_to_box(det.bounding_box, size)
            dx, dy = rng.uniform(-shift, shift) * box.width, rng.uniform(-shift, shift) * box.height
            label = det.label if rng.random() > model["swapped"] else rng.choice(classes)
            bbox = [
                max(0.0, box.xmin + dx),
                max(0.0, box.ymin + dy),
                min(size.width, box.xmax + dx),
                min(size.height, box.ymax + dy),
            ]
            if bbox[2] > bbox[0] + 1 and bbox[3] > bbox[1] + 1:
                detections.append({"label": label, "bbox": bbox, "confidence": rng.uniform(0.4, 1.0)})
        for _ in range(rng.choice(model["spurious"])):  # spurious boxes, mostly unsure
            x, y = rng.uniform(0, size.width * 0.7), rng.uniform(0, size.height * 0.7)
            w, h = rng.uniform(10, size.width * 0.3), rng.uniform(10, size.height * 0.3)
            detections.append(
                {"label": rng.choice(classes), "bbox": [x, y, x + w, y + h], "confidence": rng.uniform(0.05, 0.7)}
            )
        record = {"image": Path(sample.filepath).name, "filepath": sample.filepath, "task": "<OD>", "text": ""}
        lines.append(json.dumps({**record, "detections": detections}))
    out.mkdir(parents=True, exist_ok=True)
    (out / "predictions.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(lines)


def bench_review(images: int = 1000, repeats: int = 3) -> list[Figure]:
    isolated_database()
    import fiftyone as fo

    from fabricdata.prepare.synth import SynthConfig, generate
    from fabricdata.store.importer import import_folder

    work = Path(tempfile.mkdtemp(prefix="fabricdata-bench-review-"))
    folder = generate(SynthConfig(images=images, seed=21, width=320, height=240), work / "data", workers=2)
    name = f"review-{uuid.uuid4().hex[:6]}"
    import_folder(folder, name)
    dataset = fo.load_dataset(name)
    figures = []
    models = (
        (DECENT, "decent", "a decent model (store predictions, evaluate, mistakes, views, report)"),
        (POOR, "poor", "a poor model (most boxes far off, half with another class, many spurious)"),
    )
    for model, folder_name, what in models:
        run = work / "runs" / folder_name
        realistic_predictions(dataset, run, model=model)
        ours, theirs = _review_beside_evaluation(dataset, run, repeats)
        figures.append(
            Figure(
                "Review",
                f"fabricdata review, {images} samples, {what}",
                images / ours,
                "FiftyOne evaluate_detections(compute_mAP=True) alone, predictions already stored",
                images / theirs,
                unit="samples/s",
                note=f"goal >= 0.83x (review costs at most 1.2x); best of {repeats}",
            )
        )
    dataset.delete()
    return figures


def _review_beside_evaluation(dataset: Any, run: Path, repeats: int) -> tuple[float, float]:
    """Best-of seconds of ``review`` and of FiftyOne's evaluation alone on the same predictions, interleaved."""
    from fabricdata.review.predictions import load_predictions, store_predictions
    from fabricdata.review.review import review

    ids_by_path = dict(zip(*dataset.values(["filepath", "id"]), strict=True))
    matched = {ids_by_path[r.filepath]: r for r in load_predictions(run / "predictions.jsonl") if r.filepath}
    store_predictions(dataset, "pred_baseline", matched, 0.0)
    ours, theirs = float("inf"), float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        dataset.evaluate_detections(
            "pred_baseline", gt_field="ground_truth", eval_key="eval_baseline", compute_mAP=True, progress=False
        )
        theirs = min(theirs, time.perf_counter() - start)
        dataset.delete_evaluation("eval_baseline")
        start = time.perf_counter()
        review(dataset.name, run)
        ours = min(ours, time.perf_counter() - start)
    return ours, theirs


def run() -> list[Figure]:
    return bench_review()
