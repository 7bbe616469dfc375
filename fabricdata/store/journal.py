"""Write-back's journal: what it is about to write, kept where a crash of either side cannot lose it.

Write-back replaces a file in three steps: record what it is about to write (the new file's hash, what the file
will say for each sample), replace the file (atomic rename), record the new hashes and labels on the samples and
clear the entry. The record is kept twice: on the sample itself (field ``writeback_pending``, seen from every
machine sharing the database) and in a small journal file beside the dataset's other files
(``~/fiftyone/fabricdata/NAME/journal/writeback.jsonl``, appended and fsynced before the rename), which survives a
database that crashes and loses its last writes.

:func:`roll_forward`, run first by the next write-back and import, settles both: the file system is the truth. A
file whose hash is what write-back itself wrote landed, and its hashes and labels are recorded (no "changed on
disk" conflict, no ``--force``); an entry whose file says something else never landed (or the file was changed
since, and the usual conflict rules apply), and is dropped, so the edit is simply still pending.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from fabricdata.core.annotation import LabeledBox
from fabricdata.core.boxes import ImageSize, box_to_fiftyone
from fabricdata.core.errors import AnnotationError, ConfigError
from fabricdata.core.fileio import atomic_write_bytes, read_limited
from fabricdata.formats import registry
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
    managed_dir,
    sample_labels_hash,
)

#: a box as the journal keeps it: label, FiftyOne's relative [x, y, w, h], difficult, truncated
Row = list[Any]


@dataclass(frozen=True, slots=True)
class Pending:
    """What write-back is about to write for one sample."""

    #: the hash the annotation will have (file sha256; a file of many images: the entry's hash)
    annotation_hash: str
    #: unused since the labels are recorded from what the file says (kept: entries of earlier versions carry it)
    labels_hash: str = ""
    #: a verified draft's new file (None: the sample's own annotation file)
    path: str | None = None
    format: str | None = None
    #: YOLO: the class-name file the sample's indices mean from now on (a draft's, or one write-back made)
    class_file: str | None = None
    #: what the file says for the sample after the write, in the order of its boxes (see :data:`Row`)
    objects: list[Row] | None = None

    @classmethod
    def of(cls, data: dict[str, Any]) -> Pending:
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


def rows(objects: Sequence[LabeledBox], size: ImageSize) -> list[Row]:
    """Boxes as the journal keeps them (relative boxes exactly as the dataset will store them)."""
    return [[obj.label, box_to_fiftyone(obj.box, size), obj.difficult, obj.truncated] for obj in objects]


class FileJournal:
    """The journal file of one dataset (see the module docstring): one JSON line per sample and write."""

    def __init__(self, dataset_name: str) -> None:
        self.path = managed_dir(dataset_name, "journal") / "writeback.jsonl"

    def append(self, staged: Sequence[tuple[Any, Pending]]) -> None:
        """Record the writes about to happen, durably (fsynced) before the file is replaced."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lines = "".join(json.dumps({"sample": sample.id, "pending": asdict(entry)}) + "\n" for sample, entry in staged)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(lines)
            handle.flush()
            os.fsync(handle.fileno())

    def entries(self) -> list[tuple[str, Pending]]:
        """(sample id, entry) of every whole line, the latest per sample and file (a torn last line, written by
        a process killed before its rename, is skipped)."""
        if not self.path.is_file():
            return []
        latest: dict[tuple[str, str | None], tuple[str, Pending]] = {}
        for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
                entry = (str(record["sample"]), Pending.of(record["pending"]))
            except (ValueError, KeyError, TypeError):
                continue
            latest[(entry[0], entry[1].path)] = entry
        return list(latest.values())

    def keep(self, entries: Sequence[tuple[str, Pending]]) -> None:
        """Replace the journal with ``entries`` (none: remove it)."""
        if not entries:
            self.path.unlink(missing_ok=True)
            return
        text = "".join(json.dumps({"sample": sid, "pending": asdict(entry)}) + "\n" for sid, entry in entries)
        atomic_write_bytes(self.path, text.encode("utf-8"))


def begin(journal: FileJournal, staged: Sequence[tuple[Any, Pending]]) -> None:
    """Record ``staged`` (samples and what is written for them) in the journal file and on the samples, before
    the file is replaced."""
    journal.append(staged)
    for sample, pending in staged:
        sample[F_WRITEBACK_PENDING] = json.dumps(asdict(pending))
        sample.save()


