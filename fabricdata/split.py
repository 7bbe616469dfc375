"""Leak-free, stratified, stable train/val/test splits as FiftyOne sample tags.

A *group* is an original sample and all its augmented variants; a group never crosses splits. Groups are
placed by iterative stratification (Sechidis et al., 2011) over images-per-class, with "defect-free" as one
more label, so each class and the defect-free images appear in every split in proportion (multi-label images
included).
Existing assignments are kept unless ``reshuffle``: new images only fill what the splits still need, so the
test set does not churn between fine-tunes. Deterministic for a seed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fabricdata.errors import ConfigError
from fabricdata.store import F_SOURCE_ID, F_SPLIT_SOURCE, GT_FIELD, SPLITS, load_dataset

DEFECT_FREE = "(defect-free)"
#: what ``split_source`` says of splits this module assigned
SPLIT_BY_US = "fabricdata split"
SPLIT_BY_VARIANT = "its source's split"


@dataclass(slots=True)
class SplitReport:
    assigned: int = 0
    kept: int = 0
    variants_retagged: int = 0
    images: dict[str, dict[str, int]] = field(default_factory=dict)


def parse_ratios(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"--ratios: expected three numbers such as 0.8,0.1,0.1, got {text!r}") from None
    if len(values) != 3 or any(v < 0 for v in values) or sum(values) <= 0:
        raise ConfigError(f"--ratios: expected three non-negative numbers such as 0.8,0.1,0.1, got {text!r}")
    total = sum(values)
    return (values[0] / total, values[1] / total, values[2] / total)


def current_split(tags: Sequence[str] | None) -> str | None:
    found = [s for s in SPLITS if tags and s in tags]
    return found[0] if len(found) == 1 else None


def stratify(
    groups: dict[str, set[str]],
    fixed: dict[str, str],
    ratios: Sequence[float],
    seed: int,
) -> dict[str, str]:
    """Assign every group id of ``groups`` (its set of labels) to a split; ``fixed`` ones keep theirs."""
    rng = np.random.default_rng(seed)
    labels = sorted({label for group in groups.values() for label in group})
    totals = Counter(label for group in groups.values() for label in group)
    need = {s: {label: ratios[i] * totals[label] for label in labels} for i, s in enumerate(SPLITS)}
    size_need = {s: ratios[i] * len(groups) for i, s in enumerate(SPLITS)}
    assignment: dict[str, str] = {}
    for gid, split in fixed.items():
        if gid in groups:
            _place(gid, split, groups, need, size_need, assignment)
    order = sorted(gid for gid in groups if gid not in assignment)
    order = [order[i] for i in rng.permutation(len(order))]
    while len(assignment) < len(groups):
        left = Counter(label for gid in order if gid not in assignment for label in groups[gid])
        rarest = min(left, key=lambda label: (left[label], label))
        for gid in order:
            if gid in assignment or rarest not in groups[gid]:
                continue
            split = max(SPLITS, key=lambda s: (need[s][rarest], size_need[s], -SPLITS.index(s)))
            _place(gid, split, groups, need, size_need, assignment)
    return assignment


def _place(
    gid: str,
    split: str,
    groups: dict[str, set[str]],
    need: dict[str, dict[str, float]],
    size_need: dict[str, float],
    assignment: dict[str, str],
) -> None:
    assignment[gid] = split
    size_need[split] -= 1
    for label in groups[gid]:
        need[split][label] -= 1


def split_dataset(
    dataset_name: str,
    ratios: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    reshuffle: bool = False,
) -> SplitReport:
    """Tag every sample ``train``/``val``/``test`` per source group (see the module docstring)."""
    dataset = load_dataset(dataset_name)
    ids, tags, sources, labels = dataset.values(["id", "tags", F_SOURCE_ID, f"{GT_FIELD}.detections.label"])
    groups: dict[str, set[str]] = {}
    fixed: dict[str, str] = {}
    for sid, sample_tags, source, sample_labels in zip(ids, tags, sources, labels, strict=True):
        if source:
            continue
        groups[sid] = set(sample_labels or []) or {DEFECT_FREE}
        split = current_split(sample_tags)
        if split is not None and not reshuffle:
            fixed[sid] = split
    assignment = stratify(groups, fixed, ratios, seed)
    report = SplitReport(assigned=len(assignment) - len(fixed), kept=len(fixed))
    wanted: dict[str, str] = {}
    for sid, sample_tags, source in zip(ids, tags, sources, strict=True):
        split = assignment.get(source or sid)
        if split is None:
            continue  # a variant whose source is gone: validate reports it
        if current_split(sample_tags) != split or any(t in SPLITS and t != split for t in sample_tags or []):
            wanted[sid] = split
            report.variants_retagged += bool(source)
    for split in SPLITS:
        chosen = [sid for sid, s in wanted.items() if s == split]
        if chosen:
            view = dataset.select(chosen)
            view.untag_samples(list(SPLITS))
            view.tag_samples(split)
    if wanted:
        by_source = dict(zip(ids, sources, strict=True))
        dataset.select(list(wanted)).set_values(
            F_SPLIT_SOURCE,
            [SPLIT_BY_VARIANT if by_source[sid] else SPLIT_BY_US for sid in dataset.select(list(wanted)).values("id")],
        )
    report.images = split_table(dataset)
    return report


def split_table(dataset: Any) -> dict[str, dict[str, int]]:
    """Original images per split and class (``(defect-free)`` included)."""
    tags, sources, labels = dataset.values(["tags", F_SOURCE_ID, f"{GT_FIELD}.detections.label"])
    table: dict[str, dict[str, int]] = {s: {} for s in SPLITS}
    for sample_tags, source, sample_labels in zip(tags, sources, labels, strict=True):
        split = current_split(sample_tags)
        if source or split is None:
            continue
        for label in set(sample_labels or []) or {DEFECT_FREE}:
            table[split][label] = table[split].get(label, 0) + 1
        table[split]["(images)"] = table[split].get("(images)", 0) + 1
    return table
