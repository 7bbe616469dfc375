"""Near-identical images: copies of one photo that a published dataset spreads over its splits (flipped, rotated by
90 degrees, cropped, rescaled, re-encoded, brightened), found through a neighbour index instead of pairwise loops.

A *fingerprint* is computed once per image file (at import, or when a variant is made) and stored on its sample:
the 64x64 grey thumbnail of the whole frame, squeezed to a square (so a stretched or rescaled copy has the same
one), and the mean colour. The search derives from the stored thumbnails a set of *views* per image (the frame and
a 5x5 grid of crops keeping 85% of each side), each made invariant to the eight flips and quarter turns and to
lighting:

1. a quadratic lighting surface is fitted and removed, then a difference of blurs keeps the weave, threads and
   defects at 2-10 cycles per frame;
2. the eight orientations are summed (the result is the same for a flipped or rotated copy), its radial profile is
   removed (lens fall-off is the same in every photo of a rig), and one triangle of it is kept (78 numbers) as a
   unit vector.

A copy's frame view matches one of its source's views (a crop of 85% lands on one of the grid's crops within 2% of
the frame): cosine similarity at least :data:`MIN_SIMILARITY`, and mean colours (chromaticity, so brightening
does not matter) within :data:`MAX_CHROMA_DISTANCE`. Candidates come from scikit-learn's ``NearestNeighbors``
(a k-d tree over a PCA projection of the views): near-linear, no pairwise loop; each candidate is confirmed on the
full view vectors. Measured on distinct synthetic fabric (``fabricdata synth``): see ``tests/test_similar.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

#: bump when the stored fingerprint changes meaning: stored ones of another version are recomputed
VERSION = 2
THUMB = 64
#: the stored fingerprint: THUMB*THUMB grey values, then the mean R, G, B (uint8)
LENGTH = THUMB * THUMB + 3
#: views are compared at this size; a view vector holds one triangle of its D4-symmetrised quadrant
VIEW = 24
#: crops of views: this share of each side, at these offsets (share of the frame) in x and y
CROP = 0.85
OFFSETS = (0.0, 0.0375, 0.075, 0.1125, 0.15)
MIN_SIMILARITY = 0.8
MAX_CHROMA_DISTANCE = 0.012
#: neighbours asked of the index per query view, and the dimensions of the projection it searches
NEIGHBOURS = 16
PROJECTED = 16

Fingerprint = np.ndarray


def fingerprint(path: str | Path) -> Fingerprint:
    """The stored fingerprint of an image file: uint8 vector of :data:`LENGTH` (see the module docstring).

    Raises:
        OSError, ValueError: the file cannot be decoded (:func:`fabricdata.core.images.load_rgb`).
    """
    from PIL import Image

    from fabricdata.core.images import load_rgb

    rgb = load_rgb(path).resize((THUMB, THUMB), Image.Resampling.LANCZOS, reducing_gap=2.0)
    pixels = np.asarray(rgb, dtype=np.float32)
    grey = np.asarray(rgb.convert("L"), dtype=np.uint8).reshape(-1)
    colour = np.clip(pixels.reshape(-1, 3).mean(axis=0).round(), 0, 255).astype(np.uint8)
    return np.concatenate([grey, colour])


def _view_windows() -> list[tuple[int, int, int]]:
    """(x, y, side) of each view in thumbnail pixels: the whole frame first, then the crops."""
    side = round(CROP * THUMB)
    return [(0, 0, THUMB)] + [(round(x * THUMB), round(y * THUMB), side) for x in OFFSETS for y in OFFSETS]


def _lighting_basis(size: int) -> np.ndarray:
    """Pseudo-inverse pieces of a quadratic surface fit over a ``size`` x ``size`` grid: (basis, pinv)."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    basis = np.stack([np.ones_like(x), x, y, x * x, y * y, x * y], axis=-1).reshape(-1, 6)
    return basis


def _radial_projection(half: int) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
    """The triangle indices of a ``half`` x ``half`` quadrant and the matrix that removes its radial mean."""
    rows, cols = np.triu_indices(half)
    centre = np.arange(half) - (half - 0.5)
    radius = np.round(np.hypot(centre[rows], centre[cols])).astype(int)
    matrix = np.eye(len(rows), dtype=np.float32)
    for r in np.unique(radius):
        ring = radius == r
        matrix[np.ix_(ring, ring)] -= 1.0 / ring.sum()
    return (rows, cols), matrix


