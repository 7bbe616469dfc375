"""Runs side by side: the config keys that differ, the label version trained on, losses, mAP, speed; overlaid loss
curves; a Markdown report.

Reads run folders only (``config.yaml``, ``export_manifest.json``, ``metrics.csv``, ``summary.json``,
``review.json``): no FiftyOne, no torch. A run is any folder below the root that holds a ``config.yaml``.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from fabricdata.core.contracts import RunFolder
from fabricdata.core.errors import ConfigError

SortKey = Literal["map", "val_loss", "name"]
#: keys that differ between any two runs by construction, never an experiment's variable
_ALWAYS_DIFFERENT = {"out"}


@dataclass(slots=True)
class RunRow:
    """One run's figures (None where the run has not produced them yet)."""

    name: str
    folder: Path
    config: dict[str, Any]
    #: the label version of the export it trained on, ``v3 (1a2b3c4d)`` (None: not recorded)
    labels: str | None = None
    best_val_loss: float | None = None
    best_epoch: int | None = None
    train_loss: float | None = None
    map: float | None = None
    ap50: float | None = None
    per_class_ap: dict[str, float] = field(default_factory=dict)
    train_seconds: float | None = None
    samples_per_s: float | None = None
    finished: bool = False
    train_curve: list[tuple[int, float]] = field(default_factory=list)
    val_curve: list[tuple[int, float]] = field(default_factory=list)
    #: the tiling of the export trained on ("tiles 256x256, overlap 0.2"; None: whole frames, or unknown)
    tiling: str | None = None
    #: how the reviewed predictions were made (review.json's "tiling"; None: not reviewed)
    predicted_on: str | None = None


def find_runs(root: Path, max_depth: int = 3) -> list[Path]:
    """Run folders (holding config.yaml) below ``root``, sorted by path."""
    if not root.is_dir():
        raise ConfigError(f"{root}: no such runs folder")
    found = []
    for config in sorted(root.rglob(RunFolder.CONFIG)):
        relative = config.parent.relative_to(root)
        if len(relative.parts) <= max_depth and not RunFolder.inside_checkpoints(relative):
            found.append(config.parent)
    return found


def load_runs(root: Path) -> list[RunRow]:
    rows = [load_run(folder, root) for folder in find_runs(root)]
    if not rows:
        raise ConfigError(f"{root}: no runs (folders with a config.yaml) below it")
    return rows


def load_run(folder: Path, root: Path) -> RunRow:
    """One run's figures; a run that only predicted (a zero-shot model, no ``config.yaml``) has no config keys."""
    run = RunFolder(folder)
    try:
        text = run.config.read_text(encoding="utf-8") if run.config.exists() else ""
        config = yaml.safe_load(text) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{run.config}: unreadable ({exc.__class__.__name__})") from None
    name = folder.relative_to(root).as_posix() if folder != root else folder.name
    row = RunRow(name=name, folder=folder, config=_flatten(config))
    _read_metrics(run.metrics, row)
    _read_json(run.export_manifest, row, _from_manifest)
    _read_json(run.summary, row, _from_summary)
    _read_json(run.review, row, _from_review)
    _read_json(run.export_manifest, row, _from_export_manifest)
    return row


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _read_metrics(path: Path, row: RunRow) -> None:
    if not path.is_file():
        return
    with path.open(newline="", encoding="utf-8") as handle:
        for record in csv.DictReader(handle):
            try:
                step, epoch, loss = int(record["step"]), int(record["epoch"]), float(record["loss"])
            except (KeyError, TypeError, ValueError):
                continue  # a row cut by a kill: the rest of the file still counts
            if record.get("split") == "train":
                row.train_curve.append((step, loss))
                row.samples_per_s = _float(record.get("samples_per_s"))
            elif record.get("split") == "val":
                row.val_curve.append((epoch, loss))
    if row.train_curve:
        row.train_loss = row.train_curve[-1][1]
    if row.val_curve:
        row.best_epoch, row.best_val_loss = min(row.val_curve, key=lambda point: point[1])


def _float(text: Any) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _read_json(path: Path, row: RunRow, apply: Any) -> None:
    if not path.is_file():
        return
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return
    if isinstance(data, dict):
        apply(data, row)


def _from_manifest(data: dict[str, Any], row: RunRow) -> None:
    if data.get("labels_version"):
        row.labels = f"{data.get('labels_version_name') or '?'} ({str(data['labels_version'])[:8]})"


def _from_summary(data: dict[str, Any], row: RunRow) -> None:
    row.finished = bool(data.get("finished"))
    row.train_seconds = _float(data.get("train_seconds"))
    row.samples_per_s = _float(data.get("samples_per_s")) or row.samples_per_s


