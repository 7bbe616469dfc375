"""One bulk reader for samples with their boxes, used by every command that reads boxes in bulk (stats, validate,
export, review): id, file, tags and image size of each sample, chosen sample fields, and per label field its
boxes in pixels with chosen label attributes. One aggregation per batch, and one policy for a sample without a
stored size (``store.stored_size``: one DatasetError naming its file)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

from fabricdata.core.boxes import Box, ImageSize, fiftyone_to_box
from fabricdata.store.dataset import GT_FIELD, stored_size

#: what every sample row starts with
_SAMPLE = ["id", "filepath", "tags", "metadata.width", "metadata.height"]
#: what every box starts with (then the attributes asked for)
_BOX = ("id", "label", "bounding_box")


class StoredBox(NamedTuple):
    id: str
    label: str
    box: Box  # pixels
    #: the label attributes asked for, in their order (None where a label has none)
    attributes: tuple[Any, ...]


class StoredSample(NamedTuple):
    id: str
    filepath: str
    tags: list[str]
    size: ImageSize
    #: the sample fields asked for, in their order
    values: tuple[Any, ...]
    #: per label field asked for, its boxes
    boxes: dict[str, list[StoredBox]]


def read_samples(
    view: Any,
    boxes: Mapping[str, Sequence[str]] | None = None,
    fields: Sequence[str] = (),
    batch: int | None = None,
) -> Iterator[StoredSample]:
    """Every sample of ``view`` in its order. ``boxes`` maps each Detections field to read to the label attributes
    wanted with each box (default: the ground truth, no attributes); ``fields`` are extra sample fields. With
    ``batch``, one aggregation per ``batch`` samples (memory: one batch), else one for the whole view."""
    boxes = {GT_FIELD: ()} if boxes is None else boxes
    paths = [*_SAMPLE, *fields]
    for name, attributes in boxes.items():
        paths += [f"{name}.detections.{attribute}" for attribute in (*_BOX, *attributes)]
    chunks = [view] if batch is None else (view.skip(start).limit(batch) for start in range(0, len(view), batch))
    for chunk in chunks:
        for row in zip(*chunk.values(paths), strict=True):
            sid, path, tags, width, height = row[: len(_SAMPLE)]
            size = stored_size(path, width, height)
            at = len(_SAMPLE) + len(fields)
            per_field = {}
            for name, attributes in boxes.items():
                ids, labels, rels, *columns = [column or [] for column in row[at : at + len(_BOX) + len(attributes)]]
                at += len(_BOX) + len(attributes)
                extras = zip(*columns, strict=True) if columns else [()] * len(ids)
                per_field[name] = [
                    StoredBox(lid, label, fiftyone_to_box(rel, size), extra)
                    for lid, label, rel, extra in zip(ids, labels, rels, extras, strict=True)
                ]
            values = tuple(row[len(_SAMPLE) : len(_SAMPLE) + len(fields)])
            yield StoredSample(sid, path, list(tags or []), size, values, per_field)
