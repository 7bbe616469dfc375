"""The contracts between fabricdata and the world: typed records that leave the program as JSON (the schemas in
``schemas/`` are generated from them) and where the files shipped beside the code live.

Shipped files: augmentation recipes and the phrase table (``pipelines/``) and the JSON Schemas (``schemas/``). In a
source checkout or an editable install they are the top-level folders of the repository. In a wheel (or ``pip
install .``) the build copies them into the package as ``fabricdata/_data/`` (``setup.py``), found here through
``importlib.resources``.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

Severity = Literal["error", "warning", "info"]


class Finding(BaseModel):
    """One problem (or fact) ``fabricdata validate`` found."""

    model_config = ConfigDict(extra="forbid")

    check: str = Field(description="Machine name of the check, e.g. 'degenerate-boxes'.")
    severity: Severity = Field(description="'error' fails --strict; 'warning' and 'info' do not.")
    message: str = Field(description="What was found, for people.")
    count: int = Field(ge=0, description="How many samples, boxes or classes are concerned.")
    samples: list[str] = Field(default_factory=list, description="Ids of the samples concerned.")
    labels: list[str] = Field(default_factory=list, description="Ids of the boxes concerned, if box-level.")
    classes: list[str] = Field(default_factory=list, description="Classes concerned, if class-level.")
    view: str | None = Field(default=None, description="Saved view that opens these samples in the App.")


class ValidationReport(BaseModel):
    """The output of ``fabricdata validate --json``."""

    model_config = ConfigDict(extra="forbid")

    dataset: str
    samples: int = Field(ge=0)
    errors: int = Field(ge=0, description="Number of findings with severity 'error'.")
    warnings: int = Field(ge=0)
    findings: list[Finding]


class ExportRecord(BaseModel):
    """One line of an exported ``annotations.jsonl`` (maestro-compatible Florence-2 JSONL)."""

    model_config = ConfigDict(extra="forbid")

    image: str = Field(description="Image file name, relative to the annotations.jsonl folder.")
    prefix: str = Field(description="Task token, plus the caption for <CAPTION_TO_PHRASE_GROUNDING>.")
    suffix: str = Field(description="Target text: label<loc_x1><loc_y1><loc_x2><loc_y2>... ('' for negatives).")


class Tiling(BaseModel):
    """How frames are cut into tiles: the tile size and the overlap of neighbouring tiles (SAHI's slicing)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    width: int = Field(gt=0, description="Tile width in pixels (a frame narrower than it gives narrower tiles).")
    height: int = Field(gt=0, description="Tile height in pixels (a frame lower than it gives lower tiles).")
    overlap: float = Field(ge=0.0, le=0.9, description="Overlap of neighbouring tiles, a share of the tile side.")

    @classmethod
    def parse(cls, text: str, overlap: float) -> Tiling | None:
        """``256`` or ``512x256`` (WIDTHxHEIGHT) and an overlap; ``none``/``off``/``0`` give None (whole frames).

        Raises:
            ConfigError: the text is no tile size, or the overlap is outside 0..0.9.
        """
        from fabricdata.core.errors import ConfigError

        spec = text.strip().lower()
        if spec in ("none", "off", "0", ""):
            return None
        parts = spec.split("x")
        if len(parts) > 2 or not all(part.isdigit() and int(part) > 0 for part in parts):
            raise ConfigError(f"--tile: expected SIZE or WIDTHxHEIGHT in pixels (e.g. 256 or 512x256), got {text!r}")
        if not 0.0 <= overlap <= 0.9:
            raise ConfigError(f"--overlap: expected a share of the tile side in 0..0.9, got {overlap:g}")
        return cls(width=int(parts[0]), height=int(parts[-1]), overlap=overlap)

    def describe(self) -> str:
        """``256x256, overlap 0.2``."""
        return f"{self.width}x{self.height}, overlap {self.overlap:g}"


class ExportTiling(Tiling):
    """The tiling of a tiled export: how the frames were cut and what became of their tiles and boxes."""

    min_visibility: float = Field(ge=0.0, le=1.0, description="A clipped box is kept in a tile where at least this "
                                  "share of its area lies inside it.")  # fmt: skip
    negative_ratio: float = Field(ge=0.0, description="Tiles without boxes kept per tile with boxes (seeded choice).")
    frames: dict[str, int] = Field(default_factory=dict, description="Frames cut, per split folder.")
    tiles: dict[str, dict[str, int]] = Field(
        default_factory=dict,
        description="Tiles per split folder: 'boxes' (with boxes, exported unless over the label budget), "
        "'negatives' (without boxes, exported), "
        "'negatives_left' (without boxes, over the ratio), 'partial' (only boxes under min_visibility: not "
        "exported, neither a defect nor a clean example).",
    )
    pieces: dict[str, int] = Field(
        default_factory=dict,
        description="Box pieces over all tiles: 'whole' (box inside the tile), 'clipped' (cut by the tile, kept), "
        "'dropped' (cut, under min_visibility).",
    )


class ExportManifest(BaseModel):
    """``OUT/manifest.json`` of a Florence-2 export: what was exported, and a hash of every record."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["florence2-jsonl"] = "florence2-jsonl"
    dataset: str
    view: str | None = Field(default=None, description="Saved view exported, if any.")
    classes: list[str]
    tasks: list[str] = Field(description="Florence-2 task tokens exported.")
    order: Literal["sequential", "interleave", "shuffle"]
    seed: int
    negatives: bool = Field(description="Whether defect-free images were exported with an empty suffix.")
    phrases: dict[str, str] = Field(description="Class -> region caption / grounding phrase.")
    max_label_tokens: int = Field(description="Label budget: records whose suffix could exceed it are skipped.")
    images: dict[str, int] = Field(description="Images per split folder (train, valid, test).")
    records: dict[str, dict[str, int]] = Field(description="Records per split folder and task.")
    instances: dict[str, dict[str, int]] = Field(description="Boxes per split folder and class.")
    unassigned: int = Field(description="Samples without a train/val/test tag (not exported).")
    over_budget: list[str] = Field(description="Images skipped for a task because of the label budget.")
    content_hash: str = Field(description="sha256 of the annotations.jsonl files, in split order.")
    tiling: ExportTiling | None = Field(
        default=None, description="The tiling of a tiled export (images are tiles of the frames); None: whole frames."
    )
    labels_version: str | None = Field(
        default=None, description="Id of the dataset's label version exported (fabricdata versions); None: older."
    )
    labels_version_name: str | None = Field(default=None, description="Name of that label version (v3).")


class LabelVersion(BaseModel):
    """One frozen version of a dataset's labels (``fabricdata snapshot``; ``fabricdata versions --json``)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="sha256 of the labels (content address): the same labels give the same id.")
    name: str = Field(description="Unique name within the dataset (v1, v2, ... unless named).")
    message: str = Field(default="", description="Why it was taken, for people.")
    created: str = Field(description="When it was taken (ISO 8601, UTC).")
    dataset: str
    taken_by: Literal["snapshot", "export"] = Field(description="The command that took it.")
    samples: int = Field(ge=0, description="Original images (no augmented variants, no unverified drafts).")
    boxes: int = Field(ge=0)
    classes: list[str] = Field(description="The dataset's classes at the time.")
    stored_bytes: int = Field(ge=0, description="Size of the compressed label file.")


class BoxChanges(BaseModel):
    """Boxes that changed between two label versions, of one class or in total."""

    model_config = ConfigDict(extra="forbid")

    added: int = Field(default=0, ge=0, description="Boxes only in the second version (counted by their class).")
    removed: int = Field(default=0, ge=0, description="Boxes only in the first version (by their class there).")
    moved: int = Field(default=0, ge=0, description="Matched boxes whose corners changed (by their new class).")
    relabelled: int = Field(default=0, ge=0, description="Matched boxes whose class changed (by their old class).")
    attributes: int = Field(
        default=0, ge=0, description="Matched boxes whose attributes or label tags changed (difficult, truncated...)."
    )


class LabelDiff(BaseModel):
    """``fabricdata diff A B --json``: box-level changes from version A to version B."""

    model_config = ConfigDict(extra="forbid")

    dataset: str
    a: str = Field(description="The first side: a version name, or 'now' (the dataset's current labels).")
    a_id: str = Field(description="Content id of the first side.")
    b: str
    b_id: str
    iou: float = Field(description="IoU at which a removed and an added box are taken for one box that changed.")
    boxes_changed: int = Field(ge=0, description="Boxes added, removed or changed (each box counted once).")
    total: BoxChanges
    per_class: dict[str, BoxChanges]
    relabelled: dict[str, int] = Field(description="'old -> new' class pairs of relabelled boxes.")
    samples_added: int = Field(ge=0)
    samples_removed: int = Field(ge=0)
    samples_changed: int = Field(ge=0, description="Images present on both sides whose boxes changed.")
    split_changed: int = Field(ge=0, description="Images whose train/val/test tag changed.")
    tags_changed: int = Field(ge=0, description="Images whose other tags or LabelImg 'verified' flag changed.")
    images_changed: int = Field(ge=0, description="Images whose stored size (bytes, width, height) changed.")
    changed: list[str] = Field(description="File paths of the images with box changes (added images included).")
    view: str | None = Field(default=None, description="Saved view of the changed images (before/after fields).")
    fields: dict[str, str] = Field(
        default_factory=dict, description="Side ('a', 'b') -> the label field that shows it in that view."
    )


class PredictedBox(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: str
    bbox: list[float] = Field(min_length=4, max_length=4, description="xmin, ymin, xmax, ymax in pixels of the image.")
    confidence: float = Field(
        ge=0.0, le=1.0, description="Geometric mean probability of the box's label and loc tokens."
    )
    text: str | None = Field(
        default=None, description="The generated label, where the box was labelled with the class its phrase names."
    )


class SlicedPrediction(BaseModel):
    """A prediction made tile by tile: the tiling, the tiles, and whether a whole-frame pass was added."""

    model_config = ConfigDict(extra="forbid")

    tiling: Tiling
    tiles: int = Field(ge=1, description="Tiles the frame was cut into.")
    full_frame: bool = Field(default=False, description="Whether the whole frame was predicted too and merged in.")


class PredictionRecord(BaseModel):
    """One line of ``runs/R/predictions.jsonl``: one image and task."""

    model_config = ConfigDict(extra="forbid")

    image: str = Field(description="Image name in the export split folder (or relative to the --images folder).")
    filepath: str | None = Field(default=None, description="Original file of the image (from the export's sources).")
    task: str = Field(description="Florence-2 task token, e.g. <OD>.")
    phrase: str | None = Field(default=None, description="<CAPTION_TO_PHRASE_GROUNDING>: the phrase asked for.")
    text: str = Field(description="Raw generated text.")
    caption: str | None = Field(default=None, description="<CAPTION>: the caption, special tokens removed.")
    detections: list[PredictedBox]
    malformed_boxes: int = Field(default=0, ge=0, description="Generated boxes whose corners were out of order.")
    sliced: SlicedPrediction | None = Field(
        default=None, description="How the frame was sliced for a tiled prediction; None: the whole frame at once."
    )


SHIPPED = ("pipelines", "schemas")


def shipped(name: str) -> Path:
    """The folder ``name`` (one of :data:`SHIPPED`) of this installation."""
    packaged = resources.files("fabricdata").joinpath("_data", name)
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[2] / name


# --- the folders that pass between the commands ---------------------------------------------------------------


@dataclass(frozen=True)
class ExportFolder:
    """A Florence-2 export (``fabricdata export florence OUT``), maestro's layout::

        OUT/manifest.json                       ExportManifest
        OUT/{train,valid,test}/annotations.jsonl ExportRecord per line
        OUT/{train,valid,test}/sources.jsonl     {"image", "filepath", "sample_id"} per exported image
                                                 (tiled: also "offset" [x, y], "tile" [w, h], "frame" [W, H])
        OUT/{train,valid,test}/frames.jsonl      tiled: {"image", "filepath", "sample_id", "width", "height"} per
                                                 frame of the split (frames/<name>), what sliced prediction reads
        OUT/{train,valid,test}/<images>          hard links (or copies) of the dataset's images; tiled: PNG tiles
                                                 (<stem>_x<left>_y<top>.png) and the frames under frames/

    The dataset's split tags are ``train``/``val``/``test`` (FiftyOne's convention); maestro's folder for ``val``
    is ``valid``. :data:`SPLIT_FOLDERS` is the one place that maps them.
    """

    root: Path

    #: dataset split tag -> export folder name
    SPLIT_FOLDERS: ClassVar[dict[str, str]] = {"train": "train", "val": "valid", "test": "test"}
    MANIFEST: ClassVar[str] = "manifest.json"
    ANNOTATIONS: ClassVar[str] = "annotations.jsonl"
    SOURCES: ClassVar[str] = "sources.jsonl"
    FRAMES: ClassVar[str] = "frames.jsonl"
    FRAMES_FOLDER: ClassVar[str] = "frames"

    @classmethod
    def folder_name(cls, split: str) -> str:
        """``val`` -> ``valid``; a folder name (``valid``) is returned as it is."""
        return cls.SPLIT_FOLDERS.get(split, split)

    def split(self, split: str) -> Path:
        """The folder of a split, given as a tag (``val``) or a folder name (``valid``)."""
        return self.root / self.folder_name(split)

    def annotations(self, split: str) -> Path:
        return self.split(split) / self.ANNOTATIONS

    def sources(self, split: str) -> Path:
        return self.split(split) / self.SOURCES

    def frames(self, split: str) -> Path:
        """A tiled export's list of the split's whole frames (absent from an export of whole frames)."""
        return self.split(split) / self.FRAMES

    @property
    def manifest(self) -> Path:
        return self.root / self.MANIFEST

    def is_export(self) -> bool:
        """Whether the folder holds an export (its manifest is written last)."""
        return self.manifest.is_file()


@dataclass(frozen=True)
class RunFolder:
    """A fine-tune run (``fabricdata train``, ``predict``, ``review``)::

    R/config.yaml            the resolved TrainConfig (its ``data`` names the ExportFolder trained on)
    R/export_manifest.json   a copy of that export's manifest
    R/processor/             the Florence-2 processor
    R/checkpoints/{last,best}/ adapter checkpoints (``last`` also holds the trainer state)
    R/metrics.csv, R/loss_curve.png, R/summary.json
    R/predictions.jsonl      PredictionRecord per line
    R/review.json, R/report.md, R/*.png   the review of the predictions
    """

    root: Path

    CONFIG: ClassVar[str] = "config.yaml"
    PREDICTIONS: ClassVar[str] = "predictions.jsonl"
    CHECKPOINTS: ClassVar[str] = "checkpoints"

    @property
    def config(self) -> Path:
        return self.root / self.CONFIG

    @property
    def export_manifest(self) -> Path:
        return self.root / "export_manifest.json"

    @property
    def processor(self) -> Path:
        return self.root / "processor"

    def checkpoint(self, which: Literal["last", "best"]) -> Path:
        return self.root / self.CHECKPOINTS / which

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.csv"

    @property
    def loss_curve(self) -> Path:
        return self.root / "loss_curve.png"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    @property
    def predictions(self) -> Path:
        return self.root / self.PREDICTIONS

    @property
    def review(self) -> Path:
        return self.root / "review.json"

    @property
    def report(self) -> Path:
        return self.root / "report.md"

    def is_run(self) -> bool:
        """A folder that trained (``config.yaml``) or predicted (``predictions.jsonl``)."""
        return self.config.is_file() or self.predictions.is_file()

    @classmethod
    def inside_checkpoints(cls, path: Path) -> bool:
        """Whether ``path`` lies in some run's checkpoints folder (a checkpoint holds a config.yaml too)."""
        return cls.CHECKPOINTS in path.parts


@dataclass(frozen=True)
class AuditFolder:
    """An out-of-fold label audit (``fabricdata audit --name NAME``), under the runs root as ``audit-NAME``::

    A/folds.json            the fold plan: each original's fold, and per fold the split tag of each sample
    A/exports/fold-K/       ExportFolder of fold K: train and valid from the other folds, test = fold K
    A/fold-K/               RunFolder trained on that export; its predictions.jsonl predicts fold K
    A/audit.json            per fold: the run or predictions file, images trained on, validation loss
    A/audit.md              the report for the annotators: counts per class and issue, views, commands
    """

    root: Path

    PREFIX: ClassVar[str] = "audit-"

    @classmethod
    def named(cls, runs_root: Path, name: str) -> AuditFolder:
        return cls(runs_root / f"{cls.PREFIX}{name}")

    def run(self, fold: int) -> Path:
        """The RunFolder of fold ``fold`` (0-based)."""
        return self.root / f"fold-{fold}"

    def export(self, fold: int) -> Path:
        """The ExportFolder fold ``fold``'s run trains on."""
        return self.root / "exports" / f"fold-{fold}"

    @property
    def plan(self) -> Path:
        return self.root / "folds.json"

    @property
    def summary(self) -> Path:
        return self.root / "audit.json"

    @property
    def report(self) -> Path:
        return self.root / "audit.md"
