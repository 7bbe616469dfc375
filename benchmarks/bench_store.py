"""Store figures: a 1000-image LabelImg folder imported by FiftyOne's VOC importer and `fabricdata import`."""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.harness import Figure
from tests import mongod


def isolated_database() -> None:
    """Benchmarks never touch a user's datasets: a private mongod of their own (started once, before fiftyone is
    imported; see tests/mongod.py)."""
    if os.environ.get("FABRICDATA_BENCH_DATABASE"):
        return
    home = Path(tempfile.mkdtemp(prefix="fabricdata-bench-"))
    os.environ["FIFTYONE_DATABASE_DIR"] = str(home / "db")
    os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
    os.environ["FABRICDATA_BENCH_DATABASE"] = mongod.start(home / "mongodb")


def bench_import(images: int = 1000, repeats: int = 3) -> list[Figure]:
    isolated_database()
    import fiftyone as fo

    from fabricdata.prepare.synth import SynthConfig, generate

    folder = generate(SynthConfig(images=images, seed=11, width=512, height=512), tempfile.mkdtemp(), workers=2)
    fo.Dataset(f"warm-{uuid.uuid4().hex[:6]}")  # start mongod outside the timings

    def reference(name: str) -> Any:
        return fo.Dataset.from_dir(
            dataset_dir=str(folder),
            dataset_type=fo.types.VOCDetectionDataset,
            data_path=str(folder),
            labels_path=str(folder),
            name=name,
            progress=False,
        )

    ours, theirs = _race(folder, reference, repeats)
    return [
        Figure(
            "Store",
            f"fabricdata import, {images} images 512x512 (real sizes verified, hashes, label schema)",
            ours,
            "fo.Dataset.from_dir(VOCDetectionDataset) (trusts <size>)",
            theirs,
            unit="images/s",
        )
    ]


def bench_nested_import(images: int = 1000, repeats: int = 3) -> list[Figure]:
    """A Roboflow-style tree ({train,valid,test}/{images,labels}, data.yaml, READMEs) imported by
    `fabricdata import` versus FiftyOne's own YOLOv5Dataset importer, one split at a time, on the same tree."""
    isolated_database()
    import fiftyone as fo

    from tests.layouts import roboflow_tree, synth_pool

    work = Path(tempfile.mkdtemp(prefix="fabricdata-bench-rf-"))
    classes = ("Hole", "Knot", "Stain")
    pool = synth_pool(work / "pool", images, classes, seed=5, size=(512, 512))
    root = work / "Fabric-Holes.v2i.yolov8"
    roboflow_tree(root, pool, classes)
    # FiftyOne resolves data.yaml paths against the YAML's folder, where Roboflow's '../train/images' do not
    # exist: give it a YAML with working paths (outside the tree, so our import never sees it)
    fo_yaml = work / "fiftyone-data.yaml"
    fo_yaml.write_text(
        f"path: {root}\ntrain: train/images\nval: valid/images\ntest: test/images\nnames: {list(classes)}\n"
    )
    fo.Dataset(f"warm-{uuid.uuid4().hex[:6]}")  # start mongod outside the timings

    def reference(name: str) -> Any:
        ref = fo.Dataset(name)
        for split in ("train", "val", "test"):
            ref.add_dir(
                dataset_dir=str(root),
                dataset_type=fo.types.YOLOv5Dataset,
                split=split,
                yaml_path=str(fo_yaml),
                tags=split,
                progress=False,
            )
        return ref

    ours, theirs = _race(root, reference, repeats)
    return [
        Figure(
            "Store",
            f"fabricdata import, Roboflow tree of {images} images 512x512 (discovery, data.yaml, split tags, "
            "real sizes verified)",
            ours,
            "FiftyOne YOLOv5Dataset importer, 3 splits (no image read for sizes)",
            theirs,
            unit="images/s",
        )
    ]


def _race(folder: Path, reference: Callable[[str], Any], repeats: int) -> tuple[float, float]:
    """Images/s of `fabricdata import` and of FiftyOne's ``reference`` importer on one folder, interleaved, best
    of ``repeats`` each."""
    import fiftyone as fo

    from fabricdata.store.importer import import_folder

    ours, theirs = 0.0, 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        ref = reference(f"ref-{uuid.uuid4().hex[:6]}")
        theirs = max(theirs, len(ref) / (time.perf_counter() - start))
        ref.delete()
        name = f"ours-{uuid.uuid4().hex[:6]}"
        start = time.perf_counter()
        report = import_folder(folder, name)
        ours = max(ours, report.added / (time.perf_counter() - start))
        fo.load_dataset(name).delete()
    return ours, theirs


def run() -> list[Figure]:
    return bench_import() + bench_nested_import()
