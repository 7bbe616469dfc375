"""Run every benchmark module and write benchmarks/RESULTS.md."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from benchmarks import (
    bench_assist,
    bench_audit,
    bench_augment,
    bench_export,
    bench_finetune,
    bench_foundation,
    bench_review,
    bench_similar,
    bench_store,
    bench_tiles,
    bench_versions,
)
from benchmarks.harness import Figure, render

MODULES = [
    bench_foundation,
    bench_store,
    bench_augment,
    bench_export,
    bench_finetune,
    bench_review,
    bench_audit,
    bench_similar,
    bench_assist,
    bench_tiles,
    bench_versions,
]


def main() -> int:
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
    figures: list[Figure] = []
    for module in MODULES:
        print(f"bench: {module.__name__}", file=sys.stderr)
        figures += module.run()
    text = render(figures)
    out = Path(__file__).parent / "RESULTS.md"
    out.write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
