"""metrics.csv (one row per optimizer step and per validation), loss_curve.png and summary.json."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from fabricdata.core.contracts import RunFolder
from fabricdata.core.fileio import atomic_write_text

COLUMNS = ("step", "epoch", "split", "loss", "lr", "samples_per_s")


class MetricsLog:
    """Appends rows to ``metrics.csv``; on resume, rows after the checkpoint's step are dropped first."""

    def __init__(self, path: Path, resume_step: int | None = None) -> None:
        self.path = path
        rows = self.read() if resume_step is not None and path.is_file() else []
        kept = [row for row in rows if int(row["step"]) <= (resume_step or 0)]
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(kept)

    def add(self, step: int, epoch: int, split: str, loss: float, lr: float, samples_per_s: float) -> None:
        with self.path.open("a", newline="", encoding="utf-8") as handle:
            csv.writer(handle).writerow([step, epoch, split, f"{loss:.6f}", f"{lr:.3e}", f"{samples_per_s:.2f}"])

    def read(self) -> list[dict[str, str]]:
        return _rows(self.path)


def plot(metrics: Path, out: Path) -> Path:
    """Training loss per step and validation loss per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = _rows(metrics)
    figure, axis = plt.subplots(figsize=(7, 4), dpi=120)
    for split, style in (("train", "-"), ("val", "o-")):
        points = [(int(r["step"]), float(r["loss"])) for r in rows if r["split"] == split]
        if points:
            axis.plot(*zip(*points, strict=True), style, label=split, markersize=4)
    axis.set_xlabel("optimizer step")
    axis.set_ylabel("loss")
    axis.set_yscale("log")
    axis.grid(alpha=0.3)
    axis.legend()
    axis.set_title("fabricdata fine-tune")
    figure.tight_layout()
    figure.savefig(out)
    plt.close(figure)
    return out


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@dataclass(slots=True)
class RunSummary:
    out: Path
    global_step: int
    epochs_done: int
    train_loss: float
    #: the lowest validation loss of the run (None without a validation split)
    best_val_loss: float | None
    stopped_early: bool
    samples_per_s: float
    run_id: str = ""


def write_summary(summary: RunSummary, seconds: float) -> None:
    """``summary.json``: whether the run finished, and its figures (read by sweeps and ``fabricdata runs``)."""
    data = {
        "finished": not summary.stopped_early,
        "global_step": summary.global_step,
        "epochs_done": summary.epochs_done,
        "train_loss": summary.train_loss,
        "best_val_loss": summary.best_val_loss,
        "samples_per_s": summary.samples_per_s,
        "train_seconds": seconds,
        "run_id": summary.run_id,
    }
    atomic_write_text(RunFolder(summary.out).summary, json.dumps(data, indent=1) + "\n")
