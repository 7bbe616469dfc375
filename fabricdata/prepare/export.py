"""Florence-2 JSONL export (maestro-compatible layout) for <OD>, <DENSE_REGION_CAPTION> and
<CAPTION_TO_PHRASE_GROUNDING>.

``OUT/{train,valid,test}/annotations.jsonl`` with the images beside them (hard links where possible), and
``OUT/manifest.json``. Records are streamed to temporary files per split and task, then concatenated in the
requested order, so memory stays flat with dataset size. Exporting twice gives byte-identical files.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from fabricdata.core import faults
from fabricdata.core.annotation import LabeledBox
from fabricdata.core.boxes import Box, ImageSize, reading_order_key
from fabricdata.core.contracts import ExportFolder, ExportManifest
from fabricdata.core.errors import ConfigError
from fabricdata.core.fileio import link_or_copy, naming, new_stage, swap_in, unique_name
from fabricdata.core.florence import (
    MAX_TEXT_TOKENS,
    TASK_DENSE,
    TASK_GROUNDING,
    TASK_OD,
    encode_grounding,
    encode_objects,
    grounding_caption,
    task_token,
)
from fabricdata.prepare.split import current_split, refuse_variant_leaks
from fabricdata.prepare.tiling import TileOptions, Tiler, decode_frame, plan_tiles, tile_name, tile_png
from fabricdata.store.columns import read_samples
from fabricdata.store.dataset import GT_FIELD, labeled, load_view
from fabricdata.store.locks import holds_dataset
from fabricdata.store.versions import export_version

Order = Literal["sequential", "interleave", "shuffle"]
#: dataset split tag -> export folder (maestro's names)
#: per split folder: exported image name -> original file path and sample id (for review)
DEFAULT_MAX_LABEL_TOKENS = MAX_TEXT_TOKENS


@dataclass(frozen=True, slots=True)
class ExportOptions:
    tasks: tuple[str, ...] = (TASK_OD, TASK_DENSE, TASK_GROUNDING)
    order: Order = "sequential"
    phrases: dict[str, str] = field(default_factory=dict)
    negatives: bool = True
    seed: int = 0
    #: write a split with no images (maestro and similar trainers refuse that export)
    allow_empty_split: bool = False
    max_label_tokens: int = DEFAULT_MAX_LABEL_TOKENS
    #: cut every frame into tiles (fabricdata.prepare.tiling); None: whole frames
    tiles: TileOptions | None = None


def parse_tasks(text: str) -> tuple[str, ...]:
    tokens = tuple(dict.fromkeys(task_token(part.strip()) for part in text.split(",") if part.strip()))
    if not tokens:
        raise ConfigError("--tasks: give at least one of od, dense, grounding")
    return tokens


def load_phrases(path: str | Path | None) -> dict[str, str]:
    """A class -> phrase table from a YAML or JSON file (``broken: broken weft``)."""
    if path is None:
        return {}
    import yaml

    source = Path(path)
    try:
        data = yaml.safe_load(source.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{source}: cannot read the phrase table ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise ConfigError(f"{source}: the phrase table must map class names to phrases (class: phrase)")
    return {key: value.strip() for key, value in data.items()}


_LOC = re.compile(r"<loc_\d+>")


def label_tokens_upper_bound(text: str) -> int:
    """Tokens a suffix can take at most, with its start and end tokens: each ``<loc_N>`` is one token, and
    byte-level BPE never needs more tokens than the UTF-8 bytes of the rest."""
    return len(_LOC.findall(text)) + len(_LOC.sub("", text).encode("utf-8")) + 2


# --- records of one image ---------------------------------------------------------------------------------


def _phrase(obj: LabeledBox, phrases: dict[str, str]) -> str:
    return obj.caption or phrases.get(obj.label, obj.label)


def records_for(
    objects: Sequence[LabeledBox], size: ImageSize, image: str, options: ExportOptions
) -> dict[str, dict[str, str] | None]:
    """Task token -> record (or None when the task has nothing to say about this image)."""
    records: dict[str, dict[str, str] | None] = {}
    for task in options.tasks:
        if not objects and (task == TASK_GROUNDING or not options.negatives):
            records[task] = None
        elif task == TASK_OD:
            records[task] = {
                "image": image,
                "prefix": TASK_OD,
                "suffix": encode_objects([(o.label, o.box) for o in objects], size),
            }
        elif task == TASK_DENSE:
            pairs = [(_phrase(o, options.phrases), o.box) for o in objects]
            records[task] = {"image": image, "prefix": TASK_DENSE, "suffix": encode_objects(pairs, size)}
        else:
            groups: dict[str, list[Box]] = {}
            for obj in sorted(objects, key=lambda o: reading_order_key(o.box)):
                groups.setdefault(_phrase(obj, options.phrases), []).append(obj.box)
            caption, spans = grounding_caption([(phrase, len(boxes)) for phrase, boxes in groups.items()])
            suffix = encode_grounding(list(zip(spans, groups.values(), strict=True)), size)
            records[task] = {"image": image, "prefix": TASK_GROUNDING + caption, "suffix": suffix}
    return records


# --- streaming the export ----------------------------------------------------------------------------------


@dataclass(slots=True)
class _SplitWriter:
    """Temporary record files of one split folder, one per task."""

    folder: Path
    files: dict[str, Any]
    sources: Any = None
    names: set[str] = field(default_factory=set)
    images: int = 0
    records: Counter[str] = field(default_factory=Counter)
    instances: Counter[str] = field(default_factory=Counter)


def _line(record: dict[str, str]) -> bytes:
    return (json.dumps(record, ensure_ascii=False, separators=(", ", ": ")) + "\n").encode("utf-8")


def _samples(view: Any, batch: int = 500) -> Iterator[tuple[str, str, list[str], ImageSize, list[LabeledBox]]]:
    """Samples in file-path order, read in batches with one aggregation each (memory: one batch)."""
    for sample in read_samples(view.sort_by("filepath"), {GT_FIELD: ("caption",)}, batch=batch):
        objects = [LabeledBox(label=b.label, box=b.box, caption=b.attributes[0]) for b in sample.boxes[GT_FIELD]]
        yield sample.id, sample.filepath, sample.tags, sample.size, objects


def _refuse_empty_splits(view: Any) -> None:
    counts = view.count_sample_tags()
    folders = ExportFolder.SPLIT_FOLDERS
    empty = [folders[tag] + (f" ({tag})" if folders[tag] != tag else "") for tag in folders if not counts.get(tag)]
    if empty:
        from fabricdata.prepare.split import reshuffle_command

        raise ConfigError(
            f"split {', '.join(empty)} would be empty: Florence-2 trainers such as maestro refuse an export "
            f"without every split; '{reshuffle_command(view.dataset_name)}' gives every split images (it "
            "reassigns the splits a dataset was published with), or pass --allow-empty-split"
        )


@holds_dataset("export florence")
def export_florence(
    dataset_name: str,
    out: str | Path,
    view_name: str | None = None,
    options: ExportOptions | None = None,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> ExportManifest:
    """Write the Florence-2 JSONL export of a dataset (or of one of its saved views) to ``out``.

    ``on_total`` is called once with the number of samples of the view, before any is written. Holds the
    dataset's lease (:func:`fabricdata.store.locks.dataset_lock`), so the export is of one state of the splits.

    Raises:
        ConfigError: an option, or a split that would be empty (unless ``allow_empty_split``).
        DatasetError: a variant in another split than its source (both named), an unknown view.
        OSError: naming the export's file that could not be written (the previous export is kept whole).
    """
    options = options or ExportOptions()
    if options.order not in ("sequential", "interleave", "shuffle"):
        raise ConfigError(f"--order: expected sequential, interleave or shuffle, got {options.order!r}")
    dataset, view = load_view(dataset_name, view_name)
    view = labeled(view)
    if not options.allow_empty_split:
        _refuse_empty_splits(view)
    refuse_variant_leaks(dataset, view)
    if on_total is not None:
        on_total(len(view))
    target = Path(out).absolute()
    _check_target(target)
    stage = new_stage(target)
    try:
        manifest = _write_export(dataset_name, dataset, view, view_name, stage, options, progress)
        swap_in(stage, target)
    except BaseException as exc:
        shutil.rmtree(stage, ignore_errors=True)
        if isinstance(exc, OSError):  # a full disk, a file-size limit: the error names the export's files
            raise naming(exc, target, stage) from None
        raise
    return manifest


def _check_target(target: Path) -> None:
    """An export replaces its folder whole: refuse a folder that holds anything but an earlier export."""
    if target.is_dir() and any(target.iterdir()) and not ExportFolder(target).is_export():
        raise ConfigError(f"{target}: exists and is not a fabricdata export (no manifest.json); choose a new folder")
    if target.exists() and not target.is_dir():
        raise ConfigError(f"{target}: exists and is not a folder")


def _write_export(
    dataset_name: str,
    dataset: Any,
    view: Any,
    view_name: str | None,
    root: Path,
    options: ExportOptions,
    progress: Callable[[int], None] | None,
) -> ExportManifest:
    """Write the whole export into the fresh stage folder ``root`` (swapped in whole afterwards, so no file of
    it needs an atomic write of its own)."""
    labels = export_version(dataset)  # the label version read below (a new one when the labels changed)
    scratch = Path(tempfile.mkdtemp(prefix=".scratch-", dir=root))
    writers: dict[str, _SplitWriter] = {}
    for tag, folder in ExportFolder.SPLIT_FOLDERS.items():
        (root / folder).mkdir(exist_ok=True)
        files = {task: (scratch / f"{folder}-{i}.jsonl").open("w+b") for i, task in enumerate(options.tasks)}
        writers[tag] = _SplitWriter(root / folder, files, (scratch / f"{folder}-sources.jsonl").open("w+b"))
    unassigned = 0
    over_budget: list[str] = []
    tiler = plan_tiles(options.tiles, options.negatives, options.seed, _samples(view)) if options.tiles else None
    try:
        for index, (sample_id, path, tags, size, objects) in enumerate(_samples(view)):
            if progress:
                progress(1)
            split = current_split(tags)
            if split is None:
                unassigned += 1
            elif tiler is not None:
                _write_tiles(writers[split], tiler, index, (sample_id, path, size, objects), options, over_budget)
            else:
                _write_sample(writers[split], index, (sample_id, path, size, objects), options, over_budget)
            faults.point("export.written")
        digest = hashlib.sha256()
        for writer in writers.values():
            digest.update(_assemble(writer, options))
    finally:
        for writer in writers.values():
            for handle in writer.files.values():
                handle.close()
            writer.sources.close()
        if tiler is not None:
            tiler.close()
        shutil.rmtree(scratch, ignore_errors=True)
    manifest = ExportManifest(
        dataset=dataset_name,
        view=view_name,
        classes=list(dataset.default_classes or []),
        tasks=list(options.tasks),
        order=options.order,
        seed=options.seed,
        negatives=options.negatives,
        phrases={name: options.phrases.get(name, name) for name in dataset.default_classes or []},
        max_label_tokens=options.max_label_tokens,
        images={ExportFolder.folder_name(s): w.images for s, w in writers.items()},
        records={ExportFolder.folder_name(s): {t: w.records[t] for t in options.tasks} for s, w in writers.items()},
        instances={ExportFolder.folder_name(s): dict(sorted(w.instances.items())) for s, w in writers.items()},
        unassigned=unassigned,
        over_budget=over_budget,
        content_hash=digest.hexdigest(),
        tiling=tiler.manifest() if tiler is not None else None,
        labels_version=labels.id,
        labels_version_name=labels.name,
    )
    ExportFolder(root).manifest.write_text(manifest.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return manifest


def _write_sample(
    writer: _SplitWriter,
    index: int,
    sample: tuple[str, str, ImageSize, list[LabeledBox]],
    options: ExportOptions,
    over_budget: list[str],
) -> None:
    """One sample's records (one per task, each within the label budget) and its image, into its split."""
    sample_id, path, size, objects = sample
    name = unique_name(Path(path).name, writer.names)
    if not _write_records(writer, index, (path, name, size, objects), options, over_budget):
        return
    writer.names.add(name)
    link_or_copy(path, writer.folder / name)
    writer.sources.write(_line({"image": name, "filepath": path, "sample_id": sample_id}))
    writer.images += 1
    writer.instances.update(obj.label for obj in objects)


