"""Label versions: content-addressed snapshots of a dataset's labels, stored with the dataset, and restore.

A version is a :class:`~fabricdata.store.labeltable.LabelTable` frozen under its content id (the same labels always
give the same id) and a name. It costs one gzip'd, column-wise JSON file proportional to the labels, never a copy
of an image. Files, beside the dataset's other managed files (``store.managed_dir``)::

    <FiftyOne dataset dir>/fabricdata/<dataset>/versions/catalog.json   LabelVersion per entry (name -> id)
    <FiftyOne dataset dir>/fabricdata/<dataset>/versions/<id>.json.gz  the labels of one content id

Every export records its version (:func:`export_version`); a run's copy of the export manifest names it
(:func:`run_version`). :func:`restore` makes a new dataset of a version (the same sample and box ids, so its
export is byte-identical to the old one) and never touches a label file.
"""

from __future__ import annotations

import gzip
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from fabricdata.core.contracts import ExportManifest, LabelVersion, RunFolder
from fabricdata.core.errors import DatasetError
from fabricdata.core.fileio import atomic_write_bytes
from fabricdata.store.dataset import F_PROXY, enable_proxies, fiftyone, load_dataset, managed_dir, open_dataset
from fabricdata.store.labeltable import LabelTable, insert_labels, read_labels, without_gc
from fabricdata.store.locks import dataset_lock, holds_dataset

FORMAT = "fabricdata-labels/1"
#: a version's name: what ``diff``, ``restore`` and ``runs`` show (``now`` is the dataset's current labels)
NOW = "now"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


# --- the store -----------------------------------------------------------------------------------------------


class VersionStore:
    """The versions of one dataset: ``catalog.json`` and one ``<id>.json.gz`` per distinct content."""

    def __init__(self, dataset_name: str) -> None:
        self.dataset = dataset_name
        self.folder = managed_dir(dataset_name, "versions")

    @property
    def catalog(self) -> Path:
        return self.folder / "catalog.json"

    def labels_file(self, content: str) -> Path:
        return self.folder / f"{content}.json.gz"

    def versions(self) -> list[LabelVersion]:
        """Every version, oldest first (none: an empty list)."""
        if not self.catalog.is_file():
            return []
        try:
            entries = json.loads(self.catalog.read_text(encoding="utf-8"))["versions"]
            return [LabelVersion.model_validate(entry) for entry in entries]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DatasetError(f"{self.catalog}: unreadable version catalog ({exc.__class__.__name__})") from None

    def write_catalog(self, versions: list[LabelVersion]) -> None:
        text = json.dumps({"versions": [v.model_dump() for v in versions]}, indent=2, ensure_ascii=False)
        atomic_write_bytes(self.catalog, (text + "\n").encode("utf-8"))

    def write_labels(self, content: str, table: LabelTable) -> int:
        """Store the labels of ``content`` (once: the same content is never written twice); its size in bytes."""
        path = self.labels_file(content)
        if not path.is_file():
            payload = {"format": FORMAT, "classes": table.classes, "samples": table.samples, "boxes": table.boxes}
            text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=str)
            atomic_write_bytes(path, gzip.compress(text.encode("utf-8"), compresslevel=3, mtime=0))
        return path.stat().st_size

    def read_labels(self, version: LabelVersion) -> LabelTable:
        """The labels of a version, checked against its id (a damaged or edited file is a DatasetError)."""
        path = self.labels_file(version.id)
        try:
            with without_gc():
                payload = json.loads(gzip.decompress(path.read_bytes()))
            if payload.get("format") != FORMAT:
                raise ValueError(f"format {payload.get('format')!r}, expected {FORMAT}")
            table = LabelTable(list(payload["classes"]), dict(payload["samples"]), dict(payload["boxes"]))
            content = table.content_id()
        except (OSError, ValueError, KeyError, TypeError, EOFError) as exc:
            raise DatasetError(f"{path}: unreadable labels of version {version.name} ({exc})") from None
        if content != version.id:
            raise DatasetError(f"{path}: the labels of version {version.name} changed on disk (id {content[:12]})")
        return table


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _next_name(versions: list[LabelVersion]) -> str:
    numbers = [int(v.name[1:]) for v in versions if re.fullmatch(r"v\d+", v.name)]
    return f"v{max(numbers, default=0) + 1}"


def check_name(name: str) -> str:
    if name == NOW or not _NAME.fullmatch(name):
        raise DatasetError(
            f"--name {name!r}: a version name is letters, digits, '.', '_' or '-' (64 at most), and not {NOW!r}"
        )
    return name


