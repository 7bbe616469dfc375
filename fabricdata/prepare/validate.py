"""Dataset validation in the spirit of Datumaro's validator, adapted to defect detection.

Every finding has a severity and the samples (or boxes, or classes) concerned, and, when samples are
concerned, a saved view ``validate-<check>`` so annotators can open it in the App.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from fabricdata.core.boxes import Box, ImageSize, box_problem, iou
from fabricdata.core.contracts import Finding, Severity, ValidationReport
from fabricdata.core.wording import plural
from fabricdata.prepare.split import current_split
from fabricdata.store.columns import read_samples
from fabricdata.store.dataset import F_FINGERPRINT_KEY, F_SOURCE_ID, GT_FIELD, labeled, load_dataset
from fabricdata.store.locks import holds_dataset

VIEW_PREFIX = "validate-"


class _Rows:
    """One row per box with everything the checks need, read in bulk."""

    def __init__(self, dataset: Any) -> None:
        self.samples: list[tuple[str, str, list[str], str | None]] = []  # id, file, tags, source
        self.sizes: dict[str, ImageSize] = {}
        self.boxes: list[tuple[str, str, str, Box]] = []  # sample id, box id, label, box in pixels
        for sample in read_samples(dataset, fields=[F_SOURCE_ID]):
            self.samples.append((sample.id, sample.filepath, sample.tags, sample.values[0]))
            self.sizes[sample.id] = sample.size
            self.boxes += [(sample.id, b.id, b.label, b.box) for b in sample.boxes[GT_FIELD]]
        self.split = {sid: current_split(t) for sid, _, t, _ in self.samples}
        self.source = {sid: src for sid, _, _, src in self.samples}


@holds_dataset("validate")
def validate(
    dataset_name: str,
    min_instances: int = 10,
    imbalance_ratio: float = 10.0,
    sigma: float = 5.0,
    duplicate_iou: float = 0.9,
    save_views: bool = True,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> ValidationReport:
    """Check the labeled samples of a dataset; ``on_total`` is called once with how many images are read
    (``progress`` advances once per image)."""
    dataset = load_dataset(dataset_name)
    rows = _Rows(labeled(dataset))
    if on_total is not None:
        on_total(len(rows.samples))
    classes = list(dataset.default_classes or [])
    findings: list[Finding] = []
    findings += _label_checks(rows, classes, min_instances, imbalance_ratio)
    findings += _box_checks(rows, sigma, duplicate_iou)
    findings += _image_checks(rows, dataset, progress)
    findings += _lineage_checks(rows)
    findings += _tiling_checks(rows)
    variants = [sid for sid, _, _, source in rows.samples if source]
    if variants:
        message = (
            f"{plural(len(variants), 'augmented variant')}: checked for box validity and lineage; class counts, "
            "balance, size outliers and duplicate boxes count original images only"
        )
        findings.append(_finding("variants", "info", message, variants))
    defect_free = [sid for sid, _, _, _ in rows.samples if sid not in {b[0] for b in rows.boxes}]
    findings.append(
        _finding("defect-free-images", "info", f"{plural(len(defect_free), 'defect-free image')}", defect_free)
    )
    if save_views:
        _save_views(dataset, findings)
    errors = sum(f.severity == "error" for f in findings)
    warnings = sum(f.severity == "warning" for f in findings)
    return ValidationReport(
        dataset=dataset_name, samples=len(rows.samples), errors=errors, warnings=warnings, findings=findings
    )


def _finding(
    check: str,
    severity: Severity,
    message: str,
    samples: Iterable[str] = (),
    labels: Iterable[str] = (),
    classes: Iterable[str] = (),
) -> Finding:
    sample_list = sorted(set(samples))
    label_list = sorted(set(labels))
    class_list = list(dict.fromkeys(classes))
    count = len(label_list) or len(sample_list) or len(class_list)
    return Finding(
        check=check,
        severity=severity,
        message=message,
        count=count,
        samples=sample_list,
        labels=label_list,
        classes=class_list,
    )


def _box_finding(
    check: str, severity: Severity, message: str, pairs: Iterable[tuple[str, str]], classes: Iterable[str] = ()
) -> Finding:
    """A finding about boxes, from (sample id, box id) pairs."""
    listed = list(pairs)
    return _finding(check, severity, message, [p[0] for p in listed], [p[1] for p in listed], classes)


def _boxes(items: list[Any]) -> str:
    return plural(len(items), "box", "boxes")


def _label_checks(rows: _Rows, classes: list[str], min_instances: int, ratio: float) -> list[Finding]:
    """Labels against the class list; class counts and balance over original images only (a flipped copy is
    no new data)."""
    found: list[Finding] = []
    counts = {name: 0 for name in classes}
    undefined = [(sid, lid, label) for sid, lid, label, _ in rows.boxes if label not in counts]
    for sid, _, label, _ in rows.boxes:
        if label in counts and not rows.source.get(sid):
            counts[label] += 1
    if undefined:
        names = sorted({label for _, _, label in undefined})
        found.append(
            _box_finding(
                "undefined-labels",
                "error",
                f"labels not in the class list: {', '.join(names)}",
                [u[:2] for u in undefined],
                names,
            )
        )
    unused = [name for name, count in counts.items() if count == 0]
    if unused:
        found.append(_finding("unused-classes", "warning", f"classes never used: {', '.join(unused)}", classes=unused))
    few = [name for name, count in counts.items() if 0 < count < min_instances]
    if few:
        detail = ", ".join(f"{name} ({counts[name]})" for name in few)
        found.append(_finding("few-instances", "warning", f"fewer than {min_instances} boxes: {detail}", classes=few))
    used = {name: count for name, count in counts.items() if count}
    if len(used) > 1:
        largest, smallest = max(used, key=used.__getitem__), min(used, key=used.__getitem__)
        value = used[largest] / used[smallest]
        if value > ratio:
            message = f"class imbalance {value:.1f}:1 ({largest} {used[largest]} vs {smallest} {used[smallest]})"
            found.append(_finding("class-imbalance", "warning", message, classes=[largest, smallest]))
    return found


def _box_checks(rows: _Rows, sigma: float, duplicate_iou: float) -> list[Finding]:
    found: list[Finding] = []
    degenerate, outside = [], []
    by_class: dict[str, list[tuple[str, str, float]]] = defaultdict(list)
    by_sample: dict[str, list[tuple[str, str, Box]]] = defaultdict(list)
    for sid, lid, label, box in rows.boxes:
        if box.width < 1 or box.height < 1:
            degenerate.append((sid, lid))
            continue
        size = rows.sizes[sid]
        if box_problem(box, size, tolerance=1e-6 * min(size.width, size.height)):  # round-off, never looser
            outside.append((sid, lid))
        if rows.source.get(sid):
            continue  # a variant repeats its source's sizes and duplicates: validity only
        by_class[label].append((sid, lid, math.log(box.area)))
        by_sample[sid].append((lid, label, box))
    if degenerate:
        found.append(
            _box_finding(
                "degenerate-boxes",
                "error",
                f"{plural(len(degenerate), 'box', 'boxes')} under 1 px wide or high",
                degenerate,
            )
        )
    if outside:
        found.append(
            _box_finding(
                "boxes-outside-image",
                "error",
                f"{plural(len(outside), 'box', 'boxes')} reaching outside their image",
                outside,
            )
        )
    outliers = _size_outliers(by_class, sigma)
    if outliers:
        message = f"{_boxes(outliers)} over {sigma:g} sigma from their class's typical size (log area, robust)"
        found.append(_box_finding("box-size-outliers", "warning", message, outliers))
    duplicates = _duplicates(by_sample, duplicate_iou)
    if duplicates:
        found.append(
            _box_finding(
                "duplicate-boxes",
                "warning",
                f"{_boxes(duplicates)} duplicating another of their class (IoU > {duplicate_iou:g})",
                duplicates,
            )
        )
    return found


def _size_outliers(by_class: dict[str, list[tuple[str, str, float]]], sigma: float) -> list[tuple[str, str]]:
    """(sample id, box id) of boxes whose log area is over ``sigma`` robust sigmas from their class's median."""
    outliers = []
    for class_rows in by_class.values():
        if len(class_rows) < 3:
            continue
        # robust sigma (1.4826 MAD around the median): with the plain mean and std an outlier inflates the
        # very spread it is measured against, and below ~27 boxes a 5-sigma outlier cannot exist at all
        areas = np.array([a for _, _, a in class_rows])
        centre = float(np.median(areas))
        spread = 1.4826 * float(np.median(np.abs(areas - centre)))
        if spread > 0:
            outliers += [(sid, lid) for sid, lid, a in class_rows if abs(a - centre) > sigma * spread]
    return outliers