def _write_records(
    writer: _SplitWriter,
    index: int,
    image: tuple[str, str, ImageSize, Sequence[LabeledBox]],
    options: ExportOptions,
    over_budget: list[str],
) -> bool:
    """The records of one exported image (``path`` names it in the over-budget list); whether any was written."""
    path, name, size, objects = image
    wrote = False
    for task, record in records_for(objects, size, name, options).items():
        if record is None:
            continue
        if label_tokens_upper_bound(record["suffix"]) > options.max_label_tokens:
            over_budget.append(f"{path} ({task})")
            continue
        writer.files[task].write(b"%d\t" % index + _line(record))
        writer.records[task] += 1
        wrote = True
    return wrote


# --- tiled export (fabricdata.prepare.tiling) -----------------------------------------------------------------


def _write_tiles(
    writer: _SplitWriter,
    tiler: Tiler,
    index: int,
    sample: tuple[str, str, ImageSize, list[LabeledBox]],
    options: ExportOptions,
    over_budget: list[str],
) -> None:
    """One frame's tiles (PNG crops of its one decode) with their records and sources lines, and the frame."""
    sample_id, path, size, objects = sample
    frame = None
    for cut in tiler.tiles(writer.folder.name, size, objects):
        name = tile_name(path, cut.tile, writer.names)
        image = (f"{path} tile {cut.where()}", name, cut.size, cut.objects)
        if not _write_records(writer, index, image, options, over_budget):
            continue
        frame = frame if frame is not None else decode_frame(path)
        writer.names.add(name)
        (writer.folder / name).write_bytes(tile_png(frame, cut.tile))
        writer.sources.write(_line(cut.source(name, sample_id, path, size)))
        writer.images += 1
        writer.instances.update(obj.label for obj in cut.objects)
    tiler.add_frame(writer.folder, sample_id, path, size)


