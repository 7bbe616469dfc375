"""fabricdata from Python: the loop's verbs for a notebook or a script, on a dataset or any view of it.

Every verb takes the dataset first: its name, an ``fo.Dataset`` or an ``fo.DatasetView`` (``ds.match_tags("recheck")``,
a saved view, a selection in the App). On a view the verb works on the view's samples only, exactly as the CLI works
on the whole dataset: ``validate`` checks them, ``export_florence`` exports them, ``split`` assigns them, ``review``
evaluates the run on them, ``writeback`` writes their files. Verbs that add samples or act on a dataset's label history
(``import_folder``, ``prelabel``, ``snapshot``, ``diff``, ``restore``) need the dataset itself and refuse a view with
one clear error.

Conventions: after the dataset (and the folder or run a verb needs), parameters are keyword-only; each verb returns a
typed result (the CLI's ``--json`` is the same object); long work reports through one ``progress`` shape, a callable
taking a :class:`Progress`. Errors are :class:`fabricdata.core.errors.FabricDataError` subclasses whose message is
the one line the CLI prints.

Example (a notebook)::

    import fabricdata as fd
    report = fd.import_folder("data/fabric", "fabric")
    recheck = fd.load("fabric").match_tags("recheck")
    print(fd.validate(recheck).issues)
    fd.export_florence(recheck, "exports/recheck")

This module imports FiftyOne and the rest lazily, so ``import fabricdata`` stays fast for the CLI.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from fabricdata.core.errors import DatasetError, FabricDataError

if TYPE_CHECKING:
    import fiftyone as fo

    from fabricdata.assist.prelabel import Predictor, PrelabelReport
    from fabricdata.core.contracts import ExportManifest, LabelDiff, LabelVersion, Tiling, ValidationReport
    from fabricdata.prepare.augment import AugmentReport
    from fabricdata.prepare.balance import BalanceReport
    from fabricdata.prepare.export import ExportOptions
    from fabricdata.prepare.split import SplitReport
    from fabricdata.review.audit import AuditSummary
    from fabricdata.review.review import ReviewSummary
    from fabricdata.store.import_report import ImportReport
    from fabricdata.store.writeback import WriteBackReport


@dataclass(frozen=True, slots=True)
class Progress:
    """One progress report: ``stage`` (what is being done), ``done`` units of ``total`` (None while unknown)."""

    stage: str
    done: int
    total: int | None


ProgressCallback = Callable[[Progress], None]


class _Meter:
    """Turns the library's ``progress(n)`` / ``on_total(n)`` / ``say(text)`` calls into :class:`Progress` reports."""

    def __init__(self, stage: str, callback: ProgressCallback | None) -> None:
        self.stage, self.callback = stage, callback
        self.done = 0
        self.count: int | None = None

    def advance(self, step: int = 1) -> None:
        self.done += step
        self._emit()

    def total(self, count: int) -> None:
        self.count = count
        self._emit()

    def at(self, done: int, total: int | None) -> None:
        self.done, self.count = done, total
        self._emit()

    def say(self, stage: str) -> None:
        self.stage, self.done, self.count = stage, 0, None
        self._emit()

    def _emit(self) -> None:
        if self.callback is not None:
            self.callback(Progress(self.stage, self.done, self.count))


# --- what a verb was given -----------------------------------------------------------------------------------


def load(name: str) -> fo.Dataset:
    """The dataset ``name`` (FiftyOne's, with fabricdata's fields), to make views of.

    Raises:
        DatasetError: no such dataset (the message lists those there are).
    """
    from fabricdata.store.dataset import load_dataset

    return load_dataset(name)


