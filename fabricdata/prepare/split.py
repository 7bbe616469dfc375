"""Leak-free, stratified, stable train/val/test splits as FiftyOne sample tags.

A *group* is an original sample and all its augmented variants; a group never crosses splits. Groups are
placed by iterative stratification (Sechidis et al., 2011) over images-per-class, with "defect-free" as one
more label, so each class and the defect-free images appear in every split in proportion (multi-label images
included).
Existing assignments are kept unless ``reshuffle``: new images only fill what the splits still need, so the
test set does not churn between fine-tunes. Deterministic for a seed.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fabricdata.core.errors import ConfigError, DatasetError
from fabricdata.store.dataset import F_SOURCE_ID, F_SPLIT_SOURCE, GT_FIELD, SPLITS, labeled, load_dataset
from fabricdata.store.locks import holds_dataset

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
    #: groups of near-identical originals (two or more images each), all of them
    near_duplicate_groups: int = 0
    #: those of them left across the splits their authors (or an earlier split) gave: (file, split) per member
    groups_across: list[list[tuple[str, str]]] = field(default_factory=list)
    #: one line each: an empty split, a class missing from a split (with the command that fixes it)
    warnings: list[str] = field(default_factory=list)


def reshuffle_command(dataset_name: str, ratios: Sequence[float] = (0.8, 0.1, 0.1)) -> str:
    """The command that gives every split images, the test split included (it reassigns every image)."""
    shares = ratios if len(ratios) == 3 and ratios[2] > 0 else (0.8, 0.1, 0.1)
    return f"fabricdata split --dataset {dataset_name} --reshuffle --ratios {','.join(f'{r:g}' for r in shares)}"


def parse_ratios(text: str) -> tuple[float, float, float]:
    """``--ratios 0.8,0.1,0.1`` as three shares summing to 1 (:func:`check_ratios`).

    Raises:
        ConfigError: not three non-negative numbers with a positive sum.
    """
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"--ratios: expected three numbers such as 0.8,0.1,0.1, got {text!r}") from None
    return check_ratios(values, text)


def check_ratios(values: Sequence[float], given: str | None = None) -> tuple[float, float, float]:
    """The train, val and test shares ``values`` normalised to sum to 1 (``(8, 1, 1)`` -> ``(0.8, 0.1, 0.1)``).

    Raises:
        ConfigError: not three finite non-negative numbers with a positive sum (the message quotes ``given``).
    """
    if len(values) != 3 or not all(math.isfinite(v) and v >= 0 for v in values) or sum(values) <= 0:
        shown = given if given is not None else ",".join(f"{v:g}" for v in values)
        raise ConfigError(f"--ratios: expected three non-negative numbers such as 0.8,0.1,0.1, got {shown!r}")
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
    names: Sequence[str] = SPLITS,
) -> dict[str, str]:
    """Assign every group id of ``groups`` (its set of labels) to a split; ``fixed`` ones keep theirs. ``names``
    are the splits, one per ratio (the audit's folds use their own)."""
    rng = np.random.default_rng(seed)
    labels = sorted({label for group in groups.values() for label in group})
    totals = Counter(label for group in groups.values() for label in group)
    need = {s: {label: ratios[i] * totals[label] for label in labels} for i, s in enumerate(names)}
    size_need = {s: ratios[i] * len(groups) for i, s in enumerate(names)}
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
            split = max(names, key=lambda s: (need[s][rarest], size_need[s], -list(names).index(s)))
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


@holds_dataset("split")
def split_dataset(
    dataset_name: str,
    ratios: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    reshuffle: bool = False,
    min_per_split: int = 1,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> SplitReport:
    """Tag every sample ``train``/``val``/``test`` per source group (see the module docstring).

    Near-identical original images (:func:`fabricdata.store.fingerprints.near_duplicate_groups`, the groups
    ``validate`` checks) form one group, so a split never creates the leak that validate reports; a group whose
    members keep different splits (authors' splits, without ``reshuffle``) is reported, not moved. Every split
    with a positive ratio gets at least ``min_per_split`` groups where there are enough. ``progress`` advances
    once per original image whose stored fingerprint is checked; ``on_total`` is called once with their number.
    ``ratios`` are shares of train, val and test (normalised: ``(8, 1, 1)`` is ``(0.8, 0.1, 0.1)``).

    Raises:
        ConfigError: ratios that are not three non-negative numbers with a positive sum.
        DatasetError: no such dataset.
    """
    from fabricdata.store.fingerprints import groups_of_samples

    ratios = check_ratios(ratios)
    dataset = load_dataset(dataset_name)
    ids, paths, tags, sources, labels = labeled(dataset).values(
        ["id", "filepath", "tags", F_SOURCE_ID, f"{GT_FIELD}.detections.label"]
    )
    originals = {sid: path for sid, path, source in zip(ids, paths, sources, strict=True) if not source}
    if on_total is not None:
        on_total(len(originals))
    report = SplitReport()
    found = groups_of_samples(dataset, originals, progress)
    report.near_duplicate_groups = len(found)
    owner = {sid: group[0] for group in found for sid in group}
    groups: dict[str, set[str]] = {}
    fixed: dict[str, str] = {}
    group_of: dict[str, str] = {}
    for sid, sample_tags, source, sample_labels in zip(ids, tags, sources, labels, strict=True):
        if source:
            continue
        gid = f"g:{owner.get(sid, sid)}"
        split = None if reshuffle else current_split(sample_tags)
        if split is not None and fixed.setdefault(gid, split) != split:
            gid = f"g:{sid}:alone"  # kept where it was given: reported below as a group across splits
            fixed[gid] = split
        group_of[sid] = gid
        groups.setdefault(gid, set()).update(set(sample_labels or []) or {DEFECT_FREE})
    for group_labels in groups.values():
        if len(group_labels) > 1:
            group_labels.discard(DEFECT_FREE)
    groups_split = _with_minimum(stratify(groups, fixed, ratios, seed), groups, fixed, ratios, min_per_split)
    assignment = {sid: groups_split[gid] for sid, gid in group_of.items()}
    report.groups_across = _across(found, assignment, originals)
    report.assigned, report.kept = len(groups) - len(fixed), len(fixed)
    wanted: dict[str, str] = {}
    for sid, sample_tags, source in zip(ids, tags, sources, strict=True):
        split = assignment.get(source or sid)
        if split is None:
            continue  # a variant whose source is gone: validate reports it
        if current_split(sample_tags) != split or any(t in SPLITS and t != split for t in sample_tags or []):
            wanted[sid] = split
            report.variants_retagged += bool(source)
    _retag(dataset, wanted, dict(zip(ids, sources, strict=True)))
    report.images = split_table(dataset)
    report.warnings += _coverage_warnings(report.images, ratios, min_per_split, dataset_name, report.assigned)
    return report


def _across(
    groups: list[list[str]], assignment: dict[str, str], originals: dict[str, str]
) -> list[list[tuple[str, str]]]:
    """The near-duplicate groups whose members ended in more than one split, as (file, split) per member."""
    return [
        [(originals[sid], assignment[sid]) for sid in group]
        for group in groups
        if len({assignment.get(sid) for sid in group}) > 1
    ]


def _retag(dataset: Any, wanted: dict[str, str], source_of: dict[str, str | None]) -> None:
    """Give each sample of ``wanted`` its split tag (and no other), and say who decided it."""
    for split in SPLITS:
        chosen = [sid for sid, s in wanted.items() if s == split]
        if chosen:
            view = dataset.select(chosen)
            view.untag_samples(list(SPLITS))
            view.tag_samples(split)
    if wanted:
        view = dataset.select(list(wanted))
        view.set_values(
            F_SPLIT_SOURCE, [SPLIT_BY_VARIANT if source_of[sid] else SPLIT_BY_US for sid in view.values("id")]
        )


def _with_minimum(
    assignment: dict[str, str],
    groups: dict[str, set[str]],
    fixed: dict[str, str],
    ratios: Sequence[float],
    minimum: int,
) -> dict[str, str]:
    """Move groups (never fixed ones) from the largest split into splits with a positive ratio and fewer than
    ``minimum`` groups, fewest labels first, as long as the donor keeps more than the minimum."""
    wanted = [s for s, r in zip(SPLITS, ratios, strict=True) if r > 0]
    for split in wanted:
        while sum(1 for s in assignment.values() if s == split) < minimum:
            sizes = Counter(assignment.values())
            donor = max(wanted, key=lambda s: (sizes[s], -SPLITS.index(s)))
            movable = sorted(
                (gid for gid, s in assignment.items() if s == donor and gid not in fixed),
                key=lambda gid: (len(groups[gid]), gid),
            )
            if donor == split or sizes[donor] <= minimum or not movable:
                break
            assignment[movable[0]] = split
    return assignment


def _coverage_warnings(
    images: dict[str, dict[str, int]], ratios: Sequence[float], minimum: int, dataset_name: str, assigned: int
) -> list[str]:
    """One line per empty split and per class missing from a split that should have it, with what to do."""
    lines = []
    shares = ",".join(f"{r:g}" for r in ratios)
    classes = {label for row in images.values() for label in row if label not in ("(images)", DEFECT_FREE)}
    for split, ratio in zip(SPLITS, ratios, strict=True):
        if ratio <= 0:
            continue
        row = images.get(split, {})
        if not row.get("(images)"):
            lines.append(_empty_split(split, shares, minimum, dataset_name, ratios, assigned))
            continue
        for label in sorted(classes - set(row)):
            total = sum(r.get(label, 0) for r in images.values())
            lines.append(
                f"class {label!r} ({total} image{'s' if total != 1 else ''}) is in no {split} image: add images of "
                f"it or raise the {split} share of --ratios {shares} (with --reshuffle)"
            )
    return lines


def _empty_split(
    split: str, shares: str, minimum: int, dataset_name: str, ratios: Sequence[float], assigned: int
) -> str:
    """Why ``split`` stayed empty and the exact command that fills it."""
    if not assigned:  # every image kept the split it was given (a set published with train/val only)
        given = ", ".join(s for s in SPLITS if s != split)
        return (
            f"split {split} is empty: every image keeps the split it was given ({given}) and none was left to "
            f"assign; '{reshuffle_command(dataset_name, ratios)}' reassigns every image with a {split} share "
            "(or keep the authors' splits and export with --allow-empty-split)"
        )
    return (
        f"split {split} is empty: too few images for --ratios {shares} (--min-per-split {minimum}); add images "
        f"or '{reshuffle_command(dataset_name, ratios)}'"
    )


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


def refuse_variant_leaks(dataset: Any, view: Any) -> None:
    """Raise DatasetError when a variant of ``view`` is tagged with another split than its source sample (an
    augmented copy of a training image in val or test is a leak): names both samples and the fix. Sources are
    read from ``dataset`` (they need not be in ``view``)."""
    paths, tags, sources = view.exists(F_SOURCE_ID).values(["filepath", "tags", F_SOURCE_ID])
    wanted = sorted({source for source in sources if source})
    if not wanted:
        return
    rows = zip(*dataset.select(wanted).values(["id", "filepath", "tags"]), strict=True)
    of_source = {sid: (path, current_split(source_tags)) for sid, path, source_tags in rows}
    leaks = []
    for path, variant_tags, source in zip(paths, tags, sources, strict=True):
        split, (source_path, source_split) = current_split(variant_tags), of_source.get(source, ("", None))
        if split is not None and source_split not in (None, split):
            leaks.append(f"{path} is in {split}, its source {source_path} in {source_split}")
    if leaks:
        more = f" (and {len(leaks) - 1} more variants)" if len(leaks) > 1 else ""
        raise DatasetError(
            f"{leaks[0]}{more}: a variant in another split than its source leaks that image between splits; run "
            "'fabricdata split' (it puts every variant in its source's split), then export again"
        )