def _assemble(writer: _SplitWriter, options: ExportOptions) -> bytes:
    """Write ``annotations.jsonl`` of a split from its per-task files in the requested order, and its
    ``sources.jsonl``; returns the digest of the annotations."""
    digest = hashlib.sha256()
    with (writer.folder / ExportFolder.ANNOTATIONS).open("wb") as out:
        for chunk in _ordered_lines(writer, options):
            out.write(chunk)
            digest.update(chunk)
        out.flush()
        os.fsync(out.fileno())
    writer.sources.flush()
    writer.sources.seek(0)
    with (writer.folder / ExportFolder.SOURCES).open("wb") as sources:
        shutil.copyfileobj(writer.sources, sources)
    return digest.digest()


def _ordered_lines(writer: _SplitWriter, options: ExportOptions) -> Iterator[bytes]:
    files = [writer.files[task] for task in options.tasks]
    for handle in files:
        handle.flush()
        handle.seek(0)
    if options.order == "sequential":
        for handle in files:
            yield from (_strip(line) for line in handle)
    elif options.order == "interleave":  # per image, its records in task order (files are in image order)
        readers = [iter(handle) for handle in files]
        heads = [next(r, None) for r in readers]
        while any(h is not None for h in heads):
            image = min(_index(h) for h in heads if h is not None)
            for i, head in enumerate(heads):
                if head is not None and _index(head) == image:
                    yield _strip(head)
                    heads[i] = next(readers[i], None)
    else:  # shuffle: a seeded permutation of line offsets; only the offsets are held in memory
        offsets: list[tuple[int, int]] = []
        for index, handle in enumerate(files):
            handle.seek(0)
            position = 0
            for line in handle:
                offsets.append((index, position))
                position += len(line)
        order = np.random.default_rng(options.seed).permutation(len(offsets))
        for k in order:
            index, position = offsets[int(k)]
            files[index].seek(position)
            yield _strip(files[index].readline())


def _index(line: bytes) -> int:
    """The image index a scratch line starts with."""
    return int(line[: line.index(b"\t")])


def _strip(line: bytes) -> bytes:
    return line[line.index(b"\t") + 1 :]
