"""Small defects in big frames: the tile grid, box pieces clipped into tiles and joined back, tiled export, sliced
prediction merged onto the whole frame (exact with an oracle in place of the model), review on the frame, advice."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fabricdata.core.boxes import Box, ImageSize, box_to_tile, tile_grid, tile_to_frame, visibility
from fabricdata.core.contracts import Tiling
from finetune.tiles import Piece, merge_pieces, tile_pieces

STRIP = ImageSize(4096, 256)
FRAME = ImageSize(2448, 2048)


def _covered(size: ImageSize, tiles: list[Box]) -> np.ndarray:
    hits = np.zeros((size.height, size.width), dtype=np.int32)
    for t in tiles:
        hits[int(t.ymin) : int(t.ymax), int(t.xmin) : int(t.xmax)] += 1
    return hits


@pytest.mark.parametrize(
    ("size", "tile", "overlap"),
    [(STRIP, 256, 0.0), (STRIP, 256, 0.25), (STRIP, 640, 0.2), (FRAME, 640, 0.25), (FRAME, 640, 0.0), (FRAME, 512, 0.3)],
)
def test_the_grid_covers_the_frame_with_whole_tiles_aligned_to_its_edges(size: ImageSize, tile: int, overlap: float) -> None:
    tiles = tile_grid(size, ImageSize(tile, tile), overlap)
    assert _covered(size, tiles).min() >= 1  # every pixel in some tile
    side = (min(tile, size.width), min(tile, size.height))
    assert {(t.width, t.height) for t in tiles} == {side}  # no padding: every tile full size, inside the frame
    assert all(t.xmin >= 0 and t.ymin >= 0 and t.xmax <= size.width and t.ymax <= size.height for t in tiles)
    assert max(t.xmax for t in tiles) == size.width and max(t.ymax for t in tiles) == size.height
    xs = sorted({t.xmin for t in tiles})
    steps = {b - a for a, b in zip(xs[:-2], xs[1:-1], strict=True)}  # the last column is aligned, not stepped
    assert steps <= {side[0] - int(overlap * side[0])}


@settings(max_examples=200, deadline=None)
@given(
    st.floats(0, 4000), st.floats(0, 200), st.floats(1, 90), st.floats(1, 50), st.integers(0, 40)
)  # fmt: skip
def test_a_box_clipped_into_a_tile_maps_back_inside_itself(x: float, y: float, w: float, h: float, k: int) -> None:
    box = Box(x, y, min(x + w, 4096.0), min(y + h, 256.0))
    tiles = tile_grid(STRIP, ImageSize(256, 256), 0.2)
    tile = tiles[k % len(tiles)]
    piece = box_to_tile(box, tile)
    share = visibility(box, tile)
    if piece.width > 0 and piece.height > 0:
        back = tile_to_frame(piece, tile)
        assert box.xmin <= back.xmin + 1e-9 and back.xmax <= box.xmax + 1e-9
        assert box.ymin <= back.ymin + 1e-9 and back.ymax <= box.ymax + 1e-9
        assert share == pytest.approx(back.area / box.area)
        assert 0 <= piece.xmin and piece.xmax <= tile.width and 0 <= piece.ymin and piece.ymax <= tile.height
    else:
        assert share == 0.0


def _pieces_of(box: Box, label: str, tiles: list[Box], size: ImageSize, tolerance: float) -> list[Piece]:
    """Each tile's own view of ``box`` (tile pixels, then the same mapping as predictions)."""
    found = []
    for tile in tiles:
        part = box_to_tile(box, tile)
        if part.width > 0 and part.height > 0:
            result = {"detections": [{"label": label, "bbox": list(part.as_tuple()), "confidence": 0.9}]}
            found += tile_pieces(tile, size, result, tolerance)
    return found


@pytest.mark.parametrize(
    ("size", "tile", "overlap", "box", "pieces"),
    [
        (STRIP, 256, 0.0, Box(246, 100, 266, 120), 2),  # cut by one border: two halves that only touch
        (STRIP, 256, 0.0, Box(100, 10, 700, 40), 3),  # a long crease over three tiles
        (STRIP, 256, 0.2, Box(150, 10, 800, 40), 4),  # longer than the overlap: pieces overlap by 51 px only
        (FRAME, 640, 0.0, Box(630, 630, 650, 650), 4),  # a corner: four quarters
        (FRAME, 640, 0.25, Box(470, 470, 490, 490), 4),  # a corner inside overlaps: whole once, cut thrice
        (FRAME, 640, 0.25, Box(500, 500, 520, 520), 4),  # inside the overlap of four tiles: four whole copies
    ],
)
def test_pieces_of_one_defect_merge_back_into_it(size: ImageSize, tile: int, overlap: float, box: Box, pieces: int) -> None:
    tiles = tile_grid(size, ImageSize(tile, tile), overlap)
    found = _pieces_of(box, "broken", tiles, size, tolerance=2.56)
    assert len(found) == pieces
    merged = merge_pieces(found, tolerance=2.56)
    assert [(m.label, m.box) for m in merged] == [("broken", box)]
    assert merged[0].confidence == 0.9


def test_neighbours_are_not_merged() -> None:
    """Two defects side by side across a border, another class on top, and two in one tile stay apart."""
    tiles = tile_grid(STRIP, ImageSize(256, 256), 0.0)
    truth = [
        ("broken", Box(230, 20, 256, 40)),  # ends on the border...
        ("broken", Box(256, 120, 280, 140)),  # ...and one starts there, lower: another defect
        ("drop", Box(246, 18, 266, 42)),  # another class over the first
        ("broken", Box(20, 200, 40, 210)),
        ("broken", Box(60, 200, 80, 210)),
    ]
    found = [p for label, box in truth for p in _pieces_of(box, label, tiles, STRIP, 2.56)]
    merged = merge_pieces(found, 2.56)
    assert sorted((m.label, m.box.as_tuple()) for m in merged) == sorted((lab, b.as_tuple()) for lab, b in truth)


def test_tiling_options_are_checked() -> None:
    from fabricdata.core.errors import ConfigError

    assert Tiling.parse("256", 0.2) == Tiling(width=256, height=256, overlap=0.2)
    assert Tiling.parse("512x256", 0.0) == Tiling(width=512, height=256, overlap=0.0)
    assert Tiling.parse("none", 0.2) is None
    for bad in ("256x", "x", "-5", "256x256x2", "big"):
        with pytest.raises(ConfigError, match="--tile"):
            Tiling.parse(bad, 0.2)
    with pytest.raises(ConfigError, match="--overlap"):
        Tiling.parse("256", 0.95)
