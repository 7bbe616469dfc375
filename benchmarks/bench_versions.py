"""Label version figures: snapshot, diff and restore of 20,000 images / 40,000 boxes, in time and storage, beside a
plain ``dataset.clone()`` of the same dataset (FiftyOne's way to keep a copy of the labels)."""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.bench_store import isolated_database
from benchmarks.harness import Figure

SECTION = "Label versions"


def _images(count: int) -> Path:
    """``count`` image files: hard links of one small JPEG (versions never read pixels; restore checks the files
    are there)."""
    from PIL import Image

    folder = Path(tempfile.mkdtemp(prefix="fabricdata-bench-versions-"))
    for index in range(count):
        base = folder / f"fabric_{index - index % 50_000:06d}.jpg"  # a file takes 65,000 links at most (ext4)
        if index % 50_000 == 0:
            Image.new("RGB", (64, 48), (120, 110, 100)).save(base)
        else:
            os.link(base, folder / f"fabric_{index:06d}.jpg")
    return folder


def _dataset(name: str, images: int, boxes_per_image: int, seed: int = 0) -> tuple[Any, Path]:
    """A dataset of ``images`` samples with ``boxes_per_image`` boxes each, split tags and the import's fields,
    inserted in bulk (FiftyOne's ``add_samples`` would take minutes here), and the folder of its images."""
    from bson import ObjectId

    from fabricdata.store.dataset import open_dataset
    from fabricdata.store.labeltable import SAMPLE_FIELDS, LabelTable, insert_labels

    folder = _images(images)
    rng = random.Random(seed)
    classes = ["wrinkle", "drop", "broken"]
    count = images * boxes_per_image
    paths = [str(folder / f"fabric_{index:06d}.jpg") for index in range(images)]
    samples: dict[str, list[Any]] = {
        "id": [str(ObjectId()) for _ in range(images)],
        "filepath": paths,
        "tags": [[rng.choice(("train", "train", "train", "val", "test"))] for _ in range(images)],
        "width": [1024] * images,
        "height": [768] * images,
        "num_channels": [3] * images,
        "size_bytes": [150_000] * images,
        "mime_type": [None] * images,
        **{field: [None] * images for field in SAMPLE_FIELDS},
    }
    samples["verified"] = [False] * images
    samples["annotation_path"] = [path[:-4] + ".xml" for path in paths]
    samples["annotation_format"] = ["voc"] * images
    samples["annotation_hash"] = [f"{rng.getrandbits(256):064x}" for _ in range(images)]
    boxes: dict[str, list[Any]] = {
        "sample": [index for index in range(images) for _ in range(boxes_per_image)],
        "id": [str(ObjectId()) for _ in range(count)],
        "label": [rng.choice(classes) for _ in range(count)],
        "bounding_box": [_box(rng) for _ in range(count)],
        "tags": [[] for _ in range(count)],
        "difficult": [False] * count,
        "truncated": [0] * count,
    }
    dataset = open_dataset(name, classes)
    insert_labels(dataset, LabelTable(classes, samples, boxes))
    return dataset, folder


def _box(rng: random.Random, width: int = 1024, height: int = 768) -> list[float]:
    """A box as LabelImg draws it (integer pixel corners), relative as FiftyOne stores it."""
    x, y = rng.randrange(0, width - 220), rng.randrange(0, height - 160)
    w, h = rng.randrange(20, 200), rng.randrange(15, 150)
    return [x / width, y / height, w / width, h / height]


def _edit(dataset: Any, share: float, seed: int = 1) -> int:
    """Edits as annotators make them in the App, on ``share`` of the images (moves, relabels, deletions and new
    boxes), written in bulk; returns the number of images edited."""
    import fiftyone as fo

    rng = random.Random(seed)
    view = dataset.take(int(len(dataset) * share), seed=seed)
    ids, values = view.values("id"), view.values("ground_truth")
    for detections in values:
        kind = rng.choice(("move", "relabel", "delete", "add"))
        if kind == "move":
            x, y, w, h = detections.detections[0].bounding_box
            detections.detections[0].bounding_box = [min(x + 0.01, 0.79), y, w, h]
        elif kind == "relabel":
            detections.detections[0].label = "broken" if detections.detections[0].label != "broken" else "drop"
        elif kind == "delete":
            detections.detections.pop(0)
        else:
            detections.detections.append(fo.Detection(label="wrinkle", bounding_box=[0.05, 0.05, 0.1, 0.1]))
    dataset.set_values("ground_truth", dict(zip(ids, values, strict=True)), key_field="id")
    return len(ids)