def views(prints: np.ndarray) -> np.ndarray:
    """Unit view vectors of fingerprints: (N, LENGTH) uint8 -> (N, 1 + 25, 78) float32 (frame view first)."""
    import cv2

    grey = prints[:, : THUMB * THUMB].reshape(-1, THUMB, THUMB).astype(np.float32)
    basis = _lighting_basis(VIEW)
    pinv = np.linalg.pinv(basis)
    (rows, cols), radial = _radial_projection(VIEW // 2)
    windows = _view_windows()
    out = np.empty((len(prints), len(windows), len(rows)), dtype=np.float32)
    for v, (x, y, side) in enumerate(windows):
        crops = grey[:, y : y + side, x : x + side]
        small = np.stack([cv2.resize(c, (VIEW, VIEW), interpolation=cv2.INTER_AREA) for c in crops])
        flat = small.reshape(len(prints), -1)
        flat = flat - (flat @ pinv.T) @ basis.T  # lighting removed
        detail = flat.reshape(-1, VIEW, VIEW)
        detail = detail - np.stack(
            [cv2.GaussianBlur(d, (0, 0), 6 * VIEW / THUMB, borderType=cv2.BORDER_REFLECT) for d in detail]
        )
        sym = sum(np.rot90(detail, k, axes=(1, 2)) for k in range(4))
        sym = sym + np.swapaxes(sym, 1, 2)
        vector = sym[:, : VIEW // 2, : VIEW // 2][:, rows, cols] @ radial.T
        vector -= vector.mean(axis=1, keepdims=True)
        out[:, v] = vector / (np.linalg.norm(vector, axis=1, keepdims=True) + 1e-6)
    return out


def chromaticity(prints: np.ndarray) -> np.ndarray:
    """(N, 3) red, green, blue shares of the mean colour (unchanged by brightening)."""
    colour = prints[:, THUMB * THUMB :].astype(np.float32)
    shares: np.ndarray = colour / np.maximum(colour.sum(axis=1, keepdims=True), 1.0)
    return shares


def near_duplicate_pairs(
    prints: np.ndarray,
    consider: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    embedded: np.ndarray | None = None,
) -> list[tuple[int, int]]:
    """Index pairs ``(i, j)``, ``i < j``, of near-identical images among fingerprints ``prints`` (N, LENGTH).

    ``consider(i, j)`` (arrays of indices) may keep only some candidate pairs (validate: pairs in different
    splits); ``embedded`` passes views already computed by :func:`views`.
    """
    count = len(prints)
    if count < 2:
        return []
    vectors = views(prints) if embedded is None else embedded
    per_image = vectors.shape[1]
    flat = vectors.reshape(count * per_image, -1)
    queries, candidates = _candidates(flat, vectors[:, 0], per_image)
    owners = candidates // per_image
    keep = owners != queries
    queries, candidates, owners = queries[keep], candidates[keep], owners[keep]
    similarity = np.einsum("pd,pd->p", vectors[queries, 0], flat[candidates])
    chroma = chromaticity(prints)
    close = np.abs(chroma[queries] - chroma[owners]).max(axis=1) <= MAX_CHROMA_DISTANCE
    keep = (similarity >= MIN_SIMILARITY) & close
    first, second = np.minimum(queries, owners)[keep], np.maximum(queries, owners)[keep]
    if consider is not None and len(first):
        wanted = consider(first, second)
        first, second = first[wanted], second[wanted]
    return sorted({(int(a), int(b)) for a, b in zip(first, second, strict=True)})


def _candidates(flat: np.ndarray, frames: np.ndarray, per_image: int) -> tuple[np.ndarray, np.ndarray]:
    """(query image, candidate view) index arrays: the nearest views of every frame view, found by a k-d tree
    over a PCA projection (scikit-learn)."""
    from sklearn.decomposition import PCA
    from sklearn.neighbors import NearestNeighbors

    dims = min(PROJECTED, flat.shape[1], flat.shape[0])
    projection = PCA(n_components=dims, random_state=0).fit(flat)
    # an image's own views are near its frame view: ask for them too, and NEIGHBOURS more
    index = NearestNeighbors(n_neighbors=min(per_image + NEIGHBOURS, len(flat)), algorithm="kd_tree")
    index.fit(projection.transform(flat))
    found = index.kneighbors(projection.transform(frames), return_distance=False)
    queries = np.repeat(np.arange(len(frames)), found.shape[1])
    return queries, found.reshape(-1)


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
