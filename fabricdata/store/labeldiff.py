"""Box-level differences between two label versions (or a version and the dataset now), and the saved view that
shows them in the App, before and after.

Images are matched by file path. Only images whose boxes differ are looked at box by box: a box keeps its id
through App edits, so boxes are paired by id first; what is left (a box re-imported from an edited file gets a
new id, a box deleted and drawn again) is paired by IoU within its image, best overlap first (same class first on
ties), at ``iou`` or more, in one vectorised pass over the candidate pairs. A pair whose class differs is
*relabelled*, whose corners moved by more than :data:`MOVE_TOLERANCE_PX` is *moved*, whose attributes or label
tags differ has *attributes* changed; a box without a partner is *added* or *removed*.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fabricdata.core.boxes import fiftyone_to_boxes, iou_pairs
from fabricdata.core.contracts import BoxChanges, LabelDiff
from fabricdata.core.wording import plural
from fabricdata.store.dataset import F_VERIFIED, GT_FIELD, SPLITS, detections_layout_matches, fiftyone, load_dataset
from fabricdata.store.labeltable import LabelTable, detection_document, image_boxes, originals, read_labels
from fabricdata.store.versions import NOW, load_version

#: corners that moved less than this (pixels) did not move (float noise of the relative coordinates)
MOVE_TOLERANCE_PX = 0.01
DEFAULT_IOU = 0.5


@dataclass(frozen=True, slots=True)
class Side:
    """One side of a diff: a version (its name and id) or the dataset's labels now."""

    name: str
    id: str
    table: LabelTable


def load_side(dataset_name: str, ref: str) -> Side:
    """``now`` (the dataset's labels now) or a version by name or id (see ``versions.find_version``)."""
    if ref == NOW:
        table = read_labels(load_dataset(dataset_name))
        return Side(NOW, table.content_id(), table)
    version, table = load_version(dataset_name, ref)
    return Side(version.name, version.id, table)


@dataclass(slots=True)
class _Boxes:
    """The boxes of one side that take part: ``group`` is the index of their image among those changed on both
    sides, -1 for an image on this side only."""

    group: np.ndarray
    ids: list[str]
    labels: list[str]
    xyxy: np.ndarray
    extras: list[str]


def _keys(paths: list[str]) -> list[str]:
    """File paths as image keys (a path that occurs twice gets a counter)."""
    seen: Counter[str] = Counter()
    keys = []
    for path in paths:
        keys.append(f"{path}\0{seen[path]}" if seen[path] else path)
        seen[path] += 1
    return keys


def _boxes(table: LabelTable, group_of: np.ndarray) -> _Boxes:
    """The boxes of the images with ``group_of[image] != -2``, in pixels."""
    sample = np.asarray(table.boxes["sample"], dtype=np.int64)
    chosen = np.flatnonzero(group_of[sample] != -2) if len(sample) else np.zeros(0, dtype=np.int64)
    sizes = np.stack([np.asarray(table.samples[k], dtype=np.float64) for k in ("width", "height")], axis=1)
    rel = np.asarray([table.boxes["bounding_box"][i] for i in chosen], dtype=np.float64).reshape(-1, 4)
    attributes = table.attributes
    extras = [
        json.dumps(
            [
                sorted(table.boxes["tags"][i] or []),
                {n: table.boxes[n][i] for n in attributes if table.boxes[n][i] is not None},
            ],
            sort_keys=True,
        )
        for i in chosen
    ]
    return _Boxes(
        group=group_of[sample[chosen]],
        ids=[table.boxes["id"][i] for i in chosen],
        labels=[table.boxes["label"][i] for i in chosen],
        xyxy=fiftyone_to_boxes(rel, sizes[sample[chosen]]),
        extras=extras,
    )