def _duplicates(by_sample: dict[str, list[tuple[str, str, Box]]], duplicate_iou: float) -> list[tuple[str, str]]:
    """(sample id, box id) of every box overlapping an earlier box of its class in its image above the IoU."""
    duplicates = []
    for sid, items in by_sample.items():
        for i, (_, label_a, box_a) in enumerate(items):
            for lid_b, label_b, box_b in items[i + 1 :]:
                if label_a == label_b and iou(box_a, box_b) > duplicate_iou:
                    duplicates.append((sid, lid_b))
    return duplicates


def _image_checks(rows: _Rows, dataset: Any, progress: Callable[[int], None] | None) -> list[Finding]:
    """Byte-identical images, and near-identical ones in different splits, from the fingerprints stored on the
    samples (computed again only for files that changed since)."""
    from fabricdata.store.fingerprints import key_digest, near_duplicate_pairs_of, refresh_fingerprints

    view = dataset.select([sid for sid, _, _, _ in rows.samples])
    refresh_fingerprints(view, progress=progress)
    digests: dict[str, list[str]] = defaultdict(list)
    for sid, key in zip(*view.values(["id", F_FINGERPRINT_KEY]), strict=True):
        if key:
            digests[str(key_digest(key))].append(sid)
    found: list[Finding] = []
    # byte-identical variants of one source are an augmentation artefact, not a data problem
    group = {sid: rows.source.get(sid) or sid for sid in rows.source}
    exact = [ids for ids in digests.values() if len({group[sid] for sid in ids}) > 1]
    if exact:
        found.append(
            _finding(
                "duplicate-images",
                "warning",
                f"{plural(len(exact), 'group')} of byte-identical images",
                [sid for ids in exact for sid in ids],
            )
        )

    def leaks(a: str, b: str) -> bool:
        split_a, split_b = rows.split.get(a), rows.split.get(b)
        return bool(split_a and split_b and split_a != split_b and group[a] != group[b])

    pairs = near_duplicate_pairs_of(view, leaks)
    if pairs:
        found.append(
            _finding(
                "near-duplicates-across-splits",
                "error",
                f"{plural(len(pairs), 'pair')} of near-identical images (copies flipped, rotated, cropped, rescaled "
                f"or re-encoded) in different splits (leakage); 'fabricdata split --dataset {dataset.name} "
                "--reshuffle' keeps near-duplicates together",
                [sid for pair in pairs for sid in pair],
            )
        )
    return found