def _target(samples: Any, verb: str, *, views: bool = True) -> tuple[str, list[str] | None]:
    """(dataset name, the view's sample ids or None for a whole dataset)."""
    if isinstance(samples, str):
        return samples, None
    from fabricdata.store.dataset import fiftyone

    fo = fiftyone()
    if isinstance(samples, fo.Dataset):
        return samples.name, None
    if isinstance(samples, fo.DatasetView):
        if not views:
            raise DatasetError(
                f"{verb} works on a whole dataset, not a view: pass the dataset ({samples.dataset_name!r}) or its name"
            )
        if samples._is_patches:  # the App's patches view (boxes, evaluation patches): their images
            return samples._root_dataset.name, [str(i) for i in samples.distinct("sample_id")]
        return samples.dataset_name, [str(i) for i in samples.values("id")]
    raise TypeError(f"{verb}: expected a dataset name, an fo.Dataset or an fo.DatasetView, not {type(samples)}")


@contextmanager
def _on(samples: Any, verb: str) -> Iterator[str]:
    """The dataset's name, with the verbs reading only the view's samples within the block (a view given)."""
    from fabricdata.store.dataset import scoped

    name, ids = _target(samples, verb)
    if ids is None:
        yield name
        return
    with scoped(ids):
        yield name


# --- store ---------------------------------------------------------------------------------------------------


def import_folder(
    folder: str | Path,
    dataset: str | fo.Dataset,
    *,
    fmt: str = "auto",
    classes: Sequence[str] | None = None,
    names: str | Path | None = None,
    prune: bool = False,
    force: bool = False,
    follow_links: bool = False,
    max_pixels: int | None = None,
    progress: ProgressCallback | None = None,
) -> ImportReport:
    """Import (or update from) a LabelImg folder: VOC XML, YOLO txt or CreateML JSON, every file accounted for.

    Raises:
        AnnotationError: the folder is unusable (not found, no images, an unknown ``fmt``).
        DatasetError: a view was given, the dataset's name clashes with an existing one, or another command
            holds the dataset longer than ``FABRICDATA_LOCK_WAIT`` (the message names it).
    """
    from fabricdata.store.importer import import_folder as run

    name, _ = _target(dataset, "import_folder", views=False)
    meter = _Meter("importing", progress)
    return run(
        folder, name, fmt, classes, prune, force, meter.advance, meter.total,
        follow_links=follow_links, max_pixels=max_pixels, names=names,
    )  # fmt: skip


@dataclass(slots=True)
class DatasetStats:
    """What ``fabricdata stats`` shows. Per class and split: ``instances`` (boxes) and ``images``; ``box_sizes`` in
    pixels per class (count, width/height mean and median, area min/max)."""

    dataset: str
    samples: int
    classes: list[str]
    unused_classes: list[str]
    splits: list[str]
    images_per_split: dict[str, int]
    split_sources: dict[str, int]
    defect_free: dict[str, int]
    instances: dict[str, dict[str, int]]
    images: dict[str, dict[str, int]]
    box_sizes: dict[str, dict[str, float]]
    drafts_to_verify: int
    extra: dict[str, Any] = field(default_factory=dict)


def stats(samples: str | fo.Dataset | fo.DatasetView) -> DatasetStats:
    """Images, boxes and box sizes per class and split (unverified drafts counted apart).

    Raises:
        DatasetError: no such dataset.
    """
    from fabricdata.prepare.stats import dataset_stats

    with _on(samples, "stats") as name:
        figures = dataset_stats(name)
    known = set(DatasetStats.__dataclass_fields__) - {"extra"}
    return DatasetStats(
        **{k: v for k, v in figures.items() if k in known}, extra={k: v for k, v in figures.items() if k not in known}
    )


def writeback(
    samples: str | fo.Dataset | fo.DatasetView,
    *,
    force: bool = False,
    progress: ProgressCallback | None = None,
) -> WriteBackReport:
    """Write the App's label edits back to the label files (a view: its samples' files only).

    Raises:
        DatasetError: no such dataset, or another command holds it longer than ``FABRICDATA_LOCK_WAIT``.
    """
    from fabricdata.store.writeback import writeback as run

    name, ids = _target(samples, "writeback")
    meter = _Meter("writing back", progress)
    return run(name, force, meter.advance, meter.total, samples=ids)


