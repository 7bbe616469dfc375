"""Near-identical images: copies of one photo that a published dataset spreads over its splits (flipped, rotated by
90 degrees, cropped, rescaled, stretched, re-encoded, brightened), found in near-linear time.

A *fingerprint* is computed once per image file (at import, or when a variant is made) and stored on its sample:
the :data:`THUMB` x :data:`THUMB` grey thumbnail of the whole frame, squeezed to a square (a rescaled or stretched
copy has the same one; a flip or quarter turn of the image is the same flip or turn of it), high-passed to drop the
lighting and kept as int8 *detail*: weave, threads, defects, noise. Copies share that fine structure; distinct photos
of one fabric look alike in low-resolution appearance, but not in it.

Search has two stages:

1. **Candidates** (an index, no pairwise loop). The detail's column and row means are two 1-D *profiles* (fabric is
   woven along the image axes: warp and weft streaks are in them). Around the strongest local extremes (*anchors*)
   of each profile a window of :data:`WINDOW` samples is cut; an anchor follows the content, so a crop at any
   offset keeps it. Windows are cut at the image's own scale (queries, also reversed: flips) and magnified for
   crops keeping :data:`SHARES` of each side (index). Each query window's nearest index windows come from an
   inverted file over scikit-learn's k-means cells; an image pair is a candidate when windows of both its axes
   matched (the two axes of a flip/quarter turn), which also gives the transform: the flip or turn, the crop's
   share and offset.
2. **Verification** of candidates only: the pair is registered with that transform (refined to a fraction of a
   pixel by phase correlation) and accepted when the aligned overlap's detail, locally contrast-normalised so that
   one large defect cannot carry it, correlates at least :data:`MIN_CORRELATION`.

Recall per copy kind and the false-positive rate on distinct synthetic fabric: ``benchmarks/bench_similar.py`` and
``tests/test_similar.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: bump when the stored fingerprint changes meaning: stored ones of another version are recomputed
VERSION = 3
THUMB = 96
#: the stored fingerprint: THUMB*THUMB int8 detail values
LENGTH = THUMB * THUMB
#: anti-aliasing before the thumbnail is sampled (Gaussian, in thumbnail pixels)
ANTIALIAS = 0.8
#: high-pass of the stored detail (thumbnail pixels): the lighting goes, weave, threads and defects stay
DETAIL_SIGMA = 4.5
#: periodic texture (a weave the thumbnail resolves) removed: spectral peaks above PEAK x their neighbourhood's median
PEAK = 3.0
PEAK_NEIGHBOURHOOD = 7
#: low-pass before any comparison (copies are resampled differently), and the scale of the contrast normalisation
SMOOTH = 1.1
CONTRAST = 6.0
#: anchors: extremes of the profile smoothed at this scale; windows reach HALF of the frame to each side
ANCHOR_SIGMA = 2.5
HALF = 0.3
WINDOW = 32
#: crops searched for: share of each side kept (0.8 finds crops of 78-100%)
SHARES = (1.0, 0.95, 0.9, 0.85, 0.8)
#: anchors per profile a query uses; nearest index windows per query window, and their least similarity
QUERY_ANCHORS = 4
NEIGHBOURS = 5
MIN_WINDOW_SIMILARITY = 0.85
#: inverted file (see neighbours): index windows per cell, cells probed per query window, dimensions of the cells;
#: below EXHAUSTIVE_BELOW index windows the search is exhaustive
CELL_SIZE = 256
PROBES = 8
CELL_DIMENSIONS = 6
EXHAUSTIVE_BELOW = 20_000
#: verification: least correlation of the aligned overlap (see verify), least share of the query's frame overlapping
MIN_CORRELATION = 0.5
MIN_OVERLAP = 0.5

Fingerprint = np.ndarray


def fingerprint(path: str | Path) -> Fingerprint:
    """The stored fingerprint of an image file: int8 vector of :data:`LENGTH` (see the module docstring). The file is
    decoded at a reduced size (:func:`fabricdata.core.images.load_pixels` with ``min_side``).

    Raises:
        OSError, ValueError: the file cannot be decoded.
    """
    import cv2

    from fabricdata.core.images import load_pixels

    image = load_pixels(path, min_side=2 * THUMB)  # a JPEG comes decoded at 1/2 to 1/8 scale
    factor = min(image.size) // (2 * THUMB)
    if factor > 1:  # other formats: box averages first, the filter below has less to do
        image = image.reduce(factor)
    pixels = np.asarray(image.convert("L"), dtype=np.float32)
    # anti-aliasing well below the thumbnail's Nyquist: a weave near it would alias into a pattern that a crop of the
    # same photo, sampled on another grid, does not share
    sigma = (ANTIALIAS * pixels.shape[1] / THUMB, ANTIALIAS * pixels.shape[0] / THUMB)
    smooth = cv2.GaussianBlur(pixels, (0, 0), sigmaX=sigma[0], sigmaY=sigma[1], borderType=cv2.BORDER_REFLECT)
    return detail(cv2.resize(smooth, (THUMB, THUMB), interpolation=cv2.INTER_AREA))


def detail(grey: np.ndarray) -> Fingerprint:
    """(THUMB, THUMB) float grey thumbnail -> the stored int8 detail (+-4 standard deviations span the range)."""
    import cv2

    high = _aperiodic(grey - cv2.GaussianBlur(grey, (0, 0), DETAIL_SIGMA, borderType=cv2.BORDER_REFLECT))
    scale = 127.0 / max(4.0 * float(high.std()), 1e-3)
    return np.clip(np.round(high * scale), -127, 127).astype(np.int8).reshape(-1)


def _aperiodic(image: np.ndarray) -> np.ndarray:
    """``image`` without its periodic part: spectral peaks above :data:`PEAK` times the median of their row's and of
    their column's neighbourhood (whichever is higher: streaks along an axis are a line of the spectrum, not a peak)
    are cut down to that. A weave resolved in the thumbnail is the same in every photo of a fabric; its
    irregularities, defects and noise are what tell photos apart."""
    from numpy.lib.stride_tricks import sliding_window_view

    spectrum = np.fft.rfft2(image)
    magnitude = np.abs(spectrum)
    reach = PEAK_NEIGHBOURHOOD // 2
    down = np.pad(magnitude, ((reach, reach), (0, 0)), mode="wrap")  # rows of the half spectrum wrap around
    across = np.pad(magnitude, ((0, 0), (reach, reach)), mode="reflect")  # its columns end at 0 and Nyquist
    windows = (
        sliding_window_view(down, PEAK_NEIGHBOURHOOD, axis=0),
        sliding_window_view(across, PEAK_NEIGHBOURHOOD, axis=1),
    )
    background = np.maximum(*(np.partition(w, reach, axis=-1)[..., reach] for w in windows))  # medians
    kept = np.minimum(1.0, PEAK * background / np.maximum(magnitude, 1e-9))
    out: np.ndarray = np.fft.irfft2(spectrum * kept, s=image.shape).astype(np.float32)
    return out


def near_duplicate_pairs(
    prints: np.ndarray, consider: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
) -> list[tuple[int, int]]:
    """Index pairs ``(i, j)``, ``i < j``, of near-identical images among fingerprints ``prints`` (N, LENGTH).

    ``consider(i, j)`` (index arrays, ``i < j``) may keep only some candidate pairs before they are verified
    (validate: pairs in different splits).
    """
    import cv2
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    if len(prints) < 2:
        return []
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)  # many small images and matrix products: extra threads only spin
    try:
        with threadpool_limits(1):
            return _pairs(prints, consider)
    finally:
        cv2.setNumThreads(threads)


def _pairs(
    prints: np.ndarray, consider: Callable[[np.ndarray, np.ndarray], np.ndarray] | None
) -> list[tuple[int, int]]:
    found = _candidates(prints)
    first, second = np.minimum(found.query, found.match), np.maximum(found.query, found.match)
    order = np.lexsort((-found.score, second, first))  # each pair's candidates, best first (both directions)
    if consider is not None and order.size:
        order = order[consider(first[order], second[order])]
    involved = np.unique(np.concatenate([found.query[order], found.match[order]]))
    ready = dict(zip(involved.tolist(), prepared(prints[involved]), strict=True))
    pairs: set[tuple[int, int]] = set()
    for index in order:
        query, match = int(found.query[index]), int(found.match[index])
        pair = (min(query, match), max(query, match))
        if pair not in pairs and verify(ready[query], ready[match], found.transform[index]) >= MIN_CORRELATION:
            pairs.add(pair)
    return sorted(pairs)


def near_duplicate_groups(count: int, pairs: Sequence[tuple[int, int]]) -> list[list[int]]:
    """Connected components (of two or more images) of the near-duplicate graph on ``count`` images, each sorted,
    in order of their first member (scipy's ``connected_components``)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if not pairs:
        return []
    rows, cols = np.array(pairs).T
    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(count, count))
    _, labels = connected_components(graph, directed=False)
    members: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        members.setdefault(int(label), []).append(index)
    return sorted((m for m in members.values() if len(m) > 1), key=lambda m: m[0])


