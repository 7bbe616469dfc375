"""Model-assisted labeling: new photos come into the dataset with a model's boxes as drafts.

``prelabel`` adds every image of a folder that the dataset does not hold yet and that has no label file, with the
model's ``<OD>`` boxes in ``ground_truth``: each box a proposal (``proposal=True``) with its confidence, each
sample tagged ``prelabeled`` and saved in the view ``RUN-to-verify``, most uncertain first (the lowest best-box
confidence, then the images where the model found nothing). Annotators fix the boxes in the App and tag the
sample ``verified``; ``writeback`` then writes a new label file for it (never for an unverified draft, never over
an existing file). Until then the drafts stay out of statistics, splits, augmentation, validation and exports
(:func:`fabricdata.store.dataset.labeled`). Images already in the dataset are never touched, so a rerun adds only
what is new and never replaces a human edit.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from fabricdata.core.boxes import Box, box_to_fiftyone
from fabricdata.core.contracts import Tiling
from fabricdata.core.errors import AnnotationError, FormatDetectionError
from fabricdata.core.images import ImageInfo, image_info
from fabricdata.core.walk import image_files
from fabricdata.formats import registry
from fabricdata.formats.discover import discover
from fabricdata.store.dataset import (
    ATTR_PROPOSAL,
    F_LABELS_HASH,
    F_PRELABEL_CONFIDENCE,
    F_PRELABEL_RUN,
    F_PROXY,
    F_SOURCE_FOLDER,
    GT_FIELD,
    TAG_PRELABELED,
    detections_hash,
    enable_proxies,
    fiftyone,
    managed_dir,
    open_dataset,
    pending_drafts,
)
from fabricdata.store.importer import proxy_for
from fabricdata.store.locks import holds_dataset

#: boxes below this confidence are not drafted (an annotator would only delete them)
DEFAULT_MIN_CONFIDENCE = 0.25


@dataclass(slots=True)
class PrelabelReport:
    """What one ``prelabel`` did."""

    view: str
    added: int = 0
    boxes: int = 0
    #: images the dataset already holds (left as they are)
    known: int = 0
    #: images that have a label file: ``fabricdata import`` brings those in
    labeled: int = 0
    below_confidence: int = 0
    #: drafted labels that are not classes of the dataset, by label (not drafted)
    other_labels: Counter[str] = field(default_factory=Counter)
    unreadable: list[str] = field(default_factory=list)


def to_verify_view(run_name: str) -> str:
    return f"{run_name}-to-verify"


#: what drafts the boxes: the new images' paths and their decoded RGB pixels (:func:`fabricdata.core.images.load_rgb`)
#: in, per image its ``<OD>`` detections out (``{"label", "bbox": [xmin, ymin, xmax, ymax] in pixels, "confidence"}``)
Predictor = Callable[[Sequence[Path], Sequence[Any]], list[list[dict[str, Any]]]]


def model_predictor(
    run: Path,
    model: str | None = None,
    batch_size: int = 8,
    max_new_tokens: int | None = None,
    tiling: Tiling | Literal["export"] | None = "export",
    tile_and_full: bool = False,
) -> Predictor:
    """The run's model (or ``model``), loaded once, as a :data:`Predictor`: ``<OD>`` in batches of
    ``batch_size`` generations, the run's label budget unless ``max_new_tokens`` is given; ``tiling`` slices each
    photo and merges the boxes back onto it (``"export"``: the tiling the run trained on, if any)."""
    from finetune.model import load_for_inference
    from finetune.predict import PredictOptions, describe, inference_placement, label_budget, run_export
    from finetune.tiles import chosen_tiling

    data = run_export(run)
    options = PredictOptions(
        batch_size=batch_size,
        max_new_tokens=max_new_tokens or label_budget(data),
        tiling=chosen_tiling(tiling, run, data, tile_and_full),
        tile_and_full=tile_and_full,
    )
    loaded, processor = load_for_inference(model or str(run), **inference_placement())

    def predict(paths: Sequence[Path], images: Sequence[Any]) -> list[list[dict[str, Any]]]:
        return [found[0]["detections"] for found in describe(loaded, processor, images, options)]

    return predict


@holds_dataset("prelabel")
def prelabel(
    folder: str | Path,
    dataset_name: str,
    run: Path,
    model: str | None = None,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    batch_size: int = 8,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
    max_new_tokens: int | None = None,
    tiling: Tiling | Literal["export"] | None = "export",
    tile_and_full: bool = False,
    predictor: Predictor | None = None,
) -> PrelabelReport:
    """Draft boxes for the new, unlabeled images of ``folder`` with a run's model (see the module docstring).

    ``predictor`` drafts the boxes instead of the run's model (an oracle in tests, any detector in scripts); the
    model is loaded only when there are new images. ``tiling`` slices each photo and merges the boxes back onto
    it (``"export"``: the tiling the run trained on, if any). ``on_total`` is called once with the number of new
    images; ``progress`` advances per image.
    """
    root = Path(folder).resolve()
    report = PrelabelReport(view=to_verify_view(run.name))
    dataset = open_dataset(dataset_name)
    new = _new_images(root, dataset, report)
    if on_total is not None:
        on_total(len(new))
    if new:
        draft = predictor or model_predictor(run, model, batch_size, max_new_tokens, tiling, tile_and_full)
        drafter = _Drafter(run.name, root, min_confidence, set(dataset.default_classes or []), report)
        proxies = managed_dir(dataset_name, "proxies")
        for start in range(0, len(new), batch_size):
            batch = new[start : start + batch_size]
            readable = _readable(batch, proxies, report)
            if readable:
                found = draft([path for path, *_ in readable], [image for *_, image in readable])
                samples = [
                    drafter.sample(path, info, proxy, detections)
                    for (path, info, proxy, _), detections in zip(readable, found, strict=True)
                ]
                dataset.add_samples(samples, progress=False)
            if progress:
                progress(len(batch))
        if drafter.wrote_proxy:
            enable_proxies(dataset)
    save_to_verify_view(dataset, run.name)
    return report


def _new_images(root: Path, dataset: Any, report: PrelabelReport) -> list[Path]:
    """The images below ``root`` that the dataset does not hold and that have no label file."""
    known = set(dataset.values("filepath")) if len(dataset) else set()
    try:
        found = discover(root)
        labeled = {image for label in found.labels for image in registry.get(label.format).images_of(label, found)}
    except FormatDetectionError:  # no label file at all: every image is new work
        labeled = set()
    new = []
    for image in image_files(root):
        if str(image) in known:
            report.known += 1
        elif image in labeled:
            report.labeled += 1
        else:
            new.append(image)
    return new


def _readable(
    batch: Sequence[Path], proxies: Path, report: PrelabelReport
) -> list[tuple[Path, ImageInfo, Path | None, Any]]:
    """(path, header, proxy, RGB pixels) of the images that decode; one line per image that does not."""
    from finetune.data import UnreadableImageError, read_image

    out = []
    for path in batch:
        try:
            info = image_info(path)
            pixels = read_image(path)
            proxy = None if info.browser_viewable else proxy_for(path, proxies)
        except UnreadableImageError as exc:
            report.unreadable.append(str(exc))
            continue
        except (AnnotationError, OSError, ValueError) as exc:  # a bad header, or no proxy can be made of it
            report.unreadable.append(f"{path}: cannot be read as an image ({exc.__class__.__name__}: {exc})")
            continue
        out.append((path, info, proxy, pixels))
    return out


@dataclass(slots=True)
class _Drafter:
    """Turns one image's predicted boxes into a draft sample."""

    run_name: str
    root: Path
    min_confidence: float
    classes: set[str]
    report: PrelabelReport
    #: whether any draft needed a browser-viewable proxy (the App is then switched to proxies)
    wrote_proxy: bool = False

    def sample(self, path: Path, info: ImageInfo, proxy: Path | None, detections: Sequence[dict[str, Any]]) -> Any:
        fo = fiftyone()
        drafted = []
        for det in detections:
            if det["confidence"] < self.min_confidence:
                self.report.below_confidence += 1
            elif self.classes and det["label"] not in self.classes:
                self.report.other_labels[det["label"]] += 1
            else:
                box = box_to_fiftyone(Box(*det["bbox"]), info.size)
                drafted.append(
                    fo.Detection(
                        label=det["label"], bounding_box=box, confidence=det["confidence"], **{ATTR_PROPOSAL: True}
                    )
                )
        self.report.added += 1
        self.report.boxes += len(drafted)
        self.wrote_proxy = self.wrote_proxy or proxy is not None
        drafts = fo.Detections(detections=drafted)
        return fo.Sample(
            filepath=str(path),
            tags=[TAG_PRELABELED],
            metadata=fo.ImageMetadata(
                width=info.size.width,
                height=info.size.height,
                num_channels=info.channels,
                size_bytes=path.stat().st_size,
            ),
            **{
                GT_FIELD: drafts,
                # the drafts' digest: an import that finds a label file made meanwhile takes it unless the
                # draft was edited in the App (as for any sample)
                F_LABELS_HASH: detections_hash(drafts, info.size),
                F_PRELABEL_RUN: self.run_name,
                F_PRELABEL_CONFIDENCE: max((d.confidence for d in drafted), default=None),
                F_SOURCE_FOLDER: str(self.root),
                F_PROXY: str(proxy or path),
            },
        )


def save_to_verify_view(dataset: Any, run_name: str) -> Any:
    """``RUN-to-verify``: the run's unverified drafts, lowest best-box confidence first, then those without a
    box (replaced on every prelabel, so it follows the drafts as they are verified)."""
    fo = fiftyone()
    best = fo.ViewField(F_PRELABEL_CONFIDENCE)
    view = (
        pending_drafts(dataset)
        .match(fo.ViewField(F_PRELABEL_RUN) == run_name)
        .sort_by(best.exists().if_else(best, 2.0))
    )
    name = to_verify_view(run_name)
    if dataset.has_saved_view(name):
        dataset.delete_saved_view(name)
    dataset.save_view(name, view)
    return view
