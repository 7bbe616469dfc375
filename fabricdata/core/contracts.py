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
        OUT/{train,valid,test}/<images>          hard links (or copies) of the dataset's images

    The dataset's split tags are ``train``/``val``/``test`` (FiftyOne's convention); maestro's folder for ``val``
    is ``valid``. :data:`SPLIT_FOLDERS` is the one place that maps them.
    """

    root: Path

    #: dataset split tag -> export folder name
    SPLIT_FOLDERS: ClassVar[dict[str, str]] = {"train": "train", "val": "valid", "test": "test"}
    MANIFEST: ClassVar[str] = "manifest.json"
    ANNOTATIONS: ClassVar[str] = "annotations.jsonl"
    SOURCES: ClassVar[str] = "sources.jsonl"

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
