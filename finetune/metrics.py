"""metrics.csv (one row per optimizer step and per validation) and loss_curve.png."""

from __future__ import annotations

import csv
from pathlib import Path

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
