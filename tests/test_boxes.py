"""The one box convention: every converter tested for value, type, input not mutated and round trip."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fabricdata.core import boxes as bx
from fabricdata.core.boxes import Box, ImageSize

WIDTHS = [7, 999, 1000, 1536, 2448, 4096]


@st.composite
def voc_boxes(draw: st.DrawFn) -> tuple[ImageSize, tuple[int, int, int, int]]:
    width = draw(st.sampled_from(WIDTHS))
    height = draw(st.sampled_from(WIDTHS))
    x1 = draw(st.integers(0, width - 1))
    x2 = draw(st.integers(x1 + 1, width))
    y1 = draw(st.integers(0, height - 1))
    y2 = draw(st.integers(y1 + 1, height))
    return ImageSize(width, height), (x1, y1, x2, y2)


@st.composite
def float_boxes(draw: st.DrawFn) -> tuple[ImageSize, Box]:
    size, _ = draw(voc_boxes())
    xs = sorted(draw(st.lists(st.floats(0, size.width), min_size=2, max_size=2, unique=True)))
    ys = sorted(draw(st.lists(st.floats(0, size.height), min_size=2, max_size=2, unique=True)))
    return size, Box(xs[0], ys[0], xs[1], ys[1])


@settings(max_examples=400, deadline=None)
@given(voc_boxes())
def test_voc_fiftyone_round_trip_reproduces_every_integer(case: tuple[ImageSize, tuple[int, ...]]) -> None:
    size, voc = case
    original = list(voc)
    rel = bx.box_to_fiftyone(bx.voc_to_box(original), size)
    back = bx.box_to_voc(bx.fiftyone_to_box(rel, size))
    assert back == tuple(voc)
    assert original == list(voc)  # not mutated
    assert all(isinstance(v, int) for v in back)
    assert all(isinstance(v, float) for v in rel)


@settings(max_examples=300, deadline=None)
@given(voc_boxes())
def test_yolo_and_createml_round_trips(case: tuple[ImageSize, tuple[int, ...]]) -> None:
    size, voc = case
    box = bx.voc_to_box(voc)
    assert bx.box_to_voc(bx.yolo_to_box(bx.box_to_yolo(box, size), size)) == tuple(voc)
    coords = bx.box_to_createml(box)
    frozen = dict(coords)
    assert bx.box_to_voc(bx.createml_to_box(coords)) == tuple(voc)
    assert coords == frozen
    xywh = list(bx.box_to_xywh(box))
    assert bx.xywh_to_box(xywh) == box and xywh == list(bx.box_to_xywh(box))  # exact for integers, not mutated
    assert xywh[2:] == [box.width, box.height] and all(isinstance(v, float) for v in xywh)


@settings(max_examples=300, deadline=None)
@given(voc_boxes())
def test_yolo_six_decimals_still_round_trip_to_integers(case: tuple[ImageSize, tuple[int, ...]]) -> None:
    """LabelImg writes YOLO with %.6f: good to +-0.5e-6 of the size, i.e. < 0.5 px for sizes < 1e6."""
    size, voc = case
    written = [float(f"{v:.6f}") for v in bx.box_to_yolo(bx.voc_to_box(voc), size)]
    assert bx.box_to_voc(bx.yolo_to_box(written, size)) == tuple(voc)


@settings(max_examples=500, deadline=None)
@given(float_boxes())
def test_florence_bins_in_range_and_decode_within_half_a_bin(case: tuple[ImageSize, Box]) -> None:
    size, box = case
    bins = bx.box_to_florence(box, size)
    assert all(isinstance(b, int) and 0 <= b <= 999 for b in bins)
    decoded = bx.florence_to_box(bins, size)
    half_w, half_h = (extent / 2 for extent in bx.florence_bin_width(size))
    eps = 1e-3  # float32 quantisation, as the processor computes
    assert abs(decoded.xmin - box.xmin) <= half_w + eps
    assert abs(decoded.xmax - box.xmax) <= half_w + eps
    assert abs(decoded.ymin - box.ymin) <= half_h + eps
    assert abs(decoded.ymax - box.ymax) <= half_h + eps


def test_quantize_uses_float32_like_the_processor() -> None:
    assert bx.quantize(896, 1024) == 874  # exact arithmetic would say 875
    assert bx.quantize(0, 1024) == 0
    assert bx.quantize(1024, 1024) == 999  # clamped, never <loc_1000>
    assert bx.quantize(-3, 1024) == 0


def test_dequantize_is_the_bin_centre() -> None:
    assert bx.dequantize(0, 1000) == 0.5
    assert bx.dequantize(999, 2000) == pytest.approx(1999.0)


def test_round_half_up_never_truncates() -> None:
    assert bx.box_to_voc(Box(0.5, 1.49, 2.5000001, 3.99)) == (1, 1, 3, 4)


def test_albumentations_converters() -> None:
    box = Box(1.0, 2.0, 30.0, 40.0)
    values = bx.box_to_albumentations(box)
    assert values == (1.0, 2.0, 30.0, 40.0)
    noisy = [np.float32(20.000000596), 2.0, 30.0, 40.0, "label"]
    kept = copy.deepcopy(noisy)
    assert bx.albumentations_to_box(noisy) == Box(20.0, 2.0, 30.0, 40.0)
    assert noisy == kept


def test_fiftyone_value_and_type() -> None:
    rel = bx.box_to_fiftyone(Box(10, 20, 30, 60), ImageSize(100, 200))
    assert rel == [0.1, 0.1, 0.2, 0.2]
    back = bx.fiftyone_to_box(rel, ImageSize(100, 200))
    assert back.as_tuple() == pytest.approx((10.0, 20.0, 30.0, 60.0), abs=1e-9)
    assert all(isinstance(v, float) for v in back.as_tuple())


def test_box_problem_messages() -> None:
    size = ImageSize(10, 10)
    assert bx.box_problem(Box(1, 1, 5, 5), size) is None
    assert "xmin" in (bx.box_problem(Box(5, 1, 5, 5), size) or "")
    assert "outside" in (bx.box_problem(Box(1, 1, 11, 5), size) or "")
    assert "finite" in (bx.box_problem(Box(math.nan, 1, 5, 5), size) or "")


def test_iou() -> None:
    a = Box(0, 0, 10, 10)
    assert bx.iou(a, a) == 1.0
    assert bx.iou(a, Box(5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert bx.iou(a, Box(20, 20, 30, 30)) == 0.0
