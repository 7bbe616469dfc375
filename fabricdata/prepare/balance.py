"""Class balancing by augmentation: variants of images with under-represented classes until each class reaches
a target instance count (or R times the largest class).

Sources are original images of the split that contain the class, preferring those whose other boxes are not
of the majority class. Deterministic for a seed and idempotent: a second run finds the targets met and adds
nothing.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fabricdata.core.errors import ConfigError
from fabricdata.prepare.augment import make_variants, media_dir, resolve_recipe, source_samples
from fabricdata.store.dataset import (
    F_COPY,
    F_RECIPE_HASH,
    F_SEED,
    F_SOURCE_ID,
    GT_FIELD,
    fiftyone,
    labeled,
    load_dataset,
)
from fabricdata.store.locks import holds_dataset

MAX_ROUNDS = 8


@dataclass(slots=True)
class BalanceReport:
    goal: int
    before: dict[str, int] = field(default_factory=dict)
    after: dict[str, int] = field(default_factory=dict)
    created: int = 0
    dropped_boxes: int = 0
    unreachable: list[str] = field(default_factory=list)


def instance_counts(view: Any, classes: list[str]) -> dict[str, int]:
    counts = Counter(label for labels in view.values(f"{GT_FIELD}.detections.label") for label in labels or [])
    return {name: counts.get(name, 0) for name in classes}


@holds_dataset("balance")
def balance(
    dataset_name: str,
    target: int | None = None,
    ratio: float | None = None,
    recipe_spec: str = "fabric-default",
    split: str | None = "train",
    seed: int = 0,
    workers: int = 1,
    max_copies: int = 20,
    progress: Callable[[int], None] | None = None,
) -> BalanceReport:
    """Add variants until every class of ``split`` has at least the goal number of instances."""
    if (target is None) == (ratio is None):
        raise ConfigError("give exactly one of --target N or --ratio R")
    if (target is not None and target < 1) or (ratio is not None and ratio <= 0):
        raise ConfigError("--target must be >= 1 and --ratio > 0")
    dataset = load_dataset(dataset_name)
    classes = list(dataset.default_classes)
    recipe = resolve_recipe(recipe_spec)
    scope = labeled(dataset.match_tags(split) if split not in (None, "all") else dataset)
    before = instance_counts(scope, classes)
    # the goal ignores variants this very balance (recipe + seed) made, so a second run finds the same goal
    fo = fiftyone()
    ours = (fo.ViewField(F_RECIPE_HASH) == recipe.digest) & (fo.ViewField(F_SEED) == seed)
    base = instance_counts(scope.match(~ours), classes)
    goal = target if target is not None else math.ceil((ratio or 0) * max(base.values(), default=0))
    report = BalanceReport(goal=goal, before=before)
    sources = list(source_samples(dataset, split))
    copies_made = _existing_copies(dataset, recipe.digest, seed)
    for _ in range(MAX_ROUNDS):
        counts = instance_counts(scope, classes)
        plan = _plan(sources, counts, goal, copies_made, max_copies)
        if not plan:
            break
        made = make_variants(dataset, plan, recipe, seed, workers, media_dir(dataset_name), progress)
        report.created += made.created
        report.dropped_boxes += made.dropped_boxes
        for sample, copy in plan:
            copies_made[sample.id] = max(copies_made.get(sample.id, 0), copy + 1)
        if made.created == 0:
            break
    report.after = instance_counts(scope, classes)
    report.unreachable = [name for name, count in report.after.items() if count < goal]
    return report


def _existing_copies(dataset: Any, recipe_digest: str, seed: int) -> dict[str, int]:
    """Copies already made per source with this recipe and seed (the next copy index)."""
    fo = fiftyone()
    view = dataset.match((fo.ViewField(F_RECIPE_HASH) == recipe_digest) & (fo.ViewField(F_SEED) == seed))
    made: dict[str, int] = {}
    for source, copy in zip(*view.values([F_SOURCE_ID, F_COPY]), strict=True):
        made[source] = max(made.get(source, 0), int(copy) + 1)
    return made


def _plan(
    sources: list[Any],
    counts: dict[str, int],
    goal: int,
    copies_made: dict[str, int],
    max_copies: int,
) -> list[tuple[Any, int]]:
    """Which sources to copy (and their next copy indices) to close each class's gap."""
    majority = max(counts, key=lambda name: counts[name])
    expected = dict(counts)
    next_copy = dict(copies_made)
    plan: list[tuple[Any, int]] = []
    for name in sorted(counts, key=lambda n: (counts[n], n)):
        if expected[name] >= goal:
            continue
        candidates = [s for s in sources if name in _labels(s)]
        candidates.sort(key=lambda s: (name != majority and majority in _labels(s), -_labels(s).count(name)))
        while expected[name] < goal:
            progressed = False
            for sample in candidates:
                if expected[name] >= goal:
                    break
                copy = next_copy.get(sample.id, 0)
                if copy >= max_copies:
                    continue
                plan.append((sample, copy))
                next_copy[sample.id] = copy + 1
                for label in _labels(sample):
                    expected[label] = expected.get(label, 0) + 1
                progressed = True
            if not progressed:
                break
    return plan


def _labels(sample: Any) -> list[str]:
    detections = sample[GT_FIELD]
    return [det.label for det in detections.detections] if detections is not None else []
