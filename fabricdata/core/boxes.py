"""The one canonical box type and every coordinate conversion of the project.

Canonical box: pixel-edge ``xmin, ymin, xmax, ymax`` floats with ``0 <= xmin < xmax <= W`` (LabelImg's canvas
convention: VOC values are taken as written, no +-1 shift), always together with its :class:`ImageSize`.
Converters are named ``<src>_to_<dst>``, are pure, and never mutate their inputs.

No other module of fabricdata does coordinate arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: Number of location bins of Florence-2 (tokens ``<loc_0>`` .. ``<loc_999>``).
LOC_BINS = 1000


@dataclass(frozen=True, slots=True)
class ImageSize:
    """Image size in pixels."""

    width: int
    height: int


@dataclass(frozen=True, slots=True)
class Box:
    """A canonical box: pixel-edge coordinates, floats."""

    xmin: float
    ymin: float
    xmax: float
    ymax: float

    @property
    def width(self) -> float:
        return self.xmax - self.xmin

    @property
    def height(self) -> float:
        return self.ymax - self.ymin

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)

    def as_tuple(self) -> tuple[float, float, float, float]:
        return (self.xmin, self.ymin, self.xmax, self.ymax)


# --- problems of a box (the caller turns them into typed errors naming its file) -------------------------


def box_problem(box: Box, size: ImageSize, tolerance: float = 0.0) -> str | None:
    """Why ``box`` is not a valid box of an image of ``size``, or None when it is."""
    values = box.as_tuple()
    if not all(math.isfinite(v) for v in values):
        return "coordinates must be finite numbers"
    if box.xmin >= box.xmax:
        return "xmin must be smaller than xmax"
    if box.ymin >= box.ymax:
        return "ymin must be smaller than ymax"
    if box.xmin < -tolerance or box.ymin < -tolerance:
        return "box starts outside the image"
    if box.xmax > size.width + tolerance or box.ymax > size.height + tolerance:
        return f"box ends outside the {size.width}x{size.height} image"
    return None


def corners_ordered(corners: Sequence[float]) -> bool:
    """True when ``x1, y1, x2, y2`` (pixels or Florence-2 bins) have their corners in order (a box of one bin
    or zero width is ordered; a model may generate any four numbers)."""
    x1, y1, x2, y2 = corners
    return x1 <= x2 and y1 <= y2


def clip_box(box: Box, size: ImageSize) -> Box:
    """The part of ``box`` inside the image (may be degenerate when the box lies fully outside)."""
    return Box(
        min(max(box.xmin, 0.0), float(size.width)),
        min(max(box.ymin, 0.0), float(size.height)),
        min(max(box.xmax, 0.0), float(size.width)),
        min(max(box.ymax, 0.0), float(size.height)),
    )


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes (0 when they do not overlap)."""
    inter_w = min(a.xmax, b.xmax) - max(a.xmin, b.xmin)
    inter_h = min(a.ymax, b.ymax) - max(a.ymin, b.ymin)
    if inter_w <= 0 or inter_h <= 0:
        return 0.0
    inter = inter_w * inter_h
    return inter / (a.area + b.area - inter)


def iou_pairs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """:func:`iou` of row ``i`` of ``a`` with row ``i`` of ``b``, for many boxes at once: both ``(n, 4)`` arrays of
    ``xmin, ymin, xmax, ymax``; returns ``(n,)`` floats (0 where they do not overlap)."""
    inter_w = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0.0, None)
    inter_h = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0.0, None)
    inter = inter_w * inter_h
    area_a = np.clip(a[:, 2] - a[:, 0], 0.0, None) * np.clip(a[:, 3] - a[:, 1], 0.0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0.0, None) * np.clip(b[:, 3] - b[:, 1], 0.0, None)
    union = area_a + area_b - inter
    result: np.ndarray = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return result


def reading_order_key(box: Box) -> tuple[float, float, float, float]:
    """Sort key that orders boxes top-to-bottom, then left-to-right."""
    return (box.ymin, box.xmin, box.ymax, box.xmax)


# --- Pascal VOC (LabelImg) ------------------------------------------------------------------------------


def round_half_up(value: float) -> int:
    """Round to the nearest integer, halves away from zero for positives (never truncate)."""
    return math.floor(value + 0.5)