def _lineage_checks(rows: _Rows) -> list[Finding]:
    crossing, orphans = [], []
    for sid, _, _, source in rows.samples:
        if not source:
            continue
        if source not in rows.split:
            orphans.append(sid)
        elif rows.split[sid] != rows.split[source]:
            crossing.append(sid)
    found = []
    if crossing:
        found.append(
            _finding(
                "variant-split-differs",
                "error",
                f"{plural(len(crossing), 'variant')} in another split than their source",
                crossing,
            )
        )
    if orphans:
        found.append(
            _finding(
                "variant-without-source",
                "warning",
                f"{plural(len(orphans), 'variant')} whose source sample is gone",
                orphans,
            )
        )
    return found


def _tiling_checks(rows: _Rows) -> list[Finding]:
    """Advice (original images): defects small for the model's 768x768 input, or frames too elongated for its
    square resize; names the ``export florence --tile`` to use (fabricdata.prepare.tiling)."""
    from fabricdata.prepare.tiling import tiling_advice

    originals = [sid for sid, _, _, source in rows.samples if not source]
    boxes: dict[str, list[Box]] = defaultdict(list)
    for sid, _, _, box in rows.boxes:
        boxes[sid].append(box)
    advice = tiling_advice([(rows.sizes[sid], boxes[sid]) for sid in originals])
    if advice is None:
        return []
    message = f"{'; '.join(advice.reasons)}: export tiles, 'fabricdata export florence OUT {advice.option()}'"
    return [_finding("small-defects", "warning", message, [originals[i] for i in advice.frames])]


def _save_views(dataset: Any, findings: list[Finding]) -> None:
    wanted = set()
    for finding in findings:
        if not finding.samples or finding.severity == "info":
            continue
        name = f"{VIEW_PREFIX}{finding.check}"
        view = dataset.select(finding.samples)
        if finding.labels:
            view = view.select_labels(ids=finding.labels, fields=GT_FIELD, omit_empty=True)
        dataset.save_view(name, view, overwrite=True)
        finding.view = name
        wanted.add(name)
    for name in dataset.list_saved_views():
        if name.startswith(VIEW_PREFIX) and name not in wanted:
            dataset.delete_saved_view(name)