def store_version(
    dataset_name: str,
    table: LabelTable,
    name: str | None = None,
    message: str = "",
    taken_by: Literal["snapshot", "export"] = "snapshot",
) -> tuple[LabelVersion, bool]:
    """The version of ``table`` in the dataset's store, and whether it is new. Labels a version already holds
    give that version (the latest of that id) unless a new ``name`` is asked for; a name in use for other labels
    is a DatasetError."""
    content = table.content_id()
    store = VersionStore(dataset_name)
    with dataset_lock(f"{dataset_name}\0versions"):
        versions = store.versions()
        same = [v for v in versions if (v.name == name if name else v.id == content)]
        if same and same[-1].id != content:
            raise DatasetError(
                f"version {name} already names other labels (id {same[-1].id[:12]}); choose another --name"
            )
        if same:
            return same[-1], False
        version = LabelVersion(
            id=content,
            name=check_name(name) if name else _next_name(versions),
            message=message,
            created=_now(),
            dataset=dataset_name,
            taken_by=taken_by,
            samples=len(table),
            boxes=len(table.boxes["sample"]),
            classes=table.classes,
            stored_bytes=store.write_labels(content, table),
        )
        store.write_catalog([*versions, version])
    return version, True


@holds_dataset("snapshot")
def snapshot(dataset_name: str, name: str | None = None, message: str = "") -> tuple[LabelVersion, bool]:
    """``fabricdata snapshot``: freeze the labels of the dataset now (see :func:`store_version`)."""
    return store_version(dataset_name, read_labels(load_dataset(dataset_name)), name, message)


def export_version(dataset: Any) -> LabelVersion:
    """The version of the labels an export is about to read: the existing one when they did not change."""
    return store_version(dataset.name, read_labels(dataset), taken_by="export")[0]


def find_version(dataset_name: str, ref: str) -> LabelVersion:
    """A version by name, or by id or an unambiguous id prefix of at least 4 hex digits.

    Raises:
        DatasetError: no such version (the message lists the dataset's versions), or an ambiguous prefix.
    """
    versions = VersionStore(dataset_name).versions()
    named = [v for v in versions if v.name == ref]
    if named:
        return named[-1]
    if re.fullmatch(r"[0-9a-f]{4,64}", ref):
        ids = {v.id for v in versions if v.id.startswith(ref)}
        if len(ids) > 1:
            raise DatasetError(f"version id {ref} is ambiguous: {', '.join(sorted(i[:12] for i in ids))}")
        if ids:
            return next(v for v in versions if v.id in ids)
    known = ", ".join(v.name for v in versions) or "none; 'fabricdata snapshot' takes one"
    raise DatasetError(f"dataset {dataset_name!r} has no label version {ref!r} (versions: {known})")


def load_version(dataset_name: str, ref: str) -> tuple[LabelVersion, LabelTable]:
    version = find_version(dataset_name, ref)
    return version, VersionStore(dataset_name).read_labels(version)


def run_version(folder: Path) -> LabelVersion | None:
    """The label version a run trained on (its copy of the export manifest names it); None for a run trained
    before versions were recorded, or without a manifest.

    Raises:
        DatasetError: the manifest names a version its dataset's store does not hold (or is unreadable).
    """
    path = RunFolder(folder).export_manifest
    if not path.is_file():
        return None
    try:
        manifest = ExportManifest.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: unreadable export manifest ({exc.__class__.__name__})") from None
    if manifest.labels_version is None:
        return None
    return find_version(manifest.dataset, manifest.labels_version)


# --- restore -------------------------------------------------------------------------------------------------


def restore(dataset_name: str, ref: str, new_name: str) -> tuple[LabelVersion, Any]:
    """``fabricdata restore VERSION --as NEW``: a new dataset holding exactly the labels of a version, with the
    same sample and box ids (so its export is byte-identical to one made from that version), the same classes
    and label schema. Reads the version's file only: no label file is read or written.

    Raises:
        DatasetError: ``new_name`` exists, no such version, or images of the version are missing (nothing made).
    """
    with dataset_lock(new_name, "restore"):
        return _restore(dataset_name, ref, new_name)


def _restore(dataset_name: str, ref: str, new_name: str) -> tuple[LabelVersion, Any]:
    fo = fiftyone()
    if fo.dataset_exists(new_name):
        raise DatasetError(f"--as {new_name}: a dataset of that name exists; choose a new name")
    version, table = load_version(dataset_name, ref)
    missing = [path for path in table.samples["filepath"] if not Path(path).is_file()]
    if missing:
        raise DatasetError(
            f"{missing[0]}: missing, with {len(missing) - 1} more of the {len(table)} images of version "
            f"{version.name}; nothing restored"
        )
    dataset = open_dataset(new_name, table.classes)
    try:
        insert_labels(dataset, table)
        if any(p not in (None, f) for p, f in zip(table.samples[F_PROXY], table.samples["filepath"], strict=True)):
            enable_proxies(dataset)
    except BaseException:
        fo.delete_dataset(new_name)
        raise
    return version, dataset