# --- verification -------------------------------------------------------------------------------------------------


def prepared(prints: np.ndarray) -> np.ndarray:
    """The detail as compared: (N, LENGTH) fingerprints -> (N, THUMB, THUMB) float32, low-passed, then divided by
    its local contrast (so that one large defect cannot carry a correlation)."""
    from scipy.ndimage import gaussian_filter

    grids = prints.reshape(-1, THUMB, THUMB).astype(np.float32)
    smooth = gaussian_filter(grids, (0, SMOOTH, SMOOTH), mode="reflect", truncate=3.0)
    energy = gaussian_filter(smooth * smooth, (0, CONTRAST, CONTRAST), mode="reflect", truncate=3.0)
    floor = 0.01 * energy.mean(axis=(1, 2), keepdims=True) + 1e-6
    out: np.ndarray = smooth / np.sqrt(energy + floor)
    return out


def verify(ours: np.ndarray, theirs: np.ndarray, transform: np.ndarray) -> float:
    """How well the :func:`prepared` detail ``ours`` agrees with ``theirs`` sampled where ``transform`` (2 x 3: our
    pixel -> their pixel) puts it, after a sub-pixel refinement by phase correlation: the lower of two correlations
    over the overlap, of the detail and of its 2-D part (row and column means removed: the streaks the candidate
    stage matched on are left out, so a pair it picked for them must also agree in what it did not look at).
    -1 when they overlap on less than :data:`MIN_OVERLAP` of our frame."""
    import cv2

    matrix = transform.astype(np.float64)
    warped, valid = _warp(theirs, matrix)
    if valid.mean() < MIN_OVERLAP:
        return -1.0
    (dx, dy), _ = cv2.phaseCorrelate(np.where(valid, ours, 0), np.where(valid, warped, 0))
    if max(abs(dx), abs(dy)) <= 2:  # the anchors put it within a pixel or two
        matrix[:, 2] += matrix[:, :2] @ np.array([dx, dy])
        warped, valid = _warp(theirs, matrix)
        if valid.mean() < MIN_OVERLAP:
            return -1.0
    rows, cols = np.flatnonzero(valid.any(axis=1)), np.flatnonzero(valid.any(axis=0))
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))  # the overlap is a rectangle
    a, b = ours[box], warped[box]
    return min(_correlation(a, b), _correlation(_two_d(a), _two_d(b)))


