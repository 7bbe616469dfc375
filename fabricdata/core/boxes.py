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
