"""Box-aware augmented variants of dataset samples, with lineage, written to a managed media folder.

Recipes are albumentations pipelines in albumentations' own YAML format (``A.save``/``A.load``). They run with
``BboxParams(format="pascal_voc", min_visibility=<the recipe's>, clip=True)``: a box that leaves the frame is
dropped with its label, and the dropped boxes are counted. Each variant's seed is derived from the base seed,
the source image, the recipe's content hash and the copy index, so results do not depend on the number of
worker processes, and running the same command twice adds nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fabricdata.core import faults
from fabricdata.core.annotation import LabeledBox
from fabricdata.core.boxes import Box, ImageSize, albumentations_to_box, box_problem, box_to_albumentations
from fabricdata.core.contracts import shipped
from fabricdata.core.errors import ConfigError, DatasetError
from fabricdata.core.fileio import atomic_write_bytes, sha256_file, short_name
from fabricdata.core.images import is_browser_suffix, load_rgb
from fabricdata.prepare.workers import process_pool
from fabricdata.store.dataset import F_COPY, F_KEY, F_RECIPE, F_RECIPE_HASH, F_SEED
from fabricdata.store.locks import holds_dataset

RECIPE_DIR = shipped("pipelines") / "augment"
DEFAULT_MIN_VISIBILITY = 0.3
#: file name prefixes of variants by recipe (the original project called its copies ``flipped_...``)
PREFIXES = {"flip": "flipped", "flip-vertical": "vflipped"}


@dataclass(frozen=True, slots=True)
class Recipe:
    """An albumentations pipeline file and its identity."""

    name: str
    path: Path
    digest: str
    min_visibility: float


def resolve_recipe(spec: str | Path) -> Recipe:
    """A recipe from a path, or the name of a shipped one (``flip``, ``photometric``, ...)."""
    path = Path(spec)
    if not path.is_file():
        shipped = RECIPE_DIR / f"{spec}.yaml"
        if not shipped.is_file():
            names = ", ".join(sorted(p.stem for p in RECIPE_DIR.glob("*.yaml")))
            raise ConfigError(f"--recipe: {spec} is neither a file nor a shipped recipe ({names})")
        path = shipped
    pipeline = _load(path)
    params = pipeline.processors.get("bboxes")
    min_visibility = float(params.params.min_visibility) if params is not None else DEFAULT_MIN_VISIBILITY
    return Recipe(path.stem, path.resolve(), sha256_file(path), min_visibility)


def _load(path: Path) -> Any:
    import albumentations as A

    try:
        return A.load(str(path), data_format="yaml")
    except Exception as exc:  # albumentations raises many types for a bad file
        raise ConfigError(f"{path}: not an albumentations pipeline ({exc.__class__.__name__}: {exc})") from None


def build_pipeline(recipe: Recipe) -> Any:
    """The recipe's transforms with our box handling (object indices ride along as the label field)."""
    import albumentations as A

    loaded = _load(recipe.path)
    params = A.BboxParams(
        format="pascal_voc", label_fields=["object_index"], min_visibility=recipe.min_visibility, clip=True
    )
    return A.Compose(loaded.transforms, bbox_params=params)


def variant_seed(base_seed: int, source_key: str, recipe: Recipe, copy: int) -> int:
    text = f"{base_seed}|{source_key}|{recipe.digest}|{copy}"
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:4], "big") & 0x7FFFFFFF


def variant_name(recipe: Recipe, source_name: str, copy: int) -> str:
    """``flipped_NAME``, ``flipped2_NAME``, ...; hash-shortened where it would pass NAME_MAX (the sample's
    ``source_id`` records which image it came from)."""
    prefix = PREFIXES.get(recipe.name, recipe.name)
    return short_name(f"{prefix}_{source_name}" if copy == 0 else f"{prefix}{copy}_{source_name}")


# --- the work of one variant (runs in worker processes) --------------------------------------------------


@dataclass(frozen=True, slots=True)
class Job:
    source: str
    target: str
    boxes: tuple[tuple[float, float, float, float], ...]
    seed: int


