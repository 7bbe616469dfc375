"""Tiles for small defects in big frames: a tiled export's cutting, and the advice of when to tile.

Florence-2 sees every image at 768x768. A 4096x256 line-scan strip is squeezed 5.3x across, so a 20-px broken
thread is under 4 px wide when the vision tower sees it. A tiled export cuts every frame into tiles that cover it
(SAHI's grid: :func:`fabricdata.core.boxes.tile_grid`), clips each box into each tile it overlaps and keeps it
where at least ``min_visibility`` of its area is inside. Tiles without any box are the negatives, kept up to
``negative_ratio`` per tile with boxes (a seeded choice over the split, planned in a first pass over the labels, so
memory stays flat); tiles that hold only pieces under ``min_visibility`` are neither a defect nor a clean example
and are left out. Each split's whole frames are linked beside its tiles (``frames/``, listed in ``frames.jsonl``)
for sliced prediction and for review on the whole frame.
"""

from __future__ import annotations

import io
import json
import math
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from fabricdata.core.annotation import LabeledBox
from fabricdata.core.boxes import Box, ImageSize, box_to_tile, tile_grid, tile_size
from fabricdata.core.contracts import ExportFolder, ExportTiling, Tiling
from fabricdata.core.errors import DatasetError
from fabricdata.core.fileio import link_or_copy, unique_name
from fabricdata.prepare.split import current_split

#: Florence-2's input side: every image is resized to it
MODEL_INPUT = 768
#: the advice's threshold: defects whose median side is under this share of the input after the resize
SMALL_SHARE = 0.02
#: frames more elongated than this are distorted by the square resize
MAX_ASPECT = 3.0
#: the side a defect should have in the model's input once tiled (about 4% of 768)
TARGET_SIDE = 32
#: the smallest tile advised (smaller ones only multiply the generations)
MIN_TILE = 128

TileKind = Literal["boxes", "negative", "partial"]


@dataclass(frozen=True, slots=True)
class TileOptions:
    """How a tiled export cuts frames (``export florence --tile ... --overlap ... --min-visibility ...``)."""

    tiling: Tiling
    min_visibility: float = 0.5
    #: tiles without boxes kept per tile with boxes, per split (0: none)
    negative_ratio: float = 1.0


@dataclass(frozen=True, slots=True)
class TileCut:
    """One tile of a frame: where it lies (frame pixels), its kept box pieces (tile pixels) and what they were."""

    tile: Box
    objects: tuple[LabeledBox, ...]
    whole: int
    clipped: int
    dropped: int

    @property
    def kind(self) -> TileKind:
        if self.objects:
            return "boxes"
        return "partial" if self.dropped else "negative"

    @property
    def size(self) -> ImageSize:
        return tile_size(self.tile)

    def where(self) -> str:
        """``x,y`` of the tile's top-left corner in the frame."""
        return f"{round(self.tile.xmin)},{round(self.tile.ymin)}"

    def source(self, name: str, sample_id: str, path: str, frame: ImageSize) -> dict[str, Any]:
        """The tile's ``sources.jsonl`` line: its frame, offset and size (pixels) and the frame's size."""
        return {
            "image": name,
            "filepath": path,
            "sample_id": sample_id,
            "offset": [round(self.tile.xmin), round(self.tile.ymin)],
            "tile": [self.size.width, self.size.height],
            "frame": [frame.width, frame.height],
        }


def cut_frame(size: ImageSize, objects: Sequence[LabeledBox], options: TileOptions) -> list[TileCut]:
    """Every tile of a frame with the pieces of its boxes: a piece is kept where at least ``min_visibility`` of
    its box's area lies in the tile (a piece of no area never is)."""
    tiling = options.tiling
    cuts = []
    for tile in tile_grid(size, ImageSize(tiling.width, tiling.height), tiling.overlap):
        kept: list[LabeledBox] = []
        whole = clipped = dropped = 0
        for obj in objects:
            piece = box_to_tile(obj.box, tile)
            if piece.width <= 0 or piece.height <= 0:
                continue
            share = piece.area / obj.box.area
            if math.isclose(share, 1.0):
                whole += 1
            elif share >= options.min_visibility:
                clipped += 1
            else:
                dropped += 1
                continue
            kept.append(replace(obj, box=piece))
        cuts.append(TileCut(tile, tuple(kept), whole, clipped, dropped))
    return cuts


def tile_name(path: str, tile: Box, taken: set[str]) -> str:
    """``<stem>_x<left>_y<top>.png``, unique among ``taken``."""
    return unique_name(f"{Path(path).stem}_x{round(tile.xmin)}_y{round(tile.ymin)}.png", taken)