@dataclass(frozen=True, slots=True)
class LabelImgExport:
    """A LabelImg folder written by :func:`export_labelimg`: the folder and how many images it holds."""

    folder: Path
    images: int


def export_labelimg(
    samples: str | fo.Dataset | fo.DatasetView,
    out: str | Path,
    *,
    tag: str | None = None,
    progress: ProgressCallback | None = None,
) -> LabelImgExport:
    """A LabelImg folder (images linked or copied, VOC XML, classes.txt) of the samples (those tagged ``tag``).

    Raises:
        DatasetError: no such dataset.
    """
    from fabricdata.store.writeback import export_labelimg as run

    meter = _Meter("exporting", progress)
    with _on(samples, "export_labelimg") as name:
        count = run(name, out, tag=tag, progress=meter.advance, on_total=meter.total)
    return LabelImgExport(Path(out), count)


# --- prepare -------------------------------------------------------------------------------------------------


def split(
    samples: str | fo.Dataset | fo.DatasetView,
    *,
    ratios: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    reshuffle: bool = False,
    min_per_split: int = 1,
    progress: ProgressCallback | None = None,
) -> SplitReport:
    """Tag the samples train/val/test by source group (a variant with its source, near-duplicates together).

    Raises:
        ConfigError: bad ratios; DatasetError: no such dataset.
    """
    from fabricdata.prepare.split import split_dataset

    meter = _Meter("checking near-duplicates", progress)
    with _on(samples, "split") as name:
        return split_dataset(name, ratios, seed, reshuffle, min_per_split, meter.advance, meter.total)


def augment(
    samples: str | fo.Dataset | fo.DatasetView,
    recipe: str | Path = "flip",
    *,
    copies: int = 1,
    seed: int = 0,
    split: str | None = "train",
    workers: int = 1,
    progress: ProgressCallback | None = None,
) -> AugmentReport:
    """Add ``copies`` augmented variants per sample of ``split`` (a recipe name or an albumentations YAML).

    Raises:
        ConfigError: unknown recipe or bad YAML; DatasetError: no such dataset.
    """
    from fabricdata.prepare.augment import augment as run

    meter = _Meter("augmenting", progress)
    with _on(samples, "augment") as name:
        return run(name, recipe, copies, seed, split, workers, meter.advance, meter.total)


def balance(
    samples: str | fo.Dataset | fo.DatasetView,
    *,
    target: int | None = None,
    ratio: float | None = None,
    recipe: str = "fabric-default",
    split: str | None = "train",
    seed: int = 0,
    workers: int = 1,
    max_copies: int = 20,
    progress: ProgressCallback | None = None,
) -> BalanceReport:
    """Augment images of rare classes until each class has ``target`` instances (or ``ratio`` x the largest).

    Raises:
        ConfigError: bad target/ratio or recipe; DatasetError: no such dataset.
    """
    from fabricdata.prepare.balance import balance as run

    meter = _Meter("balancing", progress)
    with _on(samples, "balance") as name:
        return run(name, target, ratio, recipe, split, seed, workers, max_copies, meter.advance)


def validate(
    samples: str | fo.Dataset | fo.DatasetView,
    *,
    min_instances: int = 10,
    imbalance_ratio: float = 10.0,
    save_views: bool = True,
    progress: ProgressCallback | None = None,
) -> ValidationReport:
    """Check the samples before training: leaks across splits, duplicates, class balance, degenerate boxes.

    Raises:
        DatasetError: no such dataset.
    """
    from fabricdata.prepare.validate import validate as run

    meter = _Meter("validating", progress)
    with _on(samples, "validate") as name:
        return run(
            name, min_instances, imbalance_ratio, save_views=save_views, progress=meter.advance,
            on_total=meter.total,
        )  # fmt: skip


