"""Near-duplicate figures: the index search at 2k, 8k and 32k images (fingerprints precomputed) beside an
exhaustive all-pairs comparison of the same views, and the fingerprint's cost per image at import."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.harness import Figure


def _fingerprints(count: int, seed: int = 0) -> np.ndarray:
    """``count`` distinct stand-in fingerprints: smooth random grey fields (fabric-like low-frequency structure) and
    random mean colours."""
    import cv2

    from fabricdata.core import similar

    rng = np.random.default_rng(seed)
    out = np.empty((count, similar.LENGTH), dtype=np.uint8)
    for i in range(count):
        field = cv2.GaussianBlur(rng.normal(128, 40, (similar.THUMB, similar.THUMB)).astype(np.float32), (0, 0), 1.5)
        out[i, : similar.THUMB**2] = np.clip(field, 0, 255).reshape(-1)
        out[i, similar.THUMB**2 :] = rng.integers(40, 220, 3)
    return out


def _exhaustive(prints: np.ndarray) -> int:
    """All pairs (frame view against every view of every other image): the quadratic baseline."""
    from fabricdata.core import similar

    vectors = similar.views(prints)
    flat = vectors.reshape(len(prints), -1, vectors.shape[-1])
    found = 0
    for start in range(0, len(prints), 256):
        block = np.einsum("qd,nvd->qnv", vectors[start : start + 256, 0], flat).max(axis=2)
        found += int((block >= similar.MIN_SIMILARITY).sum())
    return found


def bench_search(sizes: tuple[int, ...] = (2000, 8000, 32000)) -> list[Figure]:
    from fabricdata.core import similar

    figures = []
    first_rate = 0.0
    for size in sizes:
        prints = _fingerprints(size)
        start = time.perf_counter()
        similar.near_duplicate_pairs(prints)
        elapsed = time.perf_counter() - start
        if size == sizes[0]:
            first_rate = size / elapsed
            start = time.perf_counter()
            _exhaustive(prints)
            baseline = size / (time.perf_counter() - start)
            what, note = f"exhaustive all pairs, {size} images", "same views, numpy, O(n^2)"
        else:
            baseline, what = first_rate, f"index search, {sizes[0]} images"
            note = f"n log n would be {np.log(sizes[0]) / np.log(size):.2f}x; {elapsed:.1f} s"
        figures.append(
            Figure(
                "Near-duplicates",
                f"index search (views + k-d tree + check), {size} images",
                size / elapsed,
                what,
                baseline,
                unit="images/s",
                note=note,
            )
        )
    return figures


def bench_fingerprint(images: int = 60) -> list[Figure]:
    """Per-image cost of the fingerprint at import, beside the header read import already does."""
    from fabricdata.core import similar
    from fabricdata.core.images import image_info
    from fabricdata.prepare.synth import SynthConfig, generate

    figures = []
    for width, height in ((512, 512), (1024, 768)):
        folder = generate(SynthConfig(images=images, width=width, height=height), tempfile.mkdtemp(), workers=2)
        paths = sorted(Path(folder).glob("*.jpg"))
        start = time.perf_counter()
        for path in paths:
            similar.fingerprint(path)
        ours = (time.perf_counter() - start) / len(paths) * 1000
        start = time.perf_counter()
        for path in paths:
            image_info(path)
        header = (time.perf_counter() - start) / len(paths) * 1000
        figures.append(
            Figure(
                "Near-duplicates",
                f"fingerprint per image at import, {width}x{height} JPEG (load_rgb decode + thumbnail)",
                ours,
                "image header read (what import does per image anyway)",
                header,
                unit="ms",
                higher_is_better=False,
                note=f"{os.cpu_count()} cores, one process",
            )
        )
    return figures


def run() -> list[Figure]:
    return bench_fingerprint() + bench_search()