def _seconds(work: Callable[[], Any]) -> tuple[float, Any]:
    """Milliseconds ``work`` took, and what it returned."""
    start = time.perf_counter()
    result = work()
    return (time.perf_counter() - start) * 1000, result


def _clone_bytes(dataset: Any) -> int:
    """What a clone occupies in MongoDB: its samples collection on disk (WiredTiger, compressed, after a
    checkpoint) and its indexes."""
    database = dataset._sample_collection.database
    database.client.admin.command("fsync")
    stats = database.command("collStats", dataset._sample_collection_name)
    return int(stats["storageSize"]) + int(stats["totalIndexSize"])


def bench_versions(images: int = 20_000, boxes_per_image: int = 2, edited_share: float = 0.1) -> list[Figure]:
    isolated_database()
    import fiftyone as fo

    from fabricdata.store.dataset import managed_dir
    from fabricdata.store.labeldiff import diff_tables, load_side, save_diff_view
    from fabricdata.store.versions import restore, snapshot

    name = f"ver-{uuid.uuid4().hex[:6]}"
    dataset, folder = _dataset(name, images, boxes_per_image)
    clone_s = min(_seconds(lambda k=k: dataset.clone(f"{name}-clone{k}"))[0] for k in range(2))
    clone_kib = _clone_bytes(fo.load_dataset(f"{name}-clone0")) / 1024
    snapshot_s, (first, _) = _seconds(lambda: snapshot(name))
    again_s = min(_seconds(lambda: snapshot(name))[0] for _ in range(2))
    edited = _edit(dataset, edited_share)
    snapshot(name)

    def diff() -> Any:
        a, b = load_side(name, "v1"), load_side(name, "v2")
        return save_diff_view(name, diff_tables(name, a, b), a, b)

    diff_s, result = _seconds(diff)
    restore_s, _ = _seconds(lambda: restore(name, "v1", f"{name}-v1"))
    for made in (name, f"{name}-clone0", f"{name}-clone1", f"{name}-v1"):
        fo.delete_dataset(made)
        shutil.rmtree(managed_dir(made, "versions").parent, ignore_errors=True)
    shutil.rmtree(folder, ignore_errors=True)
    scale = f"{images:,} images / {images * boxes_per_image:,} boxes"
    clone_what = "dataset.clone() of the same dataset"
    figures = [
        Figure(
            SECTION,
            f"snapshot, {scale} (read, hash, compress, store)",
            snapshot_s,
            clone_what,
            clone_s,
            "ms",
            False,
            "a clone is a copy inside MongoDB (no Python), neither content-addressed nor diffable",
        ),
        Figure(
            SECTION, "snapshot of unchanged labels (what an export adds)", again_s, clone_what, clone_s, "ms", False
        ),
        Figure(
            SECTION,
            f"diff v1 v2, {edited:,} images edited ({result.boxes_changed:,} boxes), saved view with v1 and v2 fields",
            diff_s,
            clone_what,
            clone_s,
            "ms",
            False,
        ),
        Figure(SECTION, "restore v1 as a new dataset (same ids)", restore_s, clone_what, clone_s, "ms", False),
        Figure(
            SECTION,
            "storage of one version (gzip'd JSON file)",
            first.stored_bytes / 1024,
            "storage of the clone (MongoDB samples collection + indexes)",
            clone_kib,
            "KiB",
            False,
            "a version keeps ids, paths and label-file hashes too (restore, write-back)",
        ),
    ]
    return figures


def run() -> list[Figure]:
    return bench_versions()


if __name__ == "__main__":
    from benchmarks.harness import render

    print(render(run()))