def export_florence(
    samples: str | fo.Dataset | fo.DatasetView,
    out: str | Path,
    *,
    options: ExportOptions | None = None,
    progress: ProgressCallback | None = None,
) -> ExportManifest:
    """Florence-2 JSONL (``<OD>``, dense region captions, phrase grounding) of the samples, split by their tags.

    Raises:
        DatasetError: no such dataset, or a split is empty (the message names the command that fills it).
    """
    from fabricdata.prepare.export import export_florence as run

    meter = _Meter("exporting", progress)
    with _on(samples, "export_florence") as name:
        return run(name, out, options=options, progress=meter.advance, on_total=meter.total)


# --- review, assist, audit -----------------------------------------------------------------------------------


def review(
    samples: str | fo.Dataset | fo.DatasetView,
    run: str | Path,
    *,
    compare: str | Path | None = None,
    iou: float = 0.5,
    name: str | None = None,
    min_confidence: float | None = None,
    progress: ProgressCallback | None = None,
) -> ReviewSummary:
    """Bring a run's predictions (``RUN/predictions.jsonl``) into the dataset, evaluate them (mAP, per class,
    confusions) on the samples and save a view per kind of mistake, compared with the run ``compare``.

    Raises:
        DatasetError: nothing to review (the run predicted none of the samples), or ``compare`` never reviewed.
        InvalidValueError: a line of the predictions is unusable.
    """
    from fabricdata.review.review import MIN_CONFIDENCE
    from fabricdata.review.review import review as run_review

    meter = _Meter("reviewing", progress)
    with _on(samples, "review") as dataset:
        return run_review(
            dataset, run, compare, iou, meter.say, name,
            MIN_CONFIDENCE if min_confidence is None else min_confidence,
        )  # fmt: skip


def prelabel(
    folder: str | Path,
    dataset: str | fo.Dataset,
    run: str | Path,
    *,
    model: str | None = None,
    min_confidence: float | None = None,
    batch_size: int = 8,
    tiling: Tiling | Literal["export"] | None = "export",
    tile_and_full: bool = False,
    predictor: Predictor | None = None,
    progress: ProgressCallback | None = None,
) -> PrelabelReport:
    """New photos into the dataset with the run's model's boxes as drafts to verify (never trained on until
    verified). ``predictor`` replaces the model (``(paths, images) -> boxes per image``).

    Raises:
        DatasetError: a view was given; ConfigError: the run has no model; AnnotationError: the folder is unusable.
    """
    from fabricdata.assist.prelabel import DEFAULT_MIN_CONFIDENCE
    from fabricdata.assist.prelabel import prelabel as run_prelabel

    name, _ = _target(dataset, "prelabel", views=False)
    meter = _Meter("prelabelling", progress)
    return run_prelabel(
        folder, name, Path(run), model, DEFAULT_MIN_CONFIDENCE if min_confidence is None else min_confidence,
        batch_size, meter.advance, meter.total, tiling=tiling, tile_and_full=tile_and_full, predictor=predictor,
    )  # fmt: skip


def audit(
    samples: str | fo.Dataset | fo.DatasetView,
    *,
    folds: int = 5,
    config: str | Path | None = None,
    sets: Sequence[str] = (),
    predictions: Sequence[str | Path] = (),
    rescore: bool = False,
    name: str | None = None,
    root: str | Path = "runs",
    seed: int = 0,
    progress: ProgressCallback | None = None,
) -> AuditSummary:
    """Score every training label by a model that never saw its image: K out-of-fold runs (``sets`` as for
    ``train``: ``"epochs=10"``), or ``predictions`` made elsewhere (one file per fold), or ``rescore`` the stored
    predictions after fixes. Saves the views ``audit-missing``, ``-swapped``, ``-mislocated``, ``-spurious`` and
    ``-worst``.

    Raises:
        ConfigError: a bad training key, fewer than 2 folds or fewer image groups than folds.
        DatasetError: no such dataset.
    """
    from fabricdata.loop.audit import AuditRequest, audit_predictions, rescore_audit, run_audit

    meter = _Meter("auditing", progress)
    with _on(samples, "audit") as dataset:
        request = AuditRequest(
            dataset=dataset, name=name or dataset, folds=len(predictions) or folds,
            config=Path(config) if config is not None else None, sets=tuple(sets), root=Path(root), seed=seed,
        )  # fmt: skip
        if rescore:
            return rescore_audit(request, meter.say)
        if predictions:
            return audit_predictions(request, [Path(p) for p in predictions], log=meter.say)
        return run_audit(request, _trainer(meter), _predictor(meter), log=meter.say)