def decode_frame(path: str) -> Any:
    """A frame's pixels (the one decode every consumer shares), decoded once for all of its tiles.

    Raises:
        DatasetError: the file cannot be decoded (the export stops; nothing is written).
    """
    from fabricdata.core.images import load_rgb

    try:
        return load_rgb(path)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: cannot be read to cut its tiles ({exc.__class__.__name__}: {exc})") from None


def tile_png(image: Any, tile: Box) -> bytes:
    """The tile's pixels of a decoded frame (PIL), as PNG: lossless, so a tile is exactly what sliced prediction
    crops from the same frame."""
    buffer = io.BytesIO()
    crop = image.crop((round(tile.xmin), round(tile.ymin), round(tile.xmax), round(tile.ymax)))
    crop.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


@dataclass(slots=True)
class _SplitTiles:
    """One split's negative choice and counts, and its frames file."""

    boxes: int = 0
    negatives: int = 0
    chosen: frozenset[int] = frozenset()
    seen_negatives: int = 0
    frames: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    frame_names: set[str] = field(default_factory=set)
    handle: Any = None


class Tiler:
    """The tiling of one export: :meth:`plan` reads every frame's labels once (the negatives to keep are chosen
    per split, seeded), then :meth:`tiles` gives each frame's tiles to export in the same order."""

    def __init__(self, options: TileOptions, negatives: bool, seed: int) -> None:
        self.options = options
        self.negatives = negatives
        self.seed = seed
        self.splits: dict[str, _SplitTiles] = {}
        self.pieces: Counter[str] = Counter()

    def plan(self, frames: Iterable[tuple[str, ImageSize, Sequence[LabeledBox]]]) -> Tiler:
        """Pass one over ``(split folder, frame size, boxes)`` in export order: count the tiles with boxes and the
        negatives of each split, and choose which negatives to keep. Returns the tiler."""
        for folder, size, objects in frames:
            split = self.splits.setdefault(folder, _SplitTiles())
            for cut in cut_frame(size, objects, self.options):
                split.boxes += cut.kind == "boxes"
                split.negatives += cut.kind == "negative"
        for index, split in enumerate(self.splits.values()):
            wanted = min(split.negatives, math.floor(self.options.negative_ratio * split.boxes + 1e-9))
            if not self.negatives or wanted <= 0:
                continue
            rng = np.random.default_rng([self.seed, index])
            split.chosen = frozenset(int(k) for k in rng.choice(split.negatives, size=wanted, replace=False))
        return self

    def tiles(self, folder: str, size: ImageSize, objects: Sequence[LabeledBox]) -> Iterator[TileCut]:
        """The tiles of one frame to export: those with boxes and the chosen negatives (counted as they go)."""
        split = self.splits.setdefault(folder, _SplitTiles())
        for cut in cut_frame(size, objects, self.options):
            self.pieces.update(whole=cut.whole, clipped=cut.clipped, dropped=cut.dropped)
            kind: str = cut.kind
            if kind == "negative":
                keep = split.seen_negatives in split.chosen
                split.seen_negatives += 1
                kind = "negatives" if keep else "negatives_left"
            split.kinds[kind] += 1
            if kind in ("boxes", "negatives"):
                yield cut

    def add_frame(self, folder: Path, sample_id: str, path: str, size: ImageSize) -> None:
        """Link a whole frame into ``folder/frames/`` and list it in ``folder/frames.jsonl``."""
        split = self.splits.setdefault(folder.name, _SplitTiles())
        if split.handle is None:
            (folder / ExportFolder.FRAMES_FOLDER).mkdir(exist_ok=True)
            split.handle = (folder / ExportFolder.FRAMES).open("w", encoding="utf-8")
        name = unique_name(Path(path).name, split.frame_names)
        split.frame_names.add(name)
        link_or_copy(path, folder / ExportFolder.FRAMES_FOLDER / name)
        image = f"{ExportFolder.FRAMES_FOLDER}/{name}"
        line = {"image": image, "filepath": path, "sample_id": sample_id, "width": size.width, "height": size.height}
        split.handle.write(json.dumps(line, ensure_ascii=False) + "\n")
        split.frames += 1

    def close(self) -> None:
        for split in self.splits.values():
            if split.handle is not None:
                split.handle.close()
                split.handle = None

    def manifest(self) -> ExportTiling:
        kinds = ("boxes", "negatives", "negatives_left", "partial")
        return ExportTiling(
            **self.options.tiling.model_dump(),
            min_visibility=self.options.min_visibility,
            negative_ratio=self.options.negative_ratio if self.negatives else 0.0,
            frames={name: split.frames for name, split in self.splits.items()},
            tiles={name: {kind: split.kinds[kind] for kind in kinds} for name, split in self.splits.items()},
            pieces={kind: self.pieces[kind] for kind in ("whole", "clipped", "dropped")},
        )


