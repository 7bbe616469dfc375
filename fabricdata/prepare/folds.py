"""K folds of the labelled originals for an out-of-fold audit, with the grouping rules of ``split``.

A *group* is an original, its augmented variants and every near-identical original (as ``split`` and ``validate``
find them); a group never crosses folds, so no model is trained on a copy of an image it audits. Groups are placed
by ``split``'s iterative stratification over images-per-class, so each class is in every fold in proportion.

For fold ``k`` the other folds are cut once more, by the same rules, into the run's training and validation
groups (validation drives ``best`` and early stopping, so it must not come from fold ``k`` either); fold ``k``'s
originals are the held-out split the run predicts. Its variants are in no split: they would let the run see the
images it audits. Deterministic for a seed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fabricdata.core.errors import ConfigError
from fabricdata.prepare.split import DEFECT_FREE, stratify
from fabricdata.store.dataset import F_SOURCE_ID, GT_FIELD, labeled, load_dataset

#: the share of the other folds' groups each fold's run validates on
VALID_SHARE = 0.1
#: the roles of a fold's export, as split tags (train, val, test): test is the held-out fold
TRAIN, VALID, HELD_OUT = "train", "val", "test"


@dataclass(frozen=True, slots=True)
class FoldPlan:
    """Which fold each labelled sample is in, and per fold the split tag of each sample its export holds."""

    folds: int
    seed: int
    #: original sample id -> fold
    fold_of: dict[str, int]
    #: per fold: sample id -> ``train`` / ``val`` / ``test`` (variants of held-out originals absent)
    roles: list[dict[str, str]]
    #: near-identical pairs of originals kept together
    near_duplicates: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "folds": self.folds,
            "seed": self.seed,
            "fold_of": self.fold_of,
            "roles": self.roles,
            "near_duplicates": self.near_duplicates,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FoldPlan:
        """Raises: ConfigError when the record is not a fold plan."""
        try:
            roles = [{str(k): str(v) for k, v in fold.items()} for fold in data["roles"]]
            fold_of = {str(k): int(v) for k, v in data["fold_of"].items()}
            return cls(int(data["folds"]), int(data["seed"]), fold_of, roles, int(data.get("near_duplicates", 0)))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"not a fold plan ({exc.__class__.__name__}: {exc})") from None


def plan_folds(
    dataset_name: str,
    folds: int,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> FoldPlan:
    """Cut the labelled originals of a dataset into ``folds`` folds (see the module docstring). ``progress``
    advances once per original read for the near-duplicate search; ``on_total`` gets their number first.

    Raises:
        ConfigError: fewer than 2 folds, or fewer groups than folds.
        DatasetError: no such dataset.
    """
    if folds < 2:
        raise ConfigError(f"--folds {folds}: an out-of-fold audit needs at least 2 folds")
    dataset = load_dataset(dataset_name)
    ids, paths, sources, labels = labeled(dataset).values(
        ["id", "filepath", F_SOURCE_ID, f"{GT_FIELD}.detections.label"]
    )
    originals = {sid: path for sid, path, source in zip(ids, paths, sources, strict=True) if not source}
    if on_total is not None:
        on_total(len(originals))
    from fabricdata.store.fingerprints import groups_of_samples

    owner = {sid: group[0] for group in groups_of_samples(dataset, originals, progress) for sid in group}
    group_of = {sid: f"g:{owner.get(sid, sid)}" for sid in originals}
    groups = _group_labels(group_of, dict(zip(ids, labels, strict=True)))
    if len(groups) < folds:
        raise ConfigError(f"--folds {folds}: the dataset has only {len(groups)} independent image group(s)")
    names = [str(k) for k in range(folds)]
    placed = stratify(groups, {}, [1 / folds] * folds, seed, names)
    fold_of = {sid: int(placed[gid]) for sid, gid in group_of.items()}
    variants = {sid: source for sid, source in zip(ids, sources, strict=True) if source and source in fold_of}
    roles = [_roles(k, fold_of, group_of, groups, variants, seed) for k in range(folds)]
    pairs = sum(1 for sid in owner if owner[sid] != sid)
    return FoldPlan(folds, seed, fold_of, roles, pairs)


def _group_labels(group_of: dict[str, str], labels_of: dict[str, Sequence[str] | None]) -> dict[str, set[str]]:
    """Group id -> the classes its originals show (``(defect-free)`` for a group without any box)."""
    groups: dict[str, set[str]] = {}
    for sid, gid in group_of.items():
        groups.setdefault(gid, set()).update(labels_of.get(sid) or [])
    return {gid: found or {DEFECT_FREE} for gid, found in groups.items()}


def _roles(
    fold: int,
    fold_of: dict[str, int],
    group_of: dict[str, str],
    groups: dict[str, set[str]],
    variants: dict[str, str],
    seed: int,
) -> dict[str, str]:
    """Split tags of fold ``fold``'s export: its originals held out, the other folds' groups cut into train and
    validation (at least one validation group), every variant with its source unless that is held out."""
    others = {gid: groups[gid] for sid, gid in group_of.items() if fold_of[sid] != fold}
    cut = stratify(others, {}, (1 - VALID_SHARE, VALID_SHARE, 0.0), seed + fold, (TRAIN, VALID, HELD_OUT))
    if VALID not in cut.values() and len(cut) > 1:
        cut[sorted(cut, key=lambda gid: (len(others[gid]), gid))[0]] = VALID
    roles = {sid: HELD_OUT if fold_of[sid] == fold else cut[group_of[sid]] for sid in fold_of}
    roles.update({sid: roles[source] for sid, source in variants.items() if roles[source] != HELD_OUT})
    return roles


def fold_view(dataset: Any, roles: dict[str, str]) -> Any:
    """The samples of one fold's export, each with exactly its split tag (a view: the dataset's own split tags are
    not touched)."""
    from bson import ObjectId

    from fabricdata.store.dataset import fiftyone

    F = fiftyone().ViewField  # noqa: N806 - FiftyOne's own idiom
    by_role = {role: [ObjectId(sid) for sid, r in roles.items() if r == role] for role in (TRAIN, VALID)}
    tags = F("_id").is_in(by_role[TRAIN]).if_else([TRAIN], F("_id").is_in(by_role[VALID]).if_else([VALID], [HELD_OUT]))
    return dataset.select(list(roles)).set_field("tags", tags)
