"""Near-duplicate figures: the search at 2k, 8k and 32k distinct synthetic fabric images (fingerprints precomputed),
with what it found there; copies found among 32k; the fingerprint's cost per image at import, beside the import's
own; and `split` of 32k stored images.

The images (512x384, ``fabricdata synth``) are generated once into the system temp folder and reused (32k take
several minutes on 2 cores); their fingerprints are cached there per fingerprint version. Run alone with
``python -m benchmarks.bench_similar``.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness import Figure

SIZES = (2000, 8000, 32000)
SEED = 2024
WIDTH, HEIGHT = 512, 384
SECTION = "Near-duplicates"


def synthetic_folder(count: int = max(SIZES)) -> Path:
    """``count`` distinct synthetic fabric images (VOC folder), generated once and reused."""
    from fabricdata.prepare.synth import SynthConfig, generate

    folder = Path(tempfile.gettempdir()) / "fabricdata-bench" / f"synth-{WIDTH}x{HEIGHT}-s{SEED}-{count}"
    done = folder / ".complete"
    if not done.exists():
        generate(SynthConfig(images=count, seed=SEED, width=WIDTH, height=HEIGHT, prefix="fab"), folder, workers=2)
        done.touch()
    return folder


def synthetic_prints(count: int = max(SIZES)) -> np.ndarray:
    """Fingerprints (count, LENGTH) of :func:`synthetic_folder`'s images, computed once per fingerprint version."""
    from fabricdata.core import similar
    from fabricdata.prepare.workers import process_pool

    folder = synthetic_folder(count)
    cache = folder / f"prints-v{similar.VERSION}.npy"
    if cache.exists():
        return np.load(cache)
    paths = sorted(folder.glob("*.jpg"))
    with process_pool(2) as pool:
        prints = np.stack(list(pool.map(similar.fingerprint, paths, chunksize=256)))
    np.save(cache, prints)
    return prints


