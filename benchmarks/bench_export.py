"""Export figures: a streamed Florence-2 export of ~10k records beside an in-memory baseline."""

from __future__ import annotations

import json
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable
from pathlib import Path

from benchmarks.bench_store import isolated_database
from benchmarks.harness import Figure


def _in_memory_baseline(name: str, out: Path) -> int:
    """Load every sample's labels, build every record in a list, then write the files."""
    from fabricdata.core.annotation import LabeledBox
    from fabricdata.core.boxes import ImageSize, fiftyone_to_box
    from fabricdata.prepare.export import ExportOptions, records_for
    from fabricdata.store.dataset import load_dataset

    dataset = load_dataset(name)
    paths, tags, widths, heights, labels, boxes = dataset.sort_by("filepath").values(
        [
            "filepath",
            "tags",
            "metadata.width",
            "metadata.height",
            "ground_truth.detections.label",
            "ground_truth.detections.bounding_box",
        ]
    )
    records: dict[str, list[dict[str, str]]] = {"train": [], "val": [], "test": []}
    for path, sample_tags, w, h, sample_labels, rels in zip(paths, tags, widths, heights, labels, boxes, strict=True):
        size = ImageSize(w, h)
        objects = [
            LabeledBox(lab, fiftyone_to_box(r, size)) for lab, r in zip(sample_labels or [], rels or [], strict=True)
        ]
        split = next(t for t in sample_tags if t in records)
        for record in records_for(objects, size, Path(path).name, ExportOptions()).values():
            if record is not None:
                records[split].append(record)
    count = 0
    for split, rows in records.items():
        folder = out / split
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "annotations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        count += len(rows)
    return count


def _measure(work: Callable[[], int]) -> tuple[float, float]:
    start = time.perf_counter()
    count = work()
    rate = count / (time.perf_counter() - start)
    tracemalloc.start()
    work()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return rate, peak / 2**20


def bench_export(images: int = 3600) -> list[Figure]:
    isolated_database()
    import fiftyone as fo

    from fabricdata.prepare.export import export_florence
    from fabricdata.prepare.split import split_dataset
    from fabricdata.prepare.synth import SynthConfig, generate
    from fabricdata.store.importer import import_folder

    folder = generate(SynthConfig(images=images, seed=4, width=128, height=96), tempfile.mkdtemp(), workers=2)
    name = f"exp-{uuid.uuid4().hex[:6]}"
    import_folder(folder, name)
    split_dataset(name)
    scratch = Path(tempfile.mkdtemp())
    counter = iter(range(100))

    def ours() -> int:
        manifest = export_florence(name, scratch / f"ours-{next(counter)}")
        return sum(sum(per_task.values()) for per_task in manifest.records.values())

    def baseline() -> int:
        return _in_memory_baseline(name, scratch / f"base-{next(counter)}")

    rate_base, peak_base = _measure(baseline)
    rate_ours, peak_ours = _measure(ours)
    records = ours()
    fo.delete_dataset(name)
    return [
        Figure(
            "Florence-2 export",
            f"export florence, {records} records (streamed, images linked, manifest)",
            rate_ours,
            "records built in memory first, then written (no images, no manifest)",
            rate_base,
            unit="records/s",
        ),
        Figure(
            "Florence-2 export",
            "peak Python memory, streamed export",
            peak_ours,
            "peak Python memory, in-memory baseline",
            peak_base,
            unit="MiB",
            higher_is_better=False,
        ),
    ]


def run() -> list[Figure]:
    return bench_export()
