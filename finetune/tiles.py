"""Sliced prediction: small defects in big frames, found tile by tile and merged back onto the whole frame.

Each frame is cut by the same grid as a tiled export (SAHI's ``get_slice_bboxes``, through
:func:`fabricdata.core.boxes.tile_grid`); the tiles of all frames are batched through the model; each tile's boxes
are mapped back to the frame. Then, per class:

1. pieces of one object cut by tile borders are joined: a box that ends on an inner tile border and a box of
   another tile that starts at or before that border, reaches further and agrees with it across the cut
   (:func:`fabricdata.core.boxes.continues_into`); SAHI's merges only see boxes that overlap, and pieces of a
   defect cut by a border without overlap only touch;
2. duplicates from overlapping tiles (and from the whole-frame pass, ``tile_and_full``) are merged by SAHI's
   greedy non-maximum merging: same-class boxes whose intersection covers ``MATCH_THRESHOLD`` of the smaller one
   become their union, with the best confidence.

sahi is imported inside the functions: the model side runs without it until a tiling is asked for.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from fabricdata.core.boxes import (
    SAHI_MISSING,
    Box,
    ImageSize,
    box_union,
    continues_into,
    cut_sides,
    reading_order_key,
    tile_grid,
    tile_to_frame,
    union_cut,
)
from fabricdata.core.contracts import ExportFolder, RunFolder, Tiling
from fabricdata.core.errors import ConfigError

#: a box edge within this share of the tile side of an inner tile border counts as cut by it
CUT_TOLERANCE = 0.01
#: same-class boxes whose intersection covers this share of the smaller one are one defect
MATCH_THRESHOLD = 0.5


@dataclass(frozen=True, slots=True)
class Piece:
    """A predicted box in frame pixels, with the sides where a tile border cut it."""

    label: str
    box: Box
    confidence: float
    cut: frozenset[str] = frozenset()
    text: str | None = None


def require_sahi() -> None:
    """Raises ConfigError with the way to install sahi when it is missing."""
    try:
        import sahi.postprocess.combine
        import sahi.slicing  # noqa: F401
    except ImportError:
        raise ConfigError(SAHI_MISSING) from None


def frame_tiles(size: ImageSize, tiling: Tiling) -> list[Box]:
    """The tiles of a frame (frame pixels): the grid of a tiled export."""
    return tile_grid(size, ImageSize(tiling.width, tiling.height), tiling.overlap)


def describe_tiled(model: Any, processor: Any, images: Sequence[Any], options: Any) -> list[list[dict[str, Any]]]:
    """:func:`finetune.predict.describe` tile by tile: every tile of every PIL image generated in batches of
    ``options.batch_size``, then per image and prompt one result with the merged boxes in frame pixels, the
    tiles' texts (one line each), their malformed boxes added up, and ``sliced`` (the tiling, the tile count,
    whether a whole-frame pass was merged in)."""
    from finetune.predict import describe

    require_sahi()
    tiling: Tiling = options.tiling
    plain = replace(options, tiling=None, tile_and_full=False)
    grids = [frame_tiles(ImageSize(*image.size), tiling) for image in images]
    crops = [image.crop(_corners(tile)) for image, grid in zip(images, grids, strict=True) for tile in grid]
    per_tile = describe(model, processor, crops, plain)
    full = describe(model, processor, list(images), plain) if options.tile_and_full else None
    out: list[list[dict[str, Any]]] = []
    start = 0
    for index, (image, grid) in enumerate(zip(images, grids, strict=True)):
        tiles, start = per_tile[start : start + len(grid)], start + len(grid)
        merged = []
        for ask in range(len(tiles[0])):  # one result per prompt (phrase)
            results = [tile[ask] for tile in tiles]
            whole = full[index][ask] if full is not None else None
            merged.append(merge_results(ImageSize(*image.size), grid, results, whole, tiling))
        out.append(merged)
    return out


def _corners(tile: Box) -> tuple[int, int, int, int]:
    return (round(tile.xmin), round(tile.ymin), round(tile.xmax), round(tile.ymax))


def merge_results(
    size: ImageSize,
    grid: Sequence[Box],
    results: Sequence[dict[str, Any]],
    whole: dict[str, Any] | None,
    tiling: Tiling,
) -> dict[str, Any]:
    """One frame's result from its tiles' results (boxes in tile pixels, ``grid`` order) and, optionally, a
    whole-frame result: the same keys as one result of ``describe``, boxes in frame pixels, plus ``sliced``."""
    tolerance = tolerance_of(tiling)
    pieces: list[Piece] = []
    for tile, result in zip(grid, results, strict=True):
        pieces += tile_pieces(tile, size, result, tolerance)
    if whole is not None:
        pieces += [_piece(det, Box(*det["bbox"])) for det in whole["detections"]]
    texts = [result["text"] for result in results] + ([whole["text"]] if whole is not None else [])
    malformed = sum(result["malformed_boxes"] for result in results) + (whole["malformed_boxes"] if whole else 0)
    sliced = {"tiling": tiling.model_dump(), "tiles": len(grid), "full_frame": whole is not None}
    detections = [_detection(piece) for piece in merge_pieces(pieces, tolerance)]
    merged = {"text": "\n".join(texts), "detections": detections, "malformed_boxes": malformed, "sliced": sliced}
    return {**results[0], **merged}


def tolerance_of(tiling: Tiling) -> float:
    """Pixels within which a box edge lies on a tile border: :data:`CUT_TOLERANCE` of the tile, at least 1."""
    return max(1.0, CUT_TOLERANCE * max(tiling.width, tiling.height))


def tile_pieces(tile: Box, frame: ImageSize, result: dict[str, Any], tolerance: float) -> list[Piece]:
    """One tile's detections (tile pixels) as pieces in frame pixels, with the sides the tile's borders cut."""
    pieces = []
    for det in result["detections"]:
        box = tile_to_frame(Box(*det["bbox"]), tile)
        pieces.append(replace(_piece(det, box), cut=cut_sides(box, tile, frame, tolerance)))
    return pieces


def _piece(det: dict[str, Any], box: Box) -> Piece:
    return Piece(det["label"], box, float(det["confidence"]), text=det.get("text"))


def _detection(piece: Piece) -> dict[str, Any]:
    det: dict[str, Any] = {
        "label": piece.label,
        "bbox": [round(v, 2) for v in piece.box.as_tuple()],
        "confidence": round(min(max(piece.confidence, 0.0), 1.0), 6),
    }
    if piece.text is not None:
        det["text"] = piece.text
    return det


def merge_pieces(pieces: Sequence[Piece], tolerance: float) -> list[Piece]:
    """Pieces cut by tile borders joined, then duplicates merged (SAHI's greedy NMM, intersection over the
    smaller box, per class) until no two boxes of a class match; in reading order.

    One greedy pass is not enough: with equal confidences a half of a defect may claim its whole copy first,
    leaving the other half (which matches the whole, not the first half) on its own.
    """
    joined = join_cut(pieces, tolerance)
    solid = [piece for piece in joined if piece.box.area > 0]
    flat = [piece for piece in joined if piece.box.area <= 0]  # no area: nothing to merge with, kept as found
    while len(merged := greedy_merge(solid)) < len(solid):
        solid = merged
    return sorted(solid + flat, key=lambda piece: (reading_order_key(piece.box), piece.label))


def join_cut(pieces: Sequence[Piece], tolerance: float) -> list[Piece]:
    """Join, until none is left, every two same-class pieces where one goes on where a tile border cut the
    other: their union, cut where the outer piece was, with the better confidence."""
    done = [piece for piece in pieces if not piece.cut]
    open_ = [piece for piece in pieces if piece.cut]
    while (pair := _joinable(open_, tolerance)) is not None:
        a, b = open_[pair[0]], open_[pair[1]]
        whole = Piece(a.label, box_union(a.box, b.box), max(a.confidence, b.confidence),
                      union_cut(a.box, a.cut, b.box, b.cut), a.text or b.text)  # fmt: skip
        open_ = [piece for k, piece in enumerate(open_) if k not in pair] + [whole]
    return done + open_


def _joinable(pieces: Sequence[Piece], tolerance: float) -> tuple[int, int] | None:
    """The first two pieces (indices) where the second goes on where a tile border cut the first."""
    for i, a in enumerate(pieces):
        for j, b in enumerate(pieces):
            if i != j and a.label == b.label and continues_into(a.box, a.cut, b.box, b.cut, tolerance):
                return i, j
    return None


def greedy_merge(pieces: Sequence[Piece]) -> list[Piece]:
    """SAHI's greedy non-maximum merging of same-class pieces by intersection over the smaller box: each kept
    piece (best confidence first) takes in the pieces matching it, becoming their union."""
    if not pieces:
        return []
    from sahi.postprocess.combine import GreedyNMMPostprocess
    from sahi.prediction import ObjectPrediction

    labels = sorted({piece.label for piece in pieces})
    texts = {piece.label: piece.text for piece in pieces if piece.text is not None}
    predictions = [
        ObjectPrediction(
            bbox=list(piece.box.as_tuple()),
            category_id=labels.index(piece.label),
            category_name=piece.label,
            score=piece.confidence,
        )
        for piece in pieces
    ]
    merge = GreedyNMMPostprocess(match_threshold=MATCH_THRESHOLD, match_metric="IOS", class_agnostic=False)
    merged = []
    for prediction in merge(predictions):
        label = labels[prediction.category.id]
        box = Box(*(float(v) for v in prediction.bbox.to_xyxy()))
        merged.append(Piece(label, box, float(prediction.score.value), text=texts.get(label)))
    return merged


def export_tiling(folder: Path | None, data: Path | None) -> Tiling | None:
    """The tiling a run trained on: its copy of the export manifest, else its export's manifest (None: whole
    frames, or no manifest to tell)."""
    manifests = [RunFolder(folder).export_manifest] if folder is not None else []
    manifests += [ExportFolder(data).manifest] if data is not None else []
    for manifest in manifests:
        if manifest.is_file():
            try:
                tiling = json.loads(manifest.read_text(encoding="utf-8")).get("tiling")
            except (OSError, json.JSONDecodeError, AttributeError):
                raise ConfigError(f"{manifest}: unreadable export manifest; give --tile") from None
            if not tiling:
                return None
            return Tiling(width=tiling["width"], height=tiling["height"], overlap=tiling["overlap"])
    return None


def chosen_tiling(
    choice: Tiling | Literal["export"] | None, folder: Path | None, data: Path | None, tile_and_full: bool = False
) -> Tiling | None:
    """A tiling as asked: given, None (whole images) or ``"export"``: the tiling the run ``folder`` trained on
    (:func:`export_tiling`). Checks that sahi is there when there is one.

    Raises:
        ConfigError: a whole-frame pass asked for without a tiling; sahi missing.
    """
    tiling = export_tiling(folder, data) if isinstance(choice, str) else choice
    if tiling is None and tile_and_full:
        raise ConfigError("--tile-and-full needs a tiling (--tile SIZE, or a run trained on a tiled export)")
    if tiling is not None:
        require_sahi()
    return tiling