@dataclass(frozen=True, slots=True)
class Result:
    target: str
    width: int
    height: int
    #: (index of the source object, its new box) for every box that survived
    kept: tuple[tuple[int, tuple[float, float, float, float]], ...]
    #: the written file's key and near-duplicate fingerprint (store/fingerprints.py), made in the worker
    fingerprint: tuple[str, Any] | None = None


_PIPELINE: Any = None


def _init_worker(recipe: Recipe) -> None:
    global _PIPELINE
    _PIPELINE = build_pipeline(recipe)


def read_rgb(path: str) -> Any:
    """The RGB pixels (H x W x 3 uint8) of the one decode every consumer shares
    (:func:`fabricdata.core.images.load_rgb`), so a variant is made from the picture the model sees of its source.

    Raises:
        DatasetError: the image cannot be decoded.
    """
    import numpy as np
    from PIL import Image

    try:
        return np.asarray(load_rgb(path))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DatasetError(f"{path}: image cannot be read ({exc.__class__.__name__}: {exc})") from None


def encode(image: Any, suffix: str) -> bytes:
    import cv2

    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if suffix.lower() in (".jpg", ".jpeg") else []
    ok, data = cv2.imencode(suffix, cv2.cvtColor(image, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise DatasetError(f"cannot encode an image as {suffix}")
    return bytes(data.tobytes())


def run_job(job: Job) -> Result:
    pipeline = _PIPELINE
    pipeline.set_random_seed(job.seed)
    image = read_rgb(job.source)
    out = pipeline(image=image, bboxes=list(job.boxes), object_index=list(range(len(job.boxes))))
    atomic_write_bytes(job.target, encode(out["image"], Path(job.target).suffix))
    height, width = out["image"].shape[:2]
    kept = tuple(
        (int(index), albumentations_to_box(box).as_tuple())
        for box, index in zip(out["bboxes"], out["object_index"], strict=True)
    )
    from fabricdata.store.fingerprints import compute

    return Result(job.target, int(width), int(height), kept, compute(job.target))


def run_jobs(recipe: Recipe, jobs: Sequence[Job], workers: int) -> Iterator[Result]:
    """Results in job order; in this process for one worker, else in a process pool."""
    if workers <= 1 or len(jobs) <= 1:
        _init_worker(recipe)
        yield from (run_job(job) for job in jobs)
        return
    with process_pool(workers, _init_worker, (recipe,)) as pool:
        yield from pool.map(run_job, jobs, chunksize=max(1, min(16, len(jobs) // (4 * workers))))


# --- dataset side --------------------------------------------------------------------------------------


@dataclass(slots=True)
class AugmentReport:
    recipe: str
    sources: int = 0
    created: int = 0
    existing: int = 0
    dropped_boxes: int = 0
    created_ids: list[str] = field(default_factory=list)


def media_dir(dataset_name: str) -> Path:
    """The managed folder of a dataset's generated images (under FiftyOne's default dataset dir)."""
    from fabricdata.store.dataset import managed_dir

    return managed_dir(dataset_name, "variants")


def source_samples(dataset: Any, split: str | None) -> Any:
    """Original (non-variant) samples with an annotator's labels, of one split unless ``split`` is None or
    ``all``."""
    from fabricdata.store.dataset import F_SOURCE_ID, fiftyone, labeled

    fo = fiftyone()
    view = labeled(dataset).match((fo.ViewField(F_SOURCE_ID) == None) | (fo.ViewField(F_SOURCE_ID) == ""))  # noqa: E711
    if split not in (None, "all"):
        view = view.match_tags(split)
        if not len(view):
            raise DatasetError(f"no original samples tagged {split!r}; run 'fabricdata split' first or use --split all")
    return view.sort_by("filepath")


def make_variants(
    dataset: Any,
    plan: Sequence[tuple[Any, int]],
    recipe: Recipe,
    seed: int,
    workers: int,
    folder: Path,
    progress: Callable[[int], None] | None = None,
) -> AugmentReport:
    """Create one variant per ``(source sample, copy index)`` of ``plan`` that does not exist yet."""
    from fabricdata.store.dataset import F_SOURCE_ID, GT_FIELD, detections_to_objects, sample_size

    report = AugmentReport(recipe=recipe.name, sources=len({s.id for s, _ in plan}))
    existing = set(dataset.exists(F_KEY).values(F_KEY))
    jobs: list[Job] = []
    meta: list[tuple[Any, int, str, list[LabeledBox]]] = []
    for sample, copy in plan:
        key = f"{recipe.digest[:16]}:{seed}:{copy}:{sample.id}"
        if key in existing:
            report.existing += 1
            if progress:
                progress(1)
            continue
        size = sample_size(sample)
        objects = [o for o in detections_to_objects(sample[GT_FIELD], size) if box_problem(o.box, size) is None]
        source = Path(sample.filepath)
        # variants of images browsers cannot show (TIFF) are written as lossless PNG, so the App shows them
        name = source.name if is_browser_suffix(source.suffix) else f"{source.stem}.png"
        target = folder / recipe.name / sample.id / variant_name(recipe, name, copy)
        target.parent.mkdir(parents=True, exist_ok=True)
        boxes = tuple(box_to_albumentations(o.box) for o in objects)
        jobs.append(Job(str(source), str(target), boxes, variant_seed(seed, source.name, recipe, copy)))
        meta.append((sample, copy, key, objects))
    batch: list[Any] = []
    for (sample, copy, key, objects), result in zip(meta, run_jobs(recipe, jobs, workers), strict=True):
        faults.point("augment.written")
        report.dropped_boxes += len(objects) - len(result.kept)
        batch.append(_variant_sample(sample, copy, key, objects, result, recipe, seed, F_SOURCE_ID))
        if len(batch) >= 200:
            report.created_ids += dataset.add_samples(batch, progress=False)
            batch = []
        if progress:
            progress(1)
    if batch:
        report.created_ids += dataset.add_samples(batch, progress=False)
    report.created = len(report.created_ids)
    return report


def _variant_sample(
    sample: Any,
    copy: int,
    key: str,
    objects: list[LabeledBox],
    result: Result,
    recipe: Recipe,
    seed: int,
    source_field: str,
) -> Any:
    from fabricdata.store.dataset import (
        F_FINGERPRINT,
        F_FINGERPRINT_KEY,
        F_PROXY,
        GT_FIELD,
        fiftyone,
        objects_to_detections,
    )

    fo = fiftyone()
    size = ImageSize(result.width, result.height)
    moved = [
        LabeledBox(
            label=objects[index].label,
            box=Box(*coords),
            difficult=objects[index].difficult,
            truncated=objects[index].truncated,
            caption=objects[index].caption,
        )
        for index, coords in result.kept
    ]
    return fo.Sample(
        filepath=result.target,
        tags=list(sample.tags),
        metadata=fo.ImageMetadata(width=size.width, height=size.height, num_channels=3),
        **{
            GT_FIELD: objects_to_detections(moved, size),
            source_field: sample.id,
            F_PROXY: result.target,
            F_RECIPE: recipe.name,
            F_RECIPE_HASH: recipe.digest,
            F_SEED: seed,
            F_COPY: copy,
            F_KEY: key,
            **_fingerprint_fields(result, F_FINGERPRINT_KEY, F_FINGERPRINT),
        },
    )


def _fingerprint_fields(result: Result, key_field: str, print_field: str) -> dict[str, Any]:
    if result.fingerprint is None:
        return {}  # unreadable: validate reports it, split fingerprints it again
    return {key_field: result.fingerprint[0], print_field: result.fingerprint[1]}


@holds_dataset("augment")
def augment(
    dataset_name: str,
    recipe_spec: str | Path,
    copies: int = 1,
    seed: int = 0,
    split: str | None = "train",
    workers: int = 1,
    progress: Callable[[int], None] | None = None,
    total: Callable[[int], None] | None = None,
) -> AugmentReport:
    """``copies`` variants of every original sample of ``split`` made with the recipe."""
    from fabricdata.store.dataset import load_dataset

    if copies < 1:
        raise ConfigError("--copies must be at least 1")
    recipe = resolve_recipe(recipe_spec)
    dataset = load_dataset(dataset_name)
    sources = list(source_samples(dataset, split))
    plan = [(sample, copy) for sample in sources for copy in range(copies)]
    if total:
        total(len(plan))
    return make_variants(dataset, plan, recipe, seed, workers, media_dir(dataset_name), progress)