def voc_to_box(values: Sequence[float]) -> Box:
    """VOC ``xmin, ymin, xmax, ymax`` as written (ints or floats) to a canonical box."""
    xmin, ymin, xmax, ymax = (float(v) for v in values)
    return Box(xmin, ymin, xmax, ymax)


def box_to_voc(box: Box) -> tuple[int, int, int, int]:
    """Canonical box to the integers LabelImg writes, rounded to nearest."""
    return (
        round_half_up(box.xmin),
        round_half_up(box.ymin),
        round_half_up(box.xmax),
        round_half_up(box.ymax),
    )


# --- FiftyOne: relative [x, y, w, h], top-left origin -------------------------------------------------


def box_to_fiftyone(box: Box, size: ImageSize) -> list[float]:
    """Canonical box to FiftyOne's relative ``[x, y, w, h]``."""
    w, h = float(size.width), float(size.height)
    return [box.xmin / w, box.ymin / h, (box.xmax - box.xmin) / w, (box.ymax - box.ymin) / h]


def fiftyone_to_box(rel: Sequence[float], size: ImageSize) -> Box:
    """FiftyOne's relative ``[x, y, w, h]`` to a canonical box."""
    x, y, bw, bh = (float(v) for v in rel)
    w, h = float(size.width), float(size.height)
    return Box(x * w, y * h, (x + bw) * w, (y + bh) * h)


# --- albumentations: pascal_voc pixel format -----------------------------------------------------------