def _from_review(data: dict[str, Any], row: RunRow) -> None:
    row.map, row.ap50 = _float(data.get("map")), _float(data.get("ap50"))
    row.predicted_on = str(data["tiling"]) if data.get("tiling") else None
    row.per_class_ap = {str(k): float(v) for k, v in (data.get("per_class_ap") or {}).items()}


def _from_export_manifest(data: dict[str, Any], row: RunRow) -> None:
    tiling = data.get("tiling")
    if isinstance(tiling, dict):
        row.tiling = f"tiles {tiling.get('width')}x{tiling.get('height')}, overlap {_show(tiling.get('overlap'))}"


def tiling_cell(row: RunRow) -> str:
    """What the run trained on (``tiles 256x256, overlap 0.2`` or ``whole frames``), and how its reviewed
    predictions were made where that differs."""
    trained = row.tiling or "whole frames"
    if row.predicted_on is None or row.predicted_on == trained:
        return trained
    return f"{trained}; predicted on {row.predicted_on}"


def differing_keys(rows: Sequence[RunRow]) -> list[str]:
    """Config keys whose values are not the same in every run (``out`` excluded), in config order."""
    keys: dict[str, None] = {}
    for row in rows:
        keys.update(dict.fromkeys(row.config))
    return [
        key
        for key in keys
        if key not in _ALWAYS_DIFFERENT and len({json.dumps(r.config.get(key), default=str) for r in rows}) > 1
    ]


def sort_runs(rows: Sequence[RunRow], by: SortKey) -> list[RunRow]:
    if by == "map":
        return sorted(rows, key=lambda r: (r.map is None, -(r.map or 0.0), r.name))
    if by == "val_loss":
        return sorted(rows, key=lambda r: (r.best_val_loss is None, r.best_val_loss or 0.0, r.name))
    return sorted(rows, key=lambda r: r.name)


def table(rows: Sequence[RunRow]) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the comparison (shared by the terminal table and the Markdown report)."""
    keys = differing_keys(rows)
    reviewed = any(row.map is not None for row in rows)
    classes = sorted({name for row in rows for name in row.per_class_ap})
    tiled = any(row.tiling or (row.predicted_on or "whole frames") != "whole frames" for row in rows)
    versioned = any(row.labels for row in rows)
    header = [
        "run",
        *(["labels"] if versioned else []),
        *keys,
        *(["tiling"] if tiled else []),
        "best val loss",
        "epoch",
    ]
    header += ["mAP", "AP50", *(f"AP {c}" for c in classes)] if reviewed else []
    header += ["train s", "samples/s"]
    cells = []
    for row in rows:
        values = [
            row.name,
            *([_show(row.labels)] if versioned else []),
            *(_show(row.config.get(key)) for key in keys),
            *([tiling_cell(row)] if tiled else []),
        ]
        values += [_num(row.best_val_loss, 4), _show(row.best_epoch)]
        if reviewed:
            values += [_num(row.map, 3), _num(row.ap50, 3), *(_num(row.per_class_ap.get(c), 3) for c in classes)]
        values += [_num(row.train_seconds, 1), _num(row.samples_per_s, 1)]
        cells.append(values)
    return header, cells


def _show(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value)


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown(rows: Sequence[RunRow], title: str = "Runs") -> str:
    header, cells = table(rows)
    lines = [f"# {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in cells]
    return "\n".join(lines) + "\n"


def legend(row: RunRow, keys: Sequence[str]) -> str:
    return ", ".join(f"{key.rsplit('.', 1)[-1]}={_show(row.config.get(key))}" for key in keys) or row.name


def plot_runs(rows: Sequence[RunRow], out: Path) -> Any:
    """Training loss per step (left) and validation loss per epoch (right), one colour per run, log scale;
    the legend names each run by the keys that differ. Returns the matplotlib figure (closed, saved)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = differing_keys(rows)
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5), dpi=120)
    colours = plt.get_cmap("tab10" if len(rows) <= 10 else "tab20")
    for index, row in enumerate(rows):
        colour = colours(index % colours.N)
        label = legend(row, keys)
        if row.train_curve:
            left.plot(*zip(*row.train_curve, strict=True), "-", color=colour, label=label, linewidth=1.2)
        if row.val_curve:
            right.plot(*zip(*row.val_curve, strict=True), "o-", color=colour, label=label, markersize=4)
    for axis, title, xlabel in ((left, "train loss", "optimizer step"), (right, "validation loss", "epoch")):
        axis.set_title(title)
        axis.set_xlabel(xlabel)
        axis.set_ylabel("loss")
        axis.grid(alpha=0.3)
        if axis.lines:
            axis.set_yscale("log")
            axis.legend(fontsize=8)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out)
    plt.close(figure)
    return figure


__all__ = ["RunRow", "differing_keys", "load_runs", "markdown", "plot_runs", "sort_runs", "table"]
