"""Fingerprints stored on samples, computed once per image file, and the near-duplicate groups they give.

Import computes the fingerprint of every new or changed image (augment and balance of every variant they make);
``split``, ``validate`` and ``audit`` read them back. Each is keyed by the file it came from (``VERSION:size:
mtime_ns:sha256``): a file whose size and modification time are unchanged is trusted, one whose bytes changed is
fingerprinted again, one that was only touched gets its key renewed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fabricdata.core import similar
from fabricdata.core.fileio import sha256_file
from fabricdata.store.dataset import F_FINGERPRINT, F_FINGERPRINT_KEY

Mapper = Callable[[Callable[[str], Any], Iterable[str]], Iterator[Any]]
#: threads that fingerprint new files (import, split, validate)
THREADS = min(4, os.cpu_count() or 1)


def file_key(path: str, digest: str | None = None) -> str:
    """``VERSION:size:mtime_ns:sha256`` of an image file (``digest``: its sha256 when already known).

    Raises:
        OSError: the file cannot be read.
    """
    stat = Path(path).stat()
    return f"{similar.VERSION}:{stat.st_size}:{stat.st_mtime_ns}:{digest or sha256_file(path)}"


def key_digest(key: str | None) -> str | None:
    """The sha256 part of a stored key (None for none)."""
    return key.rsplit(":", 1)[-1] if key else None


def compute(path: str) -> tuple[str, np.ndarray] | None:
    """The key and fingerprint of one image file; None when it cannot be read or decoded (validate reports it).
    Runs in worker processes too."""
    try:
        key = file_key(path)
        return key, similar.fingerprint(path)
    except (OSError, ValueError):
        return None


def _fresh(path: str, key: str | None) -> bool | None:
    """True: the stored key still describes the file (version, size, mtime); None: the file is gone."""
    if not key:
        return False
    try:
        stat = Path(path).stat()
    except OSError:
        return None
    return key.startswith(f"{similar.VERSION}:{stat.st_size}:{stat.st_mtime_ns}:")


@dataclass(slots=True)
class Refreshed:
    """What :func:`refresh_fingerprints` did."""

    computed: int = 0
    renewed: int = 0
    kept: int = 0
    unreadable: int = 0


def refresh_fingerprints(
    samples: Any, mapper: Mapper | None = None, progress: Callable[[int], None] | None = None
) -> Refreshed:
    """Make the stored fingerprint of every sample of ``samples`` describe its file. New ones are computed in
    :data:`THREADS` threads (decoding and filtering release the GIL), or by ``mapper`` (``map`` of a pool).
    ``progress`` advances once per sample."""
    ids, paths, keys = samples.values(["id", "filepath", F_FINGERPRINT_KEY])
    done = Refreshed()
    stale: list[tuple[str, str]] = []
    renewed: dict[str, str] = {}
    for sid, path, key in zip(ids, paths, keys, strict=True):
        state = _fresh(path, key)
        if state or state is None:
            done.kept += bool(state)
            done.unreadable += state is None
            if progress:
                progress(1)
            continue
        digest = key_digest(key)
        if key and key.startswith(f"{similar.VERSION}:") and _same_bytes(path, digest):
            renewed[sid] = file_key(path, digest)
            if progress:
                progress(1)
            continue
        stale.append((sid, path))
    results = (mapper or _threaded)(compute, [path for _, path in stale])
    computed_keys: dict[str, str] = {}
    prints: dict[str, np.ndarray] = {}
    for (sid, _), result in zip(stale, results, strict=True):
        if result is None:
            done.unreadable += 1
        else:
            computed_keys[sid], prints[sid] = result
        if progress:
            progress(1)
    _store(samples, prints, {**renewed, **computed_keys})
    done.computed, done.renewed = len(prints), len(renewed)
    return done


def _threaded(function: Callable[[str], Any], paths: Iterable[str]) -> Iterator[Any]:
    """``map`` in :data:`THREADS` threads (plain ``map`` for a few files)."""
    items = list(paths)
    if len(items) < 2 * THREADS or THREADS < 2:
        return map(function, items)
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        return iter(list(pool.map(function, items)))


def _same_bytes(path: str, digest: str | None) -> bool:
    try:
        return digest is not None and sha256_file(path) == digest
    except OSError:
        return False


def _store(samples: Any, prints: dict[str, np.ndarray], keys: dict[str, str]) -> None:
    if prints:
        samples.set_values(F_FINGERPRINT, prints, key_field="id")
    if keys:
        samples.set_values(F_FINGERPRINT_KEY, keys, key_field="id")


def read_fingerprints(samples: Any) -> tuple[list[str], np.ndarray]:
    """Ids and stored fingerprints (N, LENGTH) of the samples of ``samples`` that have one of this version."""
    ids, prints, _ = _stored(samples)
    return ids, prints


def _stored(samples: Any) -> tuple[list[str], np.ndarray, list[str]]:
    """:func:`read_fingerprints` and the keys those fingerprints were computed from."""
    ids, prints, keys = samples.values(["id", F_FINGERPRINT, F_FINGERPRINT_KEY])
    kept = [
        (sid, fp, key)
        for sid, fp, key in zip(ids, prints, keys, strict=True)
        if fp is not None and key and key.startswith(f"{similar.VERSION}:") and len(fp) == similar.LENGTH
    ]
    if not kept:
        return [], np.zeros((0, similar.LENGTH), dtype=np.int8), []
    stacked = np.stack([np.asarray(fp, dtype=np.int8) for _, fp, _ in kept])
    return [sid for sid, _, _ in kept], stacked, [key for _, _, key in kept]


def near_duplicate_pairs_of(samples: Any, consider: Callable[[str, str], bool] | None = None) -> list[tuple[str, str]]:
    """Pairs of sample ids of near-identical images among ``samples`` (stored fingerprints; see
    :func:`refresh_fingerprints`). ``consider(a, b)`` keeps only some pairs."""
    ids, prints = read_fingerprints(samples)

    def wanted(first: np.ndarray, second: np.ndarray) -> np.ndarray:
        if consider is None:
            return np.ones(len(first), dtype=bool)
        return np.array([consider(ids[a], ids[b]) for a, b in zip(first, second, strict=True)], dtype=bool)

    return [(ids[a], ids[b]) for a, b in similar.near_duplicate_pairs(prints, wanted)]


def near_duplicate_groups(samples: Any) -> list[list[str]]:
    """The near-duplicate groups of a collection: connected components (two or more samples each) of the graph
    whose edges are near-identical images or byte-identical files, as sorted sample ids. ``split`` keeps each group
    in one split; ``audit`` keeps each in one fold. Reads stored fingerprints (see :func:`groups_of_samples`)."""
    ids, prints, keys = _stored(samples)
    pairs = similar.near_duplicate_pairs(prints) + _identical_pairs(keys)
    return [sorted(ids[i] for i in group) for group in similar.near_duplicate_groups(len(ids), pairs)]


def groups_of_samples(
    dataset: Any, sample_ids: Iterable[str], progress: Callable[[int], None] | None = None
) -> list[list[str]]:
    """:func:`near_duplicate_groups` of these samples of ``dataset``, their missing or stale fingerprints computed
    first (``progress`` advances once per sample checked)."""
    view = dataset.select(list(sample_ids))
    refresh_fingerprints(view, progress=progress)
    return near_duplicate_groups(view)


def _identical_pairs(keys: list[str]) -> list[tuple[int, int]]:
    """Pairs (indices into ``keys``) of byte-identical files (one sha256 in their keys): copies even where the
    fingerprint has no detail to compare (a plain one-colour frame)."""
    first: dict[str | None, int] = {}
    pairs = [(first.setdefault(key_digest(key), index), index) for index, key in enumerate(keys)]
    return [(a, b) for a, b in pairs if a != b]
