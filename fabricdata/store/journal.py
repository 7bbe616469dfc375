"""Write-back's journal, kept on the samples themselves (one field, ``writeback_pending``).

Write-back replaces a file in three steps: record on the sample what it is about to write (the new file's
hash and the labels it holds), replace the file (atomic rename), record the new hashes and clear the entry.
A process killed between the steps leaves an entry behind; :func:`roll_forward`, run first by the next
write-back and import, reads the file: when it holds what the entry says the write landed and its hashes are
recorded (no "changed on disk" conflict, no ``--force``); otherwise the write never happened and the entry is
dropped, so the edit is simply still pending.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fabricdata.core.errors import AnnotationError
from fabricdata.core.fileio import sha256_file
from fabricdata.store.dataset import (
    ATTR_PROPOSAL,
    F_ANNOTATION_FORMAT,
    F_ANNOTATION_HASH,
    F_ANNOTATION_PATH,
    F_CLASS_FILE,
    F_LABELS_HASH,
    F_VERIFIED,
    F_WRITEBACK_PENDING,
    GT_FIELD,
    fiftyone,
)


@dataclass(frozen=True, slots=True)
class Pending:
    """What write-back is about to write for one sample."""

    #: the hash the annotation will have (file sha256; CreateML: the entry's hash)
    annotation_hash: str
    #: the labels digest of what is written
    labels_hash: str
    #: a verified draft's new file (None: the sample's own annotation file)
    path: str | None = None
    format: str | None = None
    class_file: str | None = None


def begin(sample: Any, pending: Pending) -> None:
    """Record ``pending`` on the sample, durably, before the file is replaced."""
    sample[F_WRITEBACK_PENDING] = json.dumps(asdict(pending))
    sample.save()


def commit(sample: Any, pending: Pending) -> None:
    """The file holds ``pending``: record its hashes (and a draft's new file) and clear the entry."""
    sample[F_ANNOTATION_HASH] = pending.annotation_hash
    sample[F_LABELS_HASH] = pending.labels_hash
    if pending.path is not None:
        sample[F_ANNOTATION_PATH] = pending.path
        sample[F_ANNOTATION_FORMAT] = pending.format
        sample[F_VERIFIED] = True
        if pending.class_file is not None:
            sample[F_CLASS_FILE] = pending.class_file
        for det in sample[GT_FIELD].detections if sample[GT_FIELD] is not None else ():
            det[ATTR_PROPOSAL] = False
    sample[F_WRITEBACK_PENDING] = None
    sample.save()


def abort(sample: Any) -> None:
    """Nothing was written: clear the entry."""
    sample[F_WRITEBACK_PENDING] = None
    sample.save()


def roll_forward(dataset: Any) -> int:
    """Settle the entries a killed write-back left; returns how many writes had landed (now recorded)."""
    fo = fiftyone()
    if not dataset.has_sample_field(F_WRITEBACK_PENDING):  # a dataset made before the journal existed
        dataset.add_sample_field(F_WRITEBACK_PENDING, fo.StringField)
        return 0
    landed = 0
    createml: dict[Path, dict[str, str] | None] = {}  # one read per CreateML file, however many entries wait
    for sample in dataset.match(fo.ViewField(F_WRITEBACK_PENDING) != None):  # noqa: E711 (a MongoDB query)
        pending = Pending(**json.loads(sample[F_WRITEBACK_PENDING]))
        if _hash_on_disk(sample, pending, createml) == pending.annotation_hash:
            commit(sample, pending)
            landed += 1
        else:
            abort(sample)
    return landed


def _hash_on_disk(sample: Any, pending: Pending, createml: dict[Path, dict[str, str] | None]) -> str | None:
    """The hash the sample's annotation has on disk now (None: unreadable); CreateML files are read once into
    ``createml`` (image name -> entry hash)."""
    path = Path(pending.path or sample[F_ANNOTATION_PATH])
    if (pending.format or sample[F_ANNOTATION_FORMAT]) != "createml":
        try:
            return sha256_file(path)
        except OSError:
            return None
    if path not in createml:
        createml[path] = _entry_hashes(path)
    hashes = createml[path]
    return None if hashes is None else hashes.get(Path(sample.filepath).name)


def _entry_hashes(path: Path) -> dict[str, str] | None:
    """Image name -> entry hash of a CreateML file, for images with one entry (None: unreadable)."""
    from fabricdata.formats.createml import createml_entry_hash, load_createml

    try:
        entries = load_createml(path)
    except AnnotationError:
        return None
    names = Counter(entry["image"] for entry in entries)
    return {entry["image"]: createml_entry_hash(entry) for entry in entries if names[entry["image"]] == 1}