def _candidates(group_a: np.ndarray, group_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every (a, b) index pair of boxes in the same group, without a Python loop."""
    order = np.argsort(group_b, kind="stable")
    start = np.searchsorted(group_b[order], group_a, "left")
    reps = np.searchsorted(group_b[order], group_a, "right") - start
    a_index = np.repeat(np.arange(len(group_a)), reps)
    offsets = np.arange(int(reps.sum())) - np.repeat(np.cumsum(reps) - reps, reps)
    return a_index, order[np.repeat(start, reps) + offsets]


def match_boxes(a: _Boxes, b: _Boxes, iou: float) -> list[tuple[int, int]]:
    """Pairs (index in a, index in b) of the same box: same id in the same image, then the best IoU >= ``iou``."""
    by_id = {(int(g), i): k for k, (g, i) in enumerate(zip(b.group, b.ids, strict=True)) if g >= 0}
    pairs = [
        (k, by_id[(int(g), i)]) for k, (g, i) in enumerate(zip(a.group, a.ids, strict=True)) if (int(g), i) in by_id
    ]
    used_a, used_b = {p[0] for p in pairs}, {p[1] for p in pairs}
    left_a = np.asarray([k for k in range(len(a.ids)) if a.group[k] >= 0 and k not in used_a], dtype=np.int64)
    left_b = np.asarray([k for k in range(len(b.ids)) if b.group[k] >= 0 and k not in used_b], dtype=np.int64)
    ca, cb = _candidates(a.group[left_a], b.group[left_b])
    ca, cb = left_a[ca], left_b[cb]
    overlap = iou_pairs(a.xyxy[ca], b.xyxy[cb])
    keep = overlap >= iou
    ca, cb, overlap = ca[keep], cb[keep], overlap[keep]
    other_class = np.asarray([a.labels[i] != b.labels[j] for i, j in zip(ca, cb, strict=True)], dtype=bool)
    for k in np.lexsort((cb, ca, other_class, -overlap)):  # greedy: best overlap first, then same class
        i, j = int(ca[k]), int(cb[k])
        if i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
            pairs.append((i, j))
    return pairs


def diff_tables(dataset_name: str, a: Side, b: Side, iou: float = DEFAULT_IOU) -> LabelDiff:
    """The box-level changes from ``a`` to ``b`` (see the module docstring); no view saved."""
    keys_a, keys_b = _keys(a.table.samples["filepath"]), _keys(b.table.samples["filepath"])
    index_b = {key: row for row, key in enumerate(keys_b)}
    rows_a, rows_b = a.table.box_rows(), b.table.box_rows()
    common = [(row, index_b[key]) for row, key in enumerate(keys_a) if key in index_b]
    changed = [(i, j) for i, j in common if rows_a[i] != rows_b[j]]
    group_a, group_b = np.full(len(keys_a), -2), np.full(len(keys_b), -2)
    for group, (i, j) in enumerate(changed):
        group_a[i], group_b[j] = group, group
    only_a = [row for row, key in enumerate(keys_a) if key not in index_b]
    only_b = sorted(set(range(len(keys_b))) - {j for _, j in common})
    group_a[only_a], group_b[only_b] = -1, -1
    boxes_a, boxes_b = _boxes(a.table, group_a), _boxes(b.table, group_b)
    counts = _count(boxes_a, boxes_b, match_boxes(boxes_a, boxes_b, iou))
    changed_rows = sorted({changed[g][1] for g in counts.groups} | set(only_b))
    return LabelDiff(
        dataset=dataset_name,
        a=a.name,
        a_id=a.id,
        b=b.name,
        b_id=b.id,
        iou=iou,
        boxes_changed=sum(c.added + c.removed for c in counts.per_class.values()) + counts.pairs,
        total=_total(counts.per_class.values()),
        per_class=dict(sorted(counts.per_class.items())),
        relabelled=dict(sorted(counts.relabelled.items())),
        samples_added=len(only_b),
        samples_removed=len(only_a),
        samples_changed=len(counts.groups),
        **_sample_changes(a.table, b.table, common),
        changed=[b.table.samples["filepath"][row] for row in changed_rows],
    )


@dataclass(slots=True)
class _Counts:
    per_class: dict[str, BoxChanges] = field(default_factory=dict)
    relabelled: Counter[str] = field(default_factory=Counter)
    #: matched pairs that changed, and the groups (images on both sides) with any box change
    pairs: int = 0
    groups: set[int] = field(default_factory=set)

    def of(self, label: str) -> BoxChanges:
        return self.per_class.setdefault(label, BoxChanges())


def _count(a: _Boxes, b: _Boxes, pairs: list[tuple[int, int]]) -> _Counts:
    """Per class counts, relabel pairs, and what changed."""
    counts = _Counts()
    for i, j in pairs:
        moved = bool(np.abs(a.xyxy[i] - b.xyxy[j]).max() > MOVE_TOLERANCE_PX)
        other = a.labels[i] != b.labels[j]
        attributes = a.extras[i] != b.extras[j]
        if moved:
            counts.of(b.labels[j]).moved += 1
        if attributes:
            counts.of(b.labels[j]).attributes += 1
        if other:
            counts.of(a.labels[i]).relabelled += 1
            counts.relabelled[f"{a.labels[i]} -> {b.labels[j]}"] += 1
        if moved or other or attributes:
            counts.pairs += 1
            counts.groups.add(int(b.group[j]))
    for k in set(range(len(a.ids))) - {i for i, _ in pairs}:
        counts.of(a.labels[k]).removed += 1
        counts.groups.add(int(a.group[k]))
    for k in set(range(len(b.ids))) - {j for _, j in pairs}:
        counts.of(b.labels[k]).added += 1
        counts.groups.add(int(b.group[k]))
    counts.groups.discard(-1)  # images on one side only are counted as added or removed images
    return counts


def _total(changes: Any) -> BoxChanges:
    total = BoxChanges()
    for change in changes:
        for name in BoxChanges.model_fields:
            setattr(total, name, getattr(total, name) + getattr(change, name))
    return total


def _sample_changes(a: LabelTable, b: LabelTable, common: list[tuple[int, int]]) -> dict[str, int]:
    """Images on both sides whose split, other tags or verified flag, or stored image changed."""
    split = tags = image = 0
    for i, j in common:
        tags_a, tags_b = set(a.samples["tags"][i] or ()), set(b.samples["tags"][j] or ())
        split += (tags_a & set(SPLITS)) != (tags_b & set(SPLITS))
        tags += (tags_a - set(SPLITS)) != (tags_b - set(SPLITS)) or a.samples[F_VERIFIED][i] != b.samples[F_VERIFIED][j]
        image += any(a.samples[k][i] != b.samples[k][j] for k in ("width", "height", "size_bytes"))
    return {"split_changed": split, "tags_changed": tags, "images_changed": image}


# --- the App view ---------------------------------------------------------------------------------------------


def version_field(name: str) -> str:
    """The label field that shows version ``name`` in a diff view: ``v3`` -> ``version_v3``."""
    return "version_" + re.sub(r"[^A-Za-z0-9_]", "_", name)


def save_diff_view(dataset_name: str, diff: LabelDiff, a: Side, b: Side) -> LabelDiff:
    """Save the view ``diff-A-B`` of the changed images the dataset holds; a side that is not ``now`` is written
    to the label field ``version_<name>`` of those images, so the App shows it beside ``ground_truth``."""
    dataset = load_dataset(dataset_name)
    ids, paths = originals(dataset).values(["id", "filepath"])
    by_path = dict(zip(paths, ids, strict=True))
    shown = [by_path[path] for path in diff.changed if path in by_path]
    fields: dict[str, str] = {}
    for key, side in (("a", a), ("b", b)):
        fields[key] = GT_FIELD if side.name == NOW else version_field(side.name)
        if side.name != NOW:
            _write_field(
                dataset, fields[key], side.table, {path: by_path[path] for path in diff.changed if path in by_path}
            )
    if not shown:
        return diff.model_copy(update={"fields": fields})
    name = f"diff-{a.name}-{b.name}"
    dataset.save_view(name, dataset.select(shown, ordered=True), overwrite=True)
    return diff.model_copy(update={"view": name, "fields": fields})


def _write_field(dataset: Any, field: str, table: LabelTable, ids_by_path: dict[str, str]) -> None:
    """``field`` holds the boxes of ``table`` on the images ``ids_by_path`` names (new box ids, so the App never
    takes them for the ground truth's), and nothing elsewhere. Written as stored documents in one bulk update."""
    fo = fiftyone()
    if dataset.has_sample_field(field):
        dataset.clear_sample_field(field)
    else:
        dataset.add_sample_field(field, fo.EmbeddedDocumentField, embedded_doc_type=fo.Detections)
    per_image = image_boxes(table)
    rows = {
        ids_by_path[path]: per_image[row] for row, path in enumerate(table.samples["filepath"]) if path in ids_by_path
    }
    if not rows:
        return
    if detections_layout_matches():
        values: dict[str, Any] = {
            sid: {"_cls": "Detections", "detections": [detection_document(box, new_id=True) for box in boxes]}
            for sid, boxes in rows.items()
        }
    else:
        values = {
            sid: fo.Detections(detections=[fo.Detection(**{k: v for k, v in b.items() if k != "id"}) for b in boxes])
            for sid, boxes in rows.items()
        }
    dataset.set_values(field, values, key_field="id", validate=False)


def statement(diff: LabelDiff) -> str:
    """One line for people: ``41 boxes changed (12 moved, 9 relabelled, 15 added, 5 removed) in 30 images``."""
    total = diff.total
    if not diff.boxes_changed and not diff.samples_added and not diff.samples_removed:
        return "the same boxes" + (
            f" ({plural(diff.split_changed, 'image')} in another split)" if diff.split_changed else ""
        )
    parts = [
        f"{total.moved} moved",
        f"{total.relabelled} relabelled",
        f"{total.added} added",
        f"{total.removed} removed",
    ]
    if total.attributes:
        parts.append(f"{total.attributes} with other attributes")
    images = diff.samples_changed + diff.samples_added
    return f"{plural(diff.boxes_changed, 'box', 'boxes')} changed ({', '.join(parts)}) in {plural(images, 'image')}"
