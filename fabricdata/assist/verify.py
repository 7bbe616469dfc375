"""An annotator's verdict on drafts: accept a prelabeled image (tag ``verified``), or reject a drafted box.

``prelabel`` adds new photos with a model's boxes as proposals; write-back creates a label file only for the
drafts tagged ``verified`` (:mod:`fabricdata.store.writeback`). These two verbs are what the App's *Verify drafts*
operator does with the selection; they never touch an annotator's own boxes (only boxes with ``proposal=True`` are
rejected) nor a sample that is no draft (only samples tagged ``prelabeled`` are accepted).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from fabricdata.store.dataset import ATTR_PROPOSAL, GT_FIELD, TAG_VERIFIED, fiftyone, load_dataset, pending_drafts


@dataclass(slots=True)
class Verdict:
    """What a decision changed: the samples concerned (ids), the boxes removed, what was not a draft."""

    #: accepted drafts (accept), or the drafts whose proposals were removed (reject)
    samples: list[str] = field(default_factory=list)
    boxes_removed: int = 0
    #: selected samples that are no unverified draft (accept), or selected boxes that are no proposal (reject)
    skipped: int = 0


def accept_drafts(dataset_name: str, sample_ids: Collection[str]) -> Verdict:
    """Tag ``verified`` the unverified drafts among ``sample_ids``; the others are counted as skipped.

    Raises:
        DatasetError: the dataset does not exist.
    """
    dataset = load_dataset(dataset_name)
    drafts = pending_drafts(dataset.select(list(sample_ids)))
    accepted = [str(i) for i in drafts.values("id")]
    drafts.tag_samples(TAG_VERIFIED)
    return Verdict(samples=accepted, skipped=len(set(sample_ids)) - len(accepted))


def reject_proposals(dataset_name: str, label_ids: Collection[str]) -> Verdict:
    """Delete the drafted boxes (``proposal=True`` in ``ground_truth``) among ``label_ids``; other boxes (an
    annotator's own, another field's) are counted as skipped and left alone.

    Raises:
        DatasetError: the dataset does not exist.
    """
    fo = fiftyone()
    dataset = load_dataset(dataset_name)
    wanted = list(dict.fromkeys(label_ids))
    chosen = dataset.select_labels(ids=wanted, fields=GT_FIELD) if wanted else dataset.limit(0)
    proposals = chosen.filter_labels(GT_FIELD, fo.ViewField(ATTR_PROPOSAL) == True)  # noqa: E712 (MongoDB)
    ids = [str(i) for i in proposals.values(f"{GT_FIELD}.detections.id", unwind=True)]
    samples = [str(i) for i in proposals.values("id")]
    if ids:
        dataset.delete_labels(ids=ids, fields=GT_FIELD)
    return Verdict(samples=samples, boxes_removed=len(ids), skipped=len(wanted) - len(ids))
