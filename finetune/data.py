"""Training data from a Florence-2 export: records, images, collation in DataLoader workers, and the seeded
per-epoch order each process reads them in (so a resumed run continues exactly where it stopped).

Images are decoded by the one decode of fabricdata (:func:`fabricdata.core.images.load_rgb`: stored pixels, 16-bit
and float frames scaled to 8 bits as for ``predict``, ``augment`` and the App's proxies). Collation runs the processor
on the CPU inside the workers and never touches CUDA; the loop moves batches to the device.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fabricdata.core.contracts import ExportFolder
from fabricdata.core.errors import ConfigError, FabricDataError, InvalidValueError
from fabricdata.core.florence import suffix_problem
from fabricdata.core.images import load_rgb
from fabricdata.core.jsonl import LineError, read_jsonl

if TYPE_CHECKING:
    from finetune.config import TrainConfig


@dataclass(frozen=True, slots=True)
class Record:
    image: Path
    prefix: str
    suffix: str


def read_records(folder: str | Path, tasks: Sequence[str] | None = None) -> list[Record]:
    """Every record of ``folder/annotations.jsonl`` (an empty list when the split is empty).

    A malformed line is an error naming the file, the line and the value: lines are never skipped silently. Every
    suffix must parse under the Florence-2 grammar the export writes (:func:`fabricdata.core.florence.suffix_problem`:
    labels, and boxes of four location tokens ``<loc_0>`` .. ``<loc_999>``), so a record the tokenizer would split
    into text pieces (maestro's ``<loc_1000>``) stops training before it starts.

    Raises:
        InvalidValueError: no annotations file, a malformed line, an image not found, a suffix off the grammar.
    """
    root = Path(folder)
    path = root / ExportFolder.ANNOTATIONS
    if not path.is_file():
        raise InvalidValueError(path, "file", "missing: is this a 'fabricdata export florence' folder?")

    def build(data: dict[str, Any]) -> Record:
        record = Record(root / data["image"], str(data["prefix"]), str(data["suffix"]))
        if not record.image.is_file():
            raise LineError("", "image not found", data["image"])
        problem = suffix_problem(record.suffix)
        if problem is not None:
            raise LineError("suffix", problem[0], problem[1])
        return record

    records = read_jsonl(path, "an export record", build)
    return [r for r in records if tasks is None or any(r.prefix.startswith(t) for t in tasks)]


def load_image(path: str | Path, max_pixels: int | None = None) -> Any:
    """The RGB PIL image a model sees of ``path``: :func:`fabricdata.core.images.load_rgb`."""
    return load_rgb(path, max_pixels)


class UnreadableImageError(FabricDataError):
    """A file given as an image that does not decode (not an image, truncated, a decompression bomb)."""

    def __init__(self, path: str | Path, cause: Exception) -> None:
        self.path, self.kind, self.detail = str(path), cause.__class__.__name__, str(cause)
        super().__init__(f"{path}: cannot be read as an image ({self.kind}: {cause})")


def read_image(path: str | Path, max_pixels: int | None = None) -> Any:
    """RGB pixels of ``path`` (:func:`load_image`), or UnreadableImageError: the one policy of everything that
    reads photos for a model (predict, prelabel, serve); the rest of a batch goes on.

    Raises:
        UnreadableImageError: not an image, truncated, or more than ``max_pixels`` pixels.
    """
    from PIL import Image

    try:
        return load_image(path, max_pixels)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise UnreadableImageError(path, exc) from None


class ExportReplacedError(FabricDataError):
    """The export a run trains on was replaced (``export florence`` swaps a new export in whole) while it ran."""


@dataclass(frozen=True, slots=True)
class ExportPin:
    """The export folder a run started on, by identity (device and inode): ``export florence`` swaps a new
    export in whole (:func:`fabricdata.core.fileio.swap_in`), which gives the name another folder."""

    root: Path
    identity: tuple[int, int]

    @classmethod
    def of(cls, root: Path) -> ExportPin:
        info = root.stat()
        return cls(root, (info.st_dev, info.st_ino))

    def check(self) -> None:
        """Raise ExportReplacedError unless ``root`` is still the folder the run started on."""
        try:
            info = self.root.stat()
        except FileNotFoundError:
            info = None
        if info is None or (info.st_dev, info.st_ino) != self.identity:
            raise ExportReplacedError(self.message)

    @property
    def message(self) -> str:
        return (
            f"{self.root}: the export was replaced while training read it (a new 'export florence'?); stopped "
            "before any of the new export was trained on. Train a new run on the new export"
        )


@dataclass(frozen=True, slots=True)
class TrainingData:
    """The records a run trains and validates on, and the export folder they were read from."""

    pin: ExportPin | None
    train: list[Record]
    val: list[Record]


def training_data(config: TrainConfig, started: Path | None = None) -> TrainingData:
    """The train and val records of ``config.data``, pinned to the export folder they were read from. On resume,
    ``started`` is the run's copy of the export manifest: the export must still hold the records the run started
    with.

    Raises:
        InvalidValueError: a bad record (see :func:`read_records`).
        ConfigError: no training records; the export changed since the run started.
        ExportReplacedError: the export was replaced while its records were read.
    """
    export = ExportFolder(Path(config.data))
    pin = ExportPin.of(export.root) if export.root.is_dir() else None
    train = read_records(export.split("train"), config.tasks)
    val = read_records(export.split("val"), config.tasks)
    if pin is not None:
        pin.check()  # the records are the pinned folder's
    if started is not None:
        same_export(started, export.manifest)
    if not train:
        raise ConfigError(f"{export.annotations('train')} has no records to train on")
    return TrainingData(pin, train, val)


def same_export(started: Path, manifest: Path) -> None:
    """Refuse to resume on an export whose records differ from those the run started with (``started``: the
    run's copy of the export manifest; ``manifest``: the export's own; the ``content_hash`` of each).

    Raises:
        ConfigError: the two content hashes differ.
    """

    def content_hash(path: Path) -> str | None:
        try:
            value = json.loads(path.read_text(encoding="utf-8")).get("content_hash")
        except (OSError, ValueError, AttributeError):
            return None
        return value if isinstance(value, str) else None

    before, now = content_hash(started), content_hash(manifest)
    if before and now and before != now:
        raise ConfigError(
            f"{manifest}: the export changed since this run started (content hash {before[:16]}, now {now[:16]}): "
            "not resumed; train a new run on it"
        )


class RecordDataset:
    """A map-style dataset of (image, prefix, suffix). With a ``pin``, every image is read from the pinned export
    folder or not at all: the folder's identity is checked before and after each read, so an image of an export
    swapped in meanwhile raises ExportReplacedError instead of joining the batch."""

    def __init__(self, records: Sequence[Record], pin: ExportPin | None = None) -> None:
        self.records = list(records)
        self.pin = pin

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[Any, str, str]:
        record = self.records[index]
        if self.pin is None:
            return load_image(record.image), record.prefix, record.suffix
        self.pin.check()
        try:
            image = load_image(record.image)
        except FileNotFoundError:
            self.pin.check()  # the old export deleted under us: say so
            raise
        self.pin.check()
        return image, record.prefix, record.suffix


class Collator:
    """Processor calls on CPU tensors; labels padded with -100 so padding is never learned."""

    def __init__(self, processor: Any) -> None:
        self.processor = processor

    def __call__(self, batch: Sequence[tuple[Any, str, str]]) -> dict[str, Any]:
        images = [item[0] for item in batch]
        inputs = self.processor(text=[item[1] for item in batch], images=images, return_tensors="pt", padding=True)
        tokenizer = self.processor.tokenizer
        labels = tokenizer(
            [item[2] for item in batch], return_tensors="pt", padding=True, add_special_tokens=True
        ).input_ids
        labels[labels == tokenizer.pad_token_id] = -100
        return {
            "input_ids": inputs["input_ids"],
            "attention_mask": inputs["attention_mask"],
            "pixel_values": inputs["pixel_values"],
            "labels": labels,
        }


# --- order and loaders ------------------------------------------------------------------------------------


def epoch_order(size: int, seed: int, epoch: int, rank: int, world: int) -> list[int]:
    """This process's share of a seeded permutation of the training records (same length on every rank)."""
    import torch

    order = torch.randperm(size, generator=torch.Generator().manual_seed(seed * 1000 + epoch)).tolist()
    return [order[(rank + world * i) % len(order)] for i in range(per_rank(size, world))]


def per_rank(size: int, world: int) -> int:
    """Records each process sees per epoch: an equal share (the tail that does not divide is dropped)."""
    return size // world if size >= world else 1


class EpochSampler:
    """This process's records of an epoch in their seeded order, from ``skip`` on (for resuming mid-epoch)."""

    def __init__(self, size: int, seed: int, rank: int, world: int) -> None:
        self.size, self.seed, self.rank, self.world = size, seed, rank, world
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def __iter__(self) -> Any:
        return iter(epoch_order(self.size, self.seed, self.epoch, self.rank, self.world)[self.skip :])

    def __len__(self) -> int:
        return per_rank(self.size, self.world) - self.skip


def check_handover(dataset: RecordDataset, collate: Collator, config: TrainConfig) -> None:
    """Refuse DataLoader workers that could not hand their batches over: a worker sends each batch's tensors to
    the training process in shared-memory files (one per tensor, in ``/dev/shm``), and under a file size limit
    (RLIMIT_FSIZE, ``ulimit -f``) below a batch's largest tensor the worker's send fails in a background thread
    and training would wait forever. Checked on one collated batch, only where such a limit is set.

    Raises:
        ConfigError: naming the shared-memory files, the batch's size and the limit.
    """
    try:
        import resource
    except ImportError:  # no such limits on this system
        return
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    if config.num_workers == 0 or soft == resource.RLIM_INFINITY or not len(dataset):
        return
    batch = collate([dataset[i] for i in range(min(config.batch_size, len(dataset)))])
    largest = max(tensor.numel() * tensor.element_size() for tensor in batch.values())
    if largest > soft:
        raise ConfigError(
            f"/dev/shm: DataLoader workers hand each batch over in shared-memory files of up to {largest} bytes, "
            f"more than this process's file size limit (ulimit -f: {soft} bytes); set num_workers=0 or raise the "
            "limit"
        )


def _one_thread(_: int) -> None:
    import torch

    torch.set_num_threads(1)  # workers decode and collate; the main process keeps the cores for compute


def make_loader(dataset: RecordDataset, sampler: Any, config: TrainConfig, collate: Collator) -> Any:
    """One DataLoader for the whole run: workers persist across epochs instead of restarting each epoch."""
    import torch
    from torch.utils.data import DataLoader

    return DataLoader(
        dataset,  # type: ignore[arg-type]
        batch_size=config.batch_size,
        sampler=sampler,
        collate_fn=collate,
        num_workers=config.num_workers,
        persistent_workers=config.num_workers > 0,
        worker_init_fn=_one_thread if config.num_workers > 0 else None,
        generator=torch.Generator().manual_seed(config.seed),
        pin_memory=torch.cuda.is_available(),
    )


def accumulated(loader: Any, grad_accum: int, batches_left: int) -> Iterator[tuple[Any, bool]]:
    """Each batch, and whether an optimizer step follows it: after every ``grad_accum`` batches, and after the
    epoch's last batch (a shorter last group)."""
    for index, batch in enumerate(loader, start=1):
        yield batch, index % grad_accum == 0 or index == batches_left
