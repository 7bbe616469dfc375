"""Dataset statistics: instances and images per class and split, defect-free images, box sizes per class."""

from __future__ import annotations

from collections import Counter
from typing import Any

from fabricdata.store.columns import read_samples
from fabricdata.store.dataset import F_SPLIT_SOURCE, GT_FIELD, SPLITS, labeled, load_dataset, pending_drafts


def box_table(dataset: Any, field: str = GT_FIELD) -> Any:
    """One row per box: sample id, split, label, width and height in pixels (a pandas DataFrame)."""
    import pandas as pd

    rows = [
        (sample.id, _split_of(sample.tags), b.label, b.box.width, b.box.height)
        for sample in read_samples(dataset, {field: ()})
        for b in sample.boxes[field]
    ]
    return pd.DataFrame(rows, columns=["sample", "split", "label", "width", "height"])


def _split_of(tags: list[str] | None) -> str:
    for split in SPLITS:
        if tags and split in tags:
            return split
    return "unassigned"


def dataset_stats(dataset_name: str, field: str = GT_FIELD) -> dict[str, Any]:
    """Everything ``fabricdata stats`` shows, as plain JSON-able data. ``classes`` are the classes boxes use;
    ``unused_classes`` the declared ones no box uses."""
    everything = load_dataset(dataset_name)
    dataset = labeled(everything)  # drafts awaiting verification are counted apart
    boxes = box_table(dataset, field)
    ids, tags, labels, split_sources = dataset.values(["id", "tags", f"{field}.detections.label", F_SPLIT_SOURCE])
    splits = [_split_of(t) for t in tags]
    sources = Counter(
        (source or "unknown") if split != "unassigned" else "unassigned"
        for split, source in zip(splits, split_sources, strict=True)
    )
    declared = list(dataset.default_classes or [])
    used = {str(label) for label in boxes["label"]}
    classes = [name for name in declared if name in used] + sorted(used - set(declared))
    split_names = [s for s in (*SPLITS, "unassigned") if s in splits]
    images_per_split = {s: splits.count(s) for s in split_names}
    defect_free = {
        s: sum(1 for sp, lab in zip(splits, labels, strict=True) if sp == s and not lab) for s in split_names
    }
    instances: dict[str, dict[str, int]] = {}
    images: dict[str, dict[str, int]] = {}
    for name in classes:
        rows = boxes[boxes["label"] == name]
        instances[name] = {s: int((rows["split"] == s).sum()) for s in split_names}
        images[name] = {s: int(rows[rows["split"] == s]["sample"].nunique()) for s in split_names}
    sizes = {}
    for name, rows in boxes.groupby("label"):
        sizes[str(name)] = {
            "count": len(rows),
            "width_mean": round(float(rows["width"].mean()), 1),
            "height_mean": round(float(rows["height"].mean()), 1),
            "width_median": round(float(rows["width"].median()), 1),
            "height_median": round(float(rows["height"].median()), 1),
            "area_min": round(float((rows["width"] * rows["height"]).min()), 1),
            "area_max": round(float((rows["width"] * rows["height"]).max()), 1),
        }
    return {
        "dataset": dataset_name,
        "samples": len(ids),
        "classes": classes,
        # declared (class-name file, --classes) but used by no box
        "unused_classes": [name for name in declared if name not in used],
        "splits": split_names,
        "images_per_split": images_per_split,
        "split_sources": {name: sources[name] for name in sorted(sources)},
        "defect_free": defect_free,
        "instances": instances,
        "images": images,
        "box_sizes": sizes,
        "drafts_to_verify": len(pending_drafts(everything)),
    }