def _timed(work: Any) -> tuple[Any, float, float]:
    """``work()``'s result, wall seconds and CPU seconds of this process."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = work()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def bench_search() -> list[Figure]:
    """The search (candidates + verification) at each size, images/s, beside the same candidate stage searched
    exhaustively (no inverted file) at the smallest size; the largest group each size forms."""
    from fabricdata.core import similar

    prints = synthetic_prints()
    figures, first = [], 0.0
    for size in SIZES:
        pairs, wall, cpu = _timed(lambda size=size: similar.near_duplicate_pairs(prints[:size]))
        largest = max((len(g) for g in similar.near_duplicate_groups(size, pairs)), default=1)
        note = f"{wall:.1f} s ({cpu:.1f} s CPU); {len(pairs)} pairs found, largest group {largest}"
        if size == SIZES[0]:
            first = size / wall
            baseline, what = _exhaustive(prints[:size]), f"the same search without the index, {size} images"
        else:
            growth = size * np.log(size) / (SIZES[0] * np.log(SIZES[0]))
            baseline, what = first, f"the search, {SIZES[0]} images"
            note += (
                f"; time grew {first * wall / SIZES[0]:.1f}x for {size / SIZES[0]:.0f}x images (n log n: {growth:.1f}x)"
            )
        figures.append(
            Figure(SECTION, f"near-duplicate search, {size} images", size / wall, what, baseline, "images/s", note=note)
        )
    return figures


def _exhaustive(prints: np.ndarray) -> float:
    """Images/s of the search with every index window compared with every query window."""
    from fabricdata.core import similar

    kept = similar.EXHAUSTIVE_BELOW
    similar.EXHAUSTIVE_BELOW = 1 << 62
    try:
        _, wall, _ = _timed(lambda: similar.near_duplicate_pairs(prints))
    finally:
        similar.EXHAUSTIVE_BELOW = kept
    return len(prints) / wall


def bench_recall(sources: int = 20) -> list[Figure]:
    """Copies of ``sources`` photos (every kind of tests/test_similar.py) among the 32k: the share grouped with their
    source, beside the same copies among the 2k."""
    from PIL import Image

    from fabricdata.core import similar
    from tests.test_similar import COPIES

    prints, folder = synthetic_prints(), synthetic_folder()
    work = Path(tempfile.mkdtemp(prefix="fabricdata-bench-copies-"))
    copies, origin = [], []
    for index in range(sources):
        with Image.open(folder / f"fab_{index:05d}.jpg") as opened:
            image = opened.convert("RGB")
        for seed, make in enumerate(COPIES.values()):
            make(image, 100 * index + seed).save(work / "copy.jpg", quality=90)
            copies.append(similar.fingerprint(work / "copy.jpg"))
            origin.append(index)
    found = [_grouped(prints[:size], np.stack(copies), origin) for size in (SIZES[0], SIZES[-1])]
    what = f"{len(copies)} copies ({len(COPIES)} kinds of {sources} photos) grouped with their photo"
    return [Figure(SECTION, f"{what}, among {SIZES[-1]} images", found[1], f"the same among {SIZES[0]}", found[0], "%")]


def _grouped(prints: np.ndarray, copies: np.ndarray, origin: list[int]) -> float:
    from fabricdata.core import similar

    every = np.concatenate([prints, copies])
    label = np.arange(len(every))
    for group in similar.near_duplicate_groups(len(every), similar.near_duplicate_pairs(every)):
        label[group] = group[0]
    return 100.0 * float(np.mean([label[len(prints) + i] == label[o] for i, o in enumerate(origin)]))


def bench_fingerprint(images: int = 300) -> list[Figure]:
    """Per-image cost of the fingerprint (reduced decode) beside the fingerprint before this version (full decode
    with load_rgb, as the first stored fingerprint did); import per image with and without fingerprinting."""
    from fabricdata.core import similar
    from fabricdata.prepare.synth import SynthConfig, generate

    figures = []
    for width, height in ((1024, 768), (512, 384)):
        folder = generate(SynthConfig(images=images, width=width, height=height), tempfile.mkdtemp(), workers=2)
        paths = sorted(Path(folder).glob("*.jpg"))
        ours = min(_timed(lambda paths=paths: [similar.fingerprint(p) for p in paths])[1] for _ in range(2))
        before = min(_timed(lambda paths=paths: [_full_decode_thumbnail(p) for p in paths])[1] for _ in range(2))
        figures.append(
            Figure(
                SECTION,
                f"fingerprint per image, {width}x{height} JPEG (reduced decode, 96x96 detail)",
                ours / len(paths) * 1000,
                "full decode (load_rgb) + 64x64 thumbnail, the fingerprint before",
                before / len(paths) * 1000,
                unit="ms",
                higher_is_better=False,
                note="one thread, best of 2",
            )
        )
        figures.append(_import_cost(folder, f"{width}x{height}"))
    return figures


def _full_decode_thumbnail(path: Path) -> np.ndarray:
    from PIL import Image

    from fabricdata.core.images import load_rgb

    rgb = load_rgb(path).resize((64, 64), Image.Resampling.LANCZOS, reducing_gap=2.0)
    return np.asarray(rgb.convert("L"))


def _import_cost(folder: Path, size: str) -> Figure:
    """ms per image of `import` with its fingerprint hook (threads) and with the hook switched off, best of 2."""
    from benchmarks.bench_store import isolated_database

    isolated_database()
    import fiftyone as fo

    from fabricdata.store import importer

    hook = importer._fingerprint
    times: dict[str, float] = {}
    for label, replacement in [("warm-up", hook), ("without", _no_fingerprints), ("with", hook)] * 2:
        importer._fingerprint = replacement  # type: ignore[assignment]
        try:
            name = f"fp-{uuid.uuid4().hex[:6]}"
            report, wall, _ = _timed(lambda name=name: importer.import_folder(folder, name))
            times[label] = min(times.get(label, np.inf), wall / report.added * 1000)
            fo.load_dataset(name).delete()
        finally:
            importer._fingerprint = hook
    return Figure(
        SECTION,
        f"import per image, {size} JPEG, fingerprints computed ({os.cpu_count()} cores, threads)",
        times["with"],
        "import per image, fingerprint hook switched off",
        times["without"],
        unit="ms",
        higher_is_better=False,
        note=f"{len(list(folder.glob('*.jpg')))} images, best of 2",
    )


def _no_fingerprints(dataset: Any, root: Path) -> None:
    return None


def bench_split(count: int = max(SIZES)) -> list[Figure]:
    """`split` of ``count`` imported images (fingerprints stored at import), against the issue's 3 minutes."""
    from benchmarks.bench_store import isolated_database

    isolated_database()
    import fiftyone as fo

    from fabricdata.prepare.split import split_dataset
    from fabricdata.store.importer import import_folder

    name = f"split-{uuid.uuid4().hex[:6]}"
    import_folder(synthetic_folder(count), name)
    report, wall, cpu = _timed(lambda: split_dataset(name, (0.8, 0.1, 0.1), 0, True, 10))
    fo.load_dataset(name).delete()
    note = f"{cpu:.0f} s CPU in this process; {report.near_duplicate_groups} near-duplicate groups"
    return [
        Figure(
            SECTION,
            f"split --reshuffle of {count} stored images",
            wall,
            "the bound (3 minutes)",
            180.0,
            "s",
            False,
            note,
        )
    ]


def run() -> list[Figure]:
    return bench_fingerprint() + bench_search() + bench_recall() + bench_split()


if __name__ == "__main__":
    from benchmarks.harness import render

    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
    print(render(run()))