def commit(sample: Any, pending: Pending) -> None:
    """The file holds ``pending``: record its hash, what it says for the sample (boxes and labels), a draft's new
    file, and clear the entry."""
    sample[F_ANNOTATION_HASH] = pending.annotation_hash
    if pending.path is not None:
        sample[F_ANNOTATION_PATH] = pending.path
        sample[F_ANNOTATION_FORMAT] = pending.format
        sample[F_VERIFIED] = True
        for det in sample[GT_FIELD].detections if sample[GT_FIELD] is not None else ():
            det[ATTR_PROPOSAL] = False
    if pending.class_file is not None:
        sample[F_CLASS_FILE] = pending.class_file
    if pending.objects is not None:
        _snap(sample, pending.objects)
    sample[F_LABELS_HASH] = sample_labels_hash(sample)
    sample[F_WRITEBACK_PENDING] = None
    sample.save()


def _snap(sample: Any, written: Sequence[Row]) -> None:
    """The sample's boxes and labels as the file says them (a box an edit moved by a fraction of a pixel in a file
    of integers is where the file has it); other attributes stay."""
    fo = fiftyone()
    detections = sample[GT_FIELD].detections if sample[GT_FIELD] is not None else []
    if len(detections) != len(written):
        made = [
            fo.Detection(label=name, bounding_box=box, difficult=d, truncated=int(t)) for name, box, d, t in written
        ]
        sample[GT_FIELD] = fo.Detections(detections=made)
        return
    for det, (label, box, _, _) in zip(detections, written, strict=True):
        det.label = label
        det.bounding_box = list(box)


def abort(sample: Any) -> None:
    """Nothing was written: clear the entry."""
    sample[F_WRITEBACK_PENDING] = None
    sample.save()


def roll_forward(dataset: Any) -> int:
    """Settle the entries a killed write-back (or a database that lost its last writes) left; returns how many
    writes had landed (now recorded)."""
    fo = fiftyone()
    if not dataset.has_sample_field(F_WRITEBACK_PENDING):  # a dataset made before the journal existed
        dataset.add_sample_field(F_WRITEBACK_PENDING, fo.StringField)
        return 0
    disk = _DiskHashes()
    landed = 0
    for sample in dataset.match(fo.ViewField(F_WRITEBACK_PENDING) != None):  # noqa: E711 (a MongoDB query)
        pending = Pending.of(json.loads(sample[F_WRITEBACK_PENDING]))
        if disk.hash(sample, pending) == pending.annotation_hash:
            commit(sample, pending)
            landed += 1
        else:
            abort(sample)
    return landed + _settle_file(dataset, disk)


def _settle_file(dataset: Any, disk: _DiskHashes) -> int:
    """The journal file's entries whose database writes were lost: a file that holds what write-back wrote is
    recorded now. Entries this settles stay one more run (the database may lose these writes too)."""
    journal = FileJournal(dataset.name)
    entries = journal.entries()
    if not entries:
        return 0
    samples = {sample.id: sample for sample in dataset.select([sid for sid, _ in entries]).iter_samples()}
    kept: list[tuple[str, Pending]] = []
    for sid, pending in entries:
        sample = samples.get(sid)
        if sample is None or _recorded(sample, pending):
            continue
        if disk.hash(sample, pending) == pending.annotation_hash:
            commit(sample, pending)
            kept.append((sid, pending))
    journal.keep(kept)
    return len(kept)


def _recorded(sample: Any, pending: Pending) -> bool:
    """True when the dataset already holds ``pending`` as the sample's annotation."""
    return bool(
        sample[F_ANNOTATION_HASH] == pending.annotation_hash
        and (pending.path is None or sample[F_ANNOTATION_PATH] == pending.path)
    )


class _DiskHashes:
    """The hash a sample's annotation has on disk now (None: unreadable, gone, not a regular file), each file read
    once however many samples it holds."""

    def __init__(self) -> None:
        self._files: dict[Path, dict[str, str] | str | None] = {}

    def hash(self, sample: Any, pending: Pending) -> str | None:
        path = Path(pending.path or sample[F_ANNOTATION_PATH])
        try:
            fmt = registry.get(pending.format or sample[F_ANNOTATION_FORMAT])
        except ConfigError:
            return None
        if path not in self._files:
            self._files[path] = self._read(fmt, path)
        found = self._files[path]
        return found.get(Path(sample.filepath).name) if isinstance(found, dict) else found

    @staticmethod
    def _read(fmt: registry.LabelFormat, path: Path) -> dict[str, str] | str | None:
        try:
            return registry.hashes(fmt, read_limited(path, fmt.max_bytes), path)
        except (AnnotationError, OSError):
            return None