def _trainer(meter: _Meter) -> Callable[[Any, bool, str], Any]:
    def train(config: Any, resume: bool, run_id: str) -> Any:
        from finetune.train import train as run_train

        meter.say(f"training {Path(config.out).name}")

        return run_train(config, resume=resume, log=lambda _: None, on_step=meter.at, run_id=run_id)

    return train


def _predictor(meter: _Meter) -> Callable[[Path], None]:
    def predict(folder: Path) -> None:
        from finetune.predict import predict_run

        meter.say(f"predicting {folder.name}")
        predict_run(folder, split="test", progress=meter.advance, on_total=meter.total)

    return predict


# --- label versions ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A label version and whether :func:`snapshot` made it (False: the labels were those of ``version``)."""

    version: LabelVersion
    created: bool


def snapshot(dataset: str | fo.Dataset, *, name: str | None = None, message: str = "") -> Snapshot:
    """Freeze the labels of the dataset's originals as a content-addressed version (a view is refused: a version
    is of a whole dataset).

    Raises:
        DatasetError: a view, no such dataset, or ``name`` taken by other labels.
    """
    from fabricdata.store.versions import snapshot as take

    dataset_name, _ = _target(dataset, "snapshot", views=False)
    version, created = take(dataset_name, name, message)
    return Snapshot(version, created)


def diff(
    dataset: str | fo.Dataset,
    a: str | Path,
    b: str | Path = "now",
    *,
    iou: float = 0.5,
    save_view: bool = False,
) -> LabelDiff:
    """Boxes added, removed, moved, relabelled between two sides: a version (name or id), ``"now"`` or a run folder
    (the version it trained on). ``save_view`` saves the view ``diff-A-B`` for the App.

    Raises:
        DatasetError: a view, no such version, or a run without a recorded version.
    """
    from fabricdata.store.labeldiff import diff_tables, save_diff_view

    dataset_name, _ = _target(dataset, "diff", views=False)
    side_a, side_b = _side(dataset_name, a), _side(dataset_name, b)
    result = diff_tables(dataset_name, side_a, side_b, iou)
    return save_diff_view(dataset_name, result, side_a, side_b) if save_view else result


def _side(dataset_name: str, ref: str | Path) -> Any:
    from fabricdata.store.labeldiff import Side, load_side
    from fabricdata.store.versions import VersionStore, run_version

    if isinstance(ref, str):
        return load_side(dataset_name, ref)
    version = run_version(ref)
    if version is None:
        raise DatasetError(f"run {ref}: no label version recorded (its export was made before versions)")
    return Side(version.name, version.id, VersionStore(version.dataset).read_labels(version))


@dataclass(frozen=True, slots=True)
class Restored:
    """The dataset :func:`restore` made and the version it holds."""

    version: LabelVersion
    dataset: Any


def restore(dataset: str | fo.Dataset, version: str, new_name: str) -> Restored:
    """A new dataset ``new_name`` holding exactly the labels of ``version`` (same ids; no label file touched).

    Raises:
        DatasetError: a view, ``new_name`` exists, no such version, or images of the version are missing.
    """
    from fabricdata.store.versions import restore as run

    dataset_name, _ = _target(dataset, "restore", views=False)
    made, new = run(dataset_name, version, new_name)
    return Restored(made, new)


__all__ = [
    "DatasetStats", "FabricDataError", "LabelImgExport", "Progress", "ProgressCallback", "Restored", "Snapshot",
    "audit", "augment", "balance", "diff", "export_florence", "export_labelimg", "import_folder", "load", "prelabel",
    "restore", "review", "snapshot", "split", "stats", "validate", "writeback",
]  # fmt: skip
