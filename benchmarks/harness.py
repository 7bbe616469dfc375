"""A tiny benchmark harness: best-of-N timings, each figure next to its baseline, ratios in Markdown."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


@dataclass(frozen=True)
class Figure:
    """One measurement and the baseline it is compared with (both in items per second unless told)."""

    section: str
    what: str
    value: float
    baseline_what: str
    baseline: float
    unit: str = "items/s"
    higher_is_better: bool = True
    note: str = ""

    @property
    def ratio(self) -> float:
        if self.baseline == 0 or self.value == 0:
            return float("nan")
        return self.value / self.baseline if self.higher_is_better else self.baseline / self.value


def best_rate(work: Callable[[], int], repeats: int = 3) -> float:
    """Items per second of ``work`` (which returns how many items it did), best of ``repeats`` runs."""
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        items = work()
        elapsed = time.perf_counter() - start
        best = max(best, items / elapsed)
    return best


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with Path("/proc/cpuinfo").open(encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    packages = []
    for name in ("torch", "transformers", "peft", "fiftyone", "albumentations", "lxml", "numpy"):
        try:
            packages.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            continue
    return (
        f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()} "
        f"{platform.release()}; " + ", ".join(packages)
    )


def render(figures: list[Figure]) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"Machine: {machine()}",
        "",
        "Each figure is measured in the same run as its baseline; compare ratios, not absolute numbers "
        "(these machines are noisy). Regenerate with `make bench`.",
    ]
    section = None
    for fig in figures:
        if fig.section != section:
            section = fig.section
            lines += [
                "",
                f"## {section}",
                "",
                "| measured | value | baseline | value | ratio |",
                "|---|---|---|---|---|",
            ]
        better = "higher" if fig.higher_is_better else "lower"
        note = f" - {fig.note}" if fig.note else ""
        lines.append(
            f"| {fig.what} | {fig.value:,.1f} {fig.unit} "
            f"| {fig.baseline_what} | {fig.baseline:,.1f} {fig.unit} "
            f"| **{fig.ratio:.2f}x** ({better} is better){note} |"
        )
    return "\n".join(lines) + "\n"