def plan_tiles(
    options: TileOptions,
    negatives: bool,
    seed: int,
    samples: Iterable[tuple[str, str, list[str], ImageSize, list[LabeledBox]]],
) -> Tiler:
    """The tiler of an export, its negatives chosen in a first pass over ``(id, path, tags, size, boxes)`` of the
    samples in export order (labels only; samples without a split are not exported)."""
    frames = (
        (ExportFolder.folder_name(split), size, objects)
        for _, _, tags, size, objects in samples
        if (split := current_split(tags)) is not None
    )
    return Tiler(options, negatives, seed).plan(frames)


# --- advice: when to tile, and how ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TilingAdvice:
    """Why the frames should be tiled, the frames concerned (indices) and the tiling to use."""

    reasons: list[str]
    frames: list[int]
    tiling: Tiling

    def option(self) -> str:
        """The export options that apply it: ``--tile 256 --overlap 0.1``."""
        size = f"{self.tiling.width}" + (f"x{self.tiling.height}" if self.tiling.height != self.tiling.width else "")
        return f"--tile {size} --overlap {self.tiling.overlap:g}"


def input_side(box: Box, size: ImageSize, side: int = MODEL_INPUT) -> float:
    """The shorter side of a box, in pixels of the model's square input once its frame is resized to it."""
    return min(box.width * side / size.width, box.height * side / size.height)


def aspect(size: ImageSize) -> float:
    """Long side over short side of a frame."""
    return max(size.width, size.height) / min(size.width, size.height)


def tiling_advice(frames: Sequence[tuple[ImageSize, Sequence[Box]]]) -> TilingAdvice | None:
    """Advice for frames and their boxes (frame pixels), or None when whole frames suit the model: the median
    box side under :data:`SMALL_SHARE` of the input after the resize to 768x768 (the frames concerned: those
    with a box that small), or frames with an aspect ratio over :data:`MAX_ASPECT`.

    The tile is square (the model's input is) and a multiple of 32, as large as lets the median defect reach
    :data:`TARGET_SIDE` px in the input, at least :data:`MIN_TILE`, never larger than the frames' shorter side;
    the overlap (0.1..0.5, in steps of 0.05) lets the 90th-percentile defect side lie whole in one tile.
    """
    limit = SMALL_SHARE * MODEL_INPUT
    sides = [input_side(box, size) for size, boxes in frames for box in boxes if box.area > 0]
    reasons, concerned = [], set()
    if sides and (median := float(np.median(sides))) < limit:
        reasons.append(f"the median defect is {median:.1f} px across in the model's {MODEL_INPUT}x{MODEL_INPUT} input")
        concerned |= {i for i, (size, boxes) in enumerate(frames) if any(input_side(b, size) < limit for b in boxes)}
    elongated = [i for i, (size, _) in enumerate(frames) if aspect(size) > MAX_ASPECT]
    if elongated:
        widest = max(aspect(frames[i][0]) for i in elongated)
        reasons.append(f"{len(elongated)} frame(s) more elongated than {MAX_ASPECT:g}:1 (up to {widest:.1f}:1)")
        concerned |= set(elongated)
    if not reasons:
        return None
    return TilingAdvice(reasons, sorted(concerned), _advised_tiling(frames))


def _advised_tiling(frames: Sequence[tuple[ImageSize, Sequence[Box]]]) -> Tiling:
    shorter = min(min(size.width, size.height) for size, _ in frames)
    boxes = [box for _, found in frames for box in found if box.area > 0]
    median_px = float(np.median([min(b.width, b.height) for b in boxes])) if boxes else shorter / 8
    wanted = median_px * MODEL_INPUT / TARGET_SIDE
    side = min(shorter, max(MIN_TILE, int(wanted // 32 * 32)))
    long_px = float(np.percentile([max(b.width, b.height) for b in boxes], 90)) if boxes else 0.0
    overlap = min(0.5, max(0.1, math.ceil(long_px / side / 0.05) * 0.05))
    return Tiling(width=side, height=side, overlap=round(overlap, 2))