def fiftyone_to_boxes(rel: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """:func:`fiftyone_to_box` for many boxes at once: ``(n, 4)`` relative ``[x, y, w, h]`` and ``(n, 2)`` image
    ``width, height`` to ``(n, 4)`` pixel ``xmin, ymin, xmax, ymax`` (float64)."""
    rel = np.asarray(rel, dtype=np.float64).reshape(-1, 4)
    w, h = (np.asarray(sizes, dtype=np.float64).reshape(-1, 2)[:, k] for k in (0, 1))
    return np.stack([rel[:, 0] * w, rel[:, 1] * h, (rel[:, 0] + rel[:, 2]) * w, (rel[:, 1] + rel[:, 3]) * h], axis=1)


def box_to_albumentations(box: Box) -> tuple[float, float, float, float]:
    """Canonical box to albumentations' ``pascal_voc`` tuple (same convention, pixels)."""
    return box.as_tuple()


def albumentations_to_box(values: Sequence[float], decimals: int = 4) -> Box:
    """albumentations' ``pascal_voc`` output to a canonical box, rounding away float32 noise."""
    xmin, ymin, xmax, ymax = (round(float(v), decimals) for v in values[:4])
    return Box(xmin, ymin, xmax, ymax)


# --- YOLO: normalised centre format ---------------------------------------------------------------------


def box_to_yolo(box: Box, size: ImageSize) -> tuple[float, float, float, float]:
    """Canonical box to YOLO's normalised ``cx, cy, w, h``."""
    w, h = float(size.width), float(size.height)
    return (
        (box.xmin + box.xmax) / 2.0 / w,
        (box.ymin + box.ymax) / 2.0 / h,
        (box.xmax - box.xmin) / w,
        (box.ymax - box.ymin) / h,
    )


def yolo_to_box(values: Sequence[float], size: ImageSize) -> Box:
    """YOLO's normalised ``cx, cy, w, h`` to a canonical box (not clipped)."""
    cx, cy, bw, bh = (float(v) for v in values)
    w, h = float(size.width), float(size.height)
    return Box((cx - bw / 2.0) * w, (cy - bh / 2.0) * h, (cx + bw / 2.0) * w, (cy + bh / 2.0) * h)


def yolo_polygon_to_box(values: Sequence[float], size: ImageSize) -> Box:
    """An Ultralytics segmentation polygon (normalised ``x1 y1 x2 y2 ...``) to its bounding box, as Ultralytics
    itself reads segment labels for detection (``segments2boxes``); not clipped."""
    xs = [float(v) * size.width for v in values[0::2]]
    ys = [float(v) * size.height for v in values[1::2]]
    return Box(min(xs), min(ys), max(xs), max(ys))


# --- CreateML: pixel centre format ----------------------------------------------------------------------


def box_to_createml(box: Box) -> dict[str, float]:
    """Canonical box to CreateML's pixel ``{x, y, width, height}`` (x, y = centre)."""
    return {
        "x": (box.xmin + box.xmax) / 2.0,
        "y": (box.ymin + box.ymax) / 2.0,
        "width": box.xmax - box.xmin,
        "height": box.ymax - box.ymin,
    }


def createml_to_box(coords: dict[str, float]) -> Box:
    """CreateML's pixel centre ``{x, y, width, height}`` to a canonical box."""
    cx, cy = float(coords["x"]), float(coords["y"])
    bw, bh = float(coords["width"]), float(coords["height"])
    return Box(cx - bw / 2.0, cy - bh / 2.0, cx + bw / 2.0, cy + bh / 2.0)


def box_to_xywh(box: Box) -> tuple[float, float, float, float]:
    """Canonical box to pixel ``x, y, width, height`` (top-left corner; COCO's ``bbox``)."""
    return (box.xmin, box.ymin, box.xmax - box.xmin, box.ymax - box.ymin)


def xywh_to_box(values: Sequence[float]) -> Box:
    """Pixel ``x, y, width, height`` (top-left corner; COCO's ``bbox``) to a canonical box."""
    x, y, w, h = (float(v) for v in values)
    return Box(x, y, x + w, y + h)


# --- Florence-2 location bins ---------------------------------------------------------------------------


def quantize(value: float, extent: int) -> int:
    """One coordinate to its Florence-2 bin, exactly as ``Florence2Processor`` does it.

    The processor computes ``floor(x / (extent / 1000))`` on a float32 tensor, so we compute in float32 too:
    at exact bin edges float32 and exact arithmetic differ (x=896 on 1024 gives 874, not 875).
    """
    per_bin = np.float32(extent / LOC_BINS)
    binned = int(np.floor(np.float32(value) / per_bin))
    return min(max(binned, 0), LOC_BINS - 1)


def dequantize(binned: int, extent: int) -> float:
    """A Florence-2 bin to the centre of the pixel range it covers."""
    return (binned + 0.5) * (extent / LOC_BINS)


def box_to_florence(box: Box, size: ImageSize) -> tuple[int, int, int, int]:
    """Canonical box to four Florence-2 bins ``(x1, y1, x2, y2)``, each in 0..999."""
    return (
        quantize(box.xmin, size.width),
        quantize(box.ymin, size.height),
        quantize(box.xmax, size.width),
        quantize(box.ymax, size.height),
    )


def florence_to_box(bins: Sequence[int], size: ImageSize) -> Box:
    """Four Florence-2 bins to a canonical box at the bin centres."""
    x1, y1, x2, y2 = bins
    return Box(
        dequantize(x1, size.width),
        dequantize(y1, size.height),
        dequantize(x2, size.width),
        dequantize(y2, size.height),
    )


def florence_bin_width(size: ImageSize) -> tuple[float, float]:
    """Width and height in pixels of one Florence-2 bin for an image of ``size``."""
    return size.width / LOC_BINS, size.height / LOC_BINS


# --- tiles: a frame cut into overlapping tiles, boxes clipped into them and mapped back -------------------------

#: sides of a box, as :func:`cut_sides` names them
SIDES = ("left", "top", "right", "bottom")
SAHI_MISSING = (
    "tiling needs sahi (SAHI's slicing and merging): 'make setup' installs it, or "
    "pip install --no-deps sahi==0.12.8 'shapely>=2.0' (--no-deps keeps its opencv-python off the "
    "opencv-python-headless that FiftyOne and albumentations use; what else it imports comes with them)"
)


def tile_grid(size: ImageSize, tile: ImageSize, overlap: float) -> list[Box]:
    """The tiles that cover a frame of ``size``, in frame pixels, row by row: ``tile`` sized (smaller only where
    the frame is), neighbours overlapping by ``int(overlap * tile side)`` px, the last row and column aligned to
    the frame's edge (no padding). SAHI's ``get_slice_bboxes`` computes it.

    Raises:
        ConfigError: sahi is not installed (``make setup`` installs it).
    """
    try:
        from sahi.slicing import get_slice_bboxes
    except ImportError:
        from fabricdata.core.errors import ConfigError

        raise ConfigError(SAHI_MISSING) from None

    corners = get_slice_bboxes(
        size.height,
        size.width,
        slice_height=min(tile.height, size.height),
        slice_width=min(tile.width, size.width),
        auto_slice_resolution=False,
        overlap_height_ratio=overlap,
        overlap_width_ratio=overlap,
    )
    return [Box(float(x0), float(y0), float(x1), float(y1)) for x0, y0, x1, y1 in corners]


def box_to_tile(box: Box, tile: Box) -> Box:
    """The part of a frame box inside ``tile``, in the tile's pixels (degenerate when it lies outside)."""
    shifted = Box(box.xmin - tile.xmin, box.ymin - tile.ymin, box.xmax - tile.xmin, box.ymax - tile.ymin)
    return clip_box(shifted, tile_size(tile))


def tile_to_frame(box: Box, tile: Box) -> Box:
    """A box in a tile's pixels to the frame's pixels."""
    return Box(box.xmin + tile.xmin, box.ymin + tile.ymin, box.xmax + tile.xmin, box.ymax + tile.ymin)


def visibility(box: Box, tile: Box) -> float:
    """The share of a frame box's area that lies inside ``tile`` (0 for a box of no area)."""
    return box_to_tile(box, tile).area / box.area if box.area > 0 else 0.0


def tile_size(tile: Box) -> ImageSize:
    """The size in pixels of a tile of :func:`tile_grid`."""
    return ImageSize(round(tile.width), round(tile.height))


def cut_sides(box: Box, tile: Box, frame: ImageSize, tolerance: float) -> frozenset[str]:
    """The sides of ``box`` (frame pixels, found in ``tile``) lying within ``tolerance`` px of a border of the tile
    that is not the frame's edge: where the tile may have cut an object that goes on in the next tile."""
    inner = {
        "left": tile.xmin > 0,
        "top": tile.ymin > 0,
        "right": tile.xmax < frame.width,
        "bottom": tile.ymax < frame.height,
    }
    gaps = {
        "left": box.xmin - tile.xmin,
        "top": box.ymin - tile.ymin,
        "right": tile.xmax - box.xmax,
        "bottom": tile.ymax - box.ymax,
    }
    return frozenset(side for side in SIDES if inner[side] and gaps[side] <= tolerance)


def _interval_iou(a0: float, a1: float, b0: float, b1: float) -> float:
    inter = min(a1, b1) - max(a0, b0)
    union = max(a1, b1) - min(a0, b0)
    return inter / union if inter > 0 and union > 0 else 0.0


def continues_into(
    a: Box, a_cut: frozenset[str], b: Box, b_cut: frozenset[str], tolerance: float, agreement: float = 0.5
) -> bool:
    """Whether ``b`` goes on where a tile border cut ``a``: ``a`` cut on its right (bottom), ``b`` cut on its left
    (top) and starting at or before ``a``'s end (+ ``tolerance``), reaching further, and the two agreeing across
    the cut (their extents on the other axis overlap by ``agreement`` IoU or more): two pieces of one object."""
    if "right" in a_cut and "left" in b_cut and a.xmin < b.xmin <= a.xmax + tolerance and b.xmax > a.xmax:
        return _interval_iou(a.ymin, a.ymax, b.ymin, b.ymax) >= agreement
    if "bottom" in a_cut and "top" in b_cut and a.ymin < b.ymin <= a.ymax + tolerance and b.ymax > a.ymax:
        return _interval_iou(a.xmin, a.xmax, b.xmin, b.xmax) >= agreement
    return False


def box_union(a: Box, b: Box) -> Box:
    """The smallest box holding both."""
    return Box(min(a.xmin, b.xmin), min(a.ymin, b.ymin), max(a.xmax, b.xmax), max(a.ymax, b.ymax))


def union_cut(a: Box, a_cut: frozenset[str], b: Box, b_cut: frozenset[str]) -> frozenset[str]:
    """The cut sides of ``box_union(a, b)``: each side is cut where the piece that reaches furthest there was."""
    sides = set()
    for side, a_edge, b_edge in (
        ("left", -a.xmin, -b.xmin),
        ("top", -a.ymin, -b.ymin),
        ("right", a.xmax, b.xmax),
        ("bottom", a.ymax, b.ymax),
    ):
        if (a_edge >= b_edge and side in a_cut) or (b_edge >= a_edge and side in b_cut):
            sides.add(side)
    return frozenset(sides)