def _two_d(image: np.ndarray) -> np.ndarray:
    centred: np.ndarray = image - image.mean(axis=0, keepdims=True)
    out: np.ndarray = centred - centred.mean(axis=1, keepdims=True)
    return out


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (np.sqrt((a * a).sum() * (b * b).sum()) + 1e-9))


def _warp(image: np.ndarray, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``image`` sampled at ``matrix`` x (query pixel), and where that is inside it (3 pixels from the query's edge)."""
    import cv2

    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    warped = cv2.warpAffine(image, matrix, (THUMB, THUMB), flags=flags, borderValue=float("nan"))
    valid = np.isfinite(warped)
    edge = 3
    valid[:edge], valid[-edge:], valid[:, :edge], valid[:, -edge:] = False, False, False, False
    return np.nan_to_num(warped), valid


# --- candidates -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Windows:
    """Profile windows: vectors (M, WINDOW), and per window its image, axis (0: columns, 1: rows), share, anchor
    (position in the magnified profile) and direction (+1, or -1 when reversed)."""

    vectors: np.ndarray
    image: np.ndarray
    axis: np.ndarray
    share: np.ndarray
    anchor: np.ndarray
    direction: np.ndarray


@dataclass(frozen=True, slots=True)
class Candidates:
    """Candidate pairs: query and match image indices, the score (the worse axis' window similarity) and the
    transform (N, 2, 3) from query pixels to match pixels."""

    query: np.ndarray
    match: np.ndarray
    score: np.ndarray
    transform: np.ndarray


def profiles(prints: np.ndarray) -> np.ndarray:
    """(N, LENGTH) fingerprints -> (N, 2, THUMB) float32: the low-passed column means and row means of the detail."""
    from scipy.ndimage import gaussian_filter1d

    grids = prints.reshape(-1, THUMB, THUMB).astype(np.float32)
    means = np.stack([grids.mean(axis=1), grids.mean(axis=2)], axis=1)
    out: np.ndarray = gaussian_filter1d(means, SMOOTH, axis=2, mode="reflect")
    return out


def _windows(lines: np.ndarray, share: float, top: int | None) -> _Windows:
    """Windows around the anchors of every profile in ``lines`` (N, 2, THUMB), magnified for a crop keeping
    ``share`` of each side; ``top``: only the strongest anchors of each profile."""
    from scipy.ndimage import gaussian_filter1d

    rows = lines.reshape(-1, THUMB)
    length = round(THUMB / share)
    magnified = _sample(rows, np.repeat(((np.arange(length) + 0.5) * share - 0.5)[None], len(rows), axis=0))
    strength = np.abs(gaussian_filter1d(magnified, ANCHOR_SIGMA, axis=1, mode="reflect"))
    reach = HALF * THUMB
    inner = strength[:, 1:-1]
    peak = (inner > strength[:, :-2]) & (inner >= strength[:, 2:])
    centre = np.arange(1, length - 1)
    peak &= (centre >= reach) & (centre <= length - 1 - reach)
    row, at = np.nonzero(peak)
    at = at + 1
    if top is not None:
        order = np.lexsort((-strength[row, at], row))
        row, at = row[order], at[order]
        rank = np.arange(len(row)) - np.searchsorted(row, row)
        row, at = row[rank < top], at[rank < top]
    before, here, after = strength[row, at - 1], strength[row, at], strength[row, at + 1]
    curvature = before - 2 * here + after
    offset = np.clip(0.5 * (before - after) / np.where(curvature < 0, curvature, -1.0), -0.5, 0.5)
    anchor = at + offset
    steps = np.linspace(-reach, reach, WINDOW)
    vectors = _sample(magnified[row], anchor[:, None] + steps[None])
    vectors -= vectors.mean(axis=1, keepdims=True)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True) + 1e-9
    count = len(row)
    return _Windows(
        vectors.astype(np.float32),
        row // 2,
        row % 2,
        np.full(count, share),
        anchor,
        np.ones(count),
    )


def _sample(rows: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Linear interpolation of each of ``rows`` (R, n) at ``positions`` (R, m) (clamped to the ends)."""
    n = rows.shape[1]
    left = np.clip(np.floor(positions).astype(np.int64), 0, n - 2)
    weight = np.clip(positions - left, 0.0, 1.0)
    pick = np.arange(len(rows))[:, None]
    out: np.ndarray = rows[pick, left] * (1 - weight) + rows[pick, left + 1] * weight
    return out


def _join(parts: list[_Windows]) -> _Windows:
    fields = zip(*((w.vectors, w.image, w.axis, w.share, w.anchor, w.direction) for w in parts), strict=True)
    return _Windows(*(np.concatenate(field) for field in fields))


def _queries(lines: np.ndarray) -> _Windows:
    """The strongest anchors' windows of each profile at the image's own scale, forwards and reversed."""
    ahead = _windows(lines, 1.0, QUERY_ANCHORS)
    back = _Windows(ahead.vectors[:, ::-1].copy(), ahead.image, ahead.axis, ahead.share, ahead.anchor, -ahead.direction)
    return _join([ahead, back])


def _index(lines: np.ndarray) -> _Windows:
    return _join([_windows(lines, share, None) for share in SHARES])


def _candidates(prints: np.ndarray) -> Candidates:
    """Image pairs whose profile windows matched on both axes, with the transform the two matches imply."""
    lines = profiles(prints)
    queries, index = _queries(lines), _index(lines)
    asked, found, similarity = neighbours(
        index.vectors, queries.vectors, NEIGHBOURS, MIN_WINDOW_SIMILARITY, index.image
    )
    other = queries.image[asked] != index.image[found]
    asked, found, similarity = asked[other], found[other], similarity[other]
    swap = (queries.axis[asked] != index.axis[found]).astype(np.int64)
    key = (queries.image[asked].astype(np.int64) * len(prints) + index.image[found]) * 2 + swap
    best = [_best_by_key(key, similarity, queries.axis[asked] == axis) for axis in (0, 1)]
    shared, at_x, at_y = np.intersect1d(key[best[0]], key[best[1]], assume_unique=True, return_indices=True)
    hit_x, hit_y = best[0][at_x], best[1][at_y]
    maps = [_axis_map(queries, index, asked[hit], found[hit]) for hit in (hit_x, hit_y)]
    return Candidates(
        query=(shared // 2 // len(prints)).astype(np.int64),
        match=index.image[found[hit_x]].astype(np.int64),
        score=np.minimum(similarity[hit_x], similarity[hit_y]),
        transform=_transforms(maps[0], maps[1], (shared % 2).astype(bool)),
    )


def _best_by_key(key: np.ndarray, similarity: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """Indices (into ``key``) of the most similar hit per key among ``chosen`` hits."""
    where = np.flatnonzero(chosen)
    order = where[np.lexsort((-similarity[where], key[where]))]
    first = np.ones(len(order), dtype=bool)
    first[1:] = key[order][1:] != key[order][:-1]
    return order[first]


def _axis_map(queries: _Windows, index: _Windows, asked: np.ndarray, found: np.ndarray) -> tuple[np.ndarray, ...]:
    """For matched windows: the match's axis, and scale and offset of ``match position = scale * query position +
    offset`` along it (thumbnail pixels)."""
    share, sign = index.share[found], queries.direction[asked]
    scale = share * sign
    offset = (index.anchor[found] - sign * queries.anchor[asked] + 0.5) * share - 0.5
    return index.axis[found], scale, offset


def _transforms(along_x: tuple[np.ndarray, ...], along_y: tuple[np.ndarray, ...], swap: np.ndarray) -> np.ndarray:
    """(N, 2, 3) affine maps from query pixels to match pixels (x then y) from the two axes' maps."""
    out = np.zeros((len(swap), 2, 3))
    _, scale_x, offset_x = along_x
    _, scale_y, offset_y = along_y
    straight = ~swap
    out[straight, 0, 0], out[straight, 0, 2] = scale_x[straight], offset_x[straight]
    out[straight, 1, 1], out[straight, 1, 2] = scale_y[straight], offset_y[straight]
    out[swap, 1, 0], out[swap, 1, 2] = scale_x[swap], offset_x[swap]
    out[swap, 0, 1], out[swap, 0, 2] = scale_y[swap], offset_y[swap]
    return out


# --- neighbour search ---------------------------------------------------------------------------------------------


def neighbours(
    index: np.ndarray, queries: np.ndarray, count: int, floor: float, owner: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each row of ``queries`` (Q, D) the most similar row of ``index`` (M, D) of each of ``count`` owners
    (``owner``: M labels), unit vectors, those at least ``floor`` similar: (query, index row, similarity) arrays.

    A large index is an inverted file: its cells are the Voronoi regions of a sample of its rows in a PCA projection
    to :data:`CELL_DIMENSIONS` (scikit-learn), found through a k-d tree, about :data:`CELL_SIZE` rows each; a query
    scans its :data:`PROBES` nearest cells. Time grows as n log n.
    """
    if len(index) < EXHAUSTIVE_BELOW:
        return _top(*_scan(queries, index, np.arange(len(queries)), np.arange(len(index)), floor, count), count, owner)
    cells, home, probed = _cells(index, queries)
    by_cell = np.argsort(home, kind="stable")
    bounds = np.searchsorted(home[by_cell], np.arange(cells + 1))
    asking = np.repeat(np.arange(len(queries)), PROBES)
    order = np.argsort(probed.reshape(-1), kind="stable")
    ask_bounds = np.searchsorted(probed.reshape(-1)[order], np.arange(cells + 1))
    parts = []
    for cell in range(cells):
        members = by_cell[bounds[cell] : bounds[cell + 1]]
        askers = asking[order[ask_bounds[cell] : ask_bounds[cell + 1]]]
        if len(members) and len(askers):
            parts.append(_scan(queries, index, askers, members, floor, count))
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0, dtype=np.float32)
    asked, found, similarity = (np.concatenate(part) for part in zip(*parts, strict=True))
    return _top(asked, found, similarity, count, owner)


def _cells(index: np.ndarray, queries: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """Number of cells, the cell of each index row, the :data:`PROBES` cells of each query."""
    from sklearn.decomposition import PCA
    from sklearn.neighbors import KDTree

    rng = np.random.default_rng(0)
    cells = max(16, len(index) // CELL_SIZE)
    projection = PCA(CELL_DIMENSIONS, random_state=0).fit(index[rng.choice(len(index), 20_000, replace=False)])
    tree = KDTree(projection.transform(index[rng.choice(len(index), cells, replace=False)]))
    home = tree.query(projection.transform(index), k=1, return_distance=False)[:, 0]
    probed = tree.query(projection.transform(queries), k=PROBES, return_distance=False)
    return cells, home, probed


def _scan(
    queries: np.ndarray, index: np.ndarray, askers: np.ndarray, members: np.ndarray, floor: float, count: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(query, index row, similarity) of the pairs of ``askers`` and ``members`` at least ``floor`` similar, at most
    4 x ``count`` per asker (the most similar: an owner has several windows)."""
    keep = 4 * count
    found = []
    for start in range(0, len(askers), 4096):
        block = askers[start : start + 4096]
        similarity = queries[block] @ index[members].T
        hits = similarity >= floor
        crowded = np.flatnonzero(hits.sum(axis=1) > keep)
        if crowded.size:
            least = -np.partition(-similarity[crowded], keep - 1, axis=1)[:, keep - 1]
            hits[crowded] &= similarity[crowded] >= least[:, None]
        row, col = np.nonzero(hits)
        found.append((block[row], members[col], similarity[row, col]))
    if not found:  # no windows at all (plain frames have no anchors)
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0, dtype=np.float32)
    asked, hit, similarity = (np.concatenate(part) for part in zip(*found, strict=True))
    return asked, hit, similarity


def _top(
    asked: np.ndarray, found: np.ndarray, similarity: np.ndarray, count: int, owner: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``count`` most similar hits per query, one per owner (the best). One sort of a packed int64 key (query,
    owner, similarity to 1/32767) instead of a three-key lexsort: a third of the search's time at 32k images."""
    rank = np.round((1.0 - np.clip(similarity, -1.0, 1.0)) * 32767).astype(np.int64)  # 0: the most similar
    query = asked.astype(np.int64)
    if len(asked) and (query.max() >= 1 << 27 or owner.max() >= 1 << 20):
        raise ValueError(f"near-duplicate search: more than {1 << 20} images or {1 << 27} query windows")
    order = np.argsort((query << 36) | (owner[found].astype(np.int64) << 16) | rank)
    asked, found, similarity, rank = asked[order], found[order], similarity[order], rank[order]
    first = np.ones(len(asked), dtype=bool)
    first[1:] = (asked[1:] != asked[:-1]) | (owner[found[1:]] != owner[found[:-1]])
    asked, found, similarity, rank = asked[first], found[first], similarity[first], rank[first]
    order = np.argsort((asked.astype(np.int64) << 16) | rank, kind="stable")
    asked, found, similarity = asked[order], found[order], similarity[order]
    keep = np.arange(len(asked)) - np.searchsorted(asked, asked) < count
    return asked[keep], found[keep], similarity[keep]
