"""The Florence-2 text codec, checked against the real (tiny, offline) Florence2Processor."""

from __future__ import annotations

import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fabricdata.core import florence as fl
from fabricdata.core.boxes import Box, ImageSize, box_to_florence, florence_to_box
from fabricdata.core.errors import ConfigError


def test_encode_objects_orders_top_to_bottom_then_left_to_right() -> None:
    size = ImageSize(1000, 1000)
    text = fl.encode_objects([("drop", Box(500, 500, 600, 600)), ("wrinkle", Box(10, 10, 20, 20))], size)
    assert text == "wrinkle<loc_10><loc_10><loc_20><loc_20>drop<loc_500><loc_500><loc_600><loc_600>"


def test_encode_grounding_puts_all_boxes_after_their_phrase() -> None:
    size = ImageSize(1000, 1000)
    text = fl.encode_grounding([("broken weft", [Box(300, 0, 310, 50), Box(0, 0, 10, 50)])], size)
    assert text == "broken weft<loc_0><loc_0><loc_10><loc_50><loc_300><loc_0><loc_310><loc_50>"


def test_labels_that_would_break_the_grammar_are_refused() -> None:
    with pytest.raises(ConfigError, match="cannot be written"):
        fl.encode_objects([("a<b", Box(0, 0, 1, 1))], ImageSize(10, 10))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("broken-weft<loc_1><loc_2><loc_3><loc_4>", [("broken-weft", (1, 2, 3, 4))]),
        ("fil cassé<loc_1><loc_2><loc_3><loc_4>", [("fil cassé", (1, 2, 3, 4))]),
        ("two words <loc_1><loc_2><loc_3><loc_4>", [("two words", (1, 2, 3, 4))]),
        (
            "drop<loc_1><loc_2><loc_3><loc_4><loc_5><loc_6><loc_7><loc_8>",
            [("drop", (1, 2, 3, 4)), ("drop", (5, 6, 7, 8))],
        ),
        ("</s><s>drop<loc_1><loc_2><loc_3><loc_4></s><pad><pad>", [("drop", (1, 2, 3, 4))]),
        ("<s>drop<loc_1><loc_2><loc_3><loc_4>wrinkle<loc_5><loc_6>", [("drop", (1, 2, 3, 4))]),
        ("drop<loc_1><loc_2>wrinkle<loc_5><loc_6><loc_7><loc_8>", [("wrinkle", (5, 6, 7, 8))]),
        ("drop<loc_1><loc_2><loc_3><loc_1000>", []),
        ("<loc_1><loc_2><loc_3><loc_4>", []),
        ("drop<loc_1><loc_2><loc_3><loc_", []),
        ("", []),
        ("<<<>>>", []),
    ],
)
def test_parse_cases(text: str, expected: list[tuple[str, tuple[int, ...]]]) -> None:
    assert [(p.label, p.bins) for p in fl.parse_pieces([text])] == expected


def test_parse_pieces_records_which_tokens_make_each_box() -> None:
    pieces = ["<s>", "bro", "ken", "<loc_1>", "<loc_2>", "<loc_3>", "<loc_4>", "drop", "<loc_5>", "<loc_6>"]
    (found,) = fl.parse_pieces(pieces)
    assert found.label == "broken"
    assert found.label_pieces == (1, 2)
    assert found.loc_pieces == (3, 4, 5, 6)


_FRAGMENTS = st.sampled_from(
    [
        "drop",
        "broken-weft",
        " ",
        "é",
        "<loc_5>",
        "<loc_999>",
        "<loc_1000>",
        "<s>",
        "</s>",
        "<pad>",
        "<",
        ">",
        "loc_",
    ]
)


@pytest.mark.slow
@settings(max_examples=400, deadline=None)
@given(st.lists(_FRAGMENTS, max_size=40))
def test_parser_never_raises_and_only_returns_complete_boxes(fragments: list[str]) -> None:
    for item in fl.parse_pieces(["".join(fragments)]):
        assert item.label.strip() == item.label and item.label
        assert all(0 <= b <= 999 for b in item.bins)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["drop", "broken-weft", "wrinkle"]), st.integers(0, 999)), max_size=8))
def test_encode_then_parse_round_trip(raw: list[tuple[str, int]]) -> None:
    size = ImageSize(1000, 1000)
    objects = [(label, Box(float(v) // 2, float(v) // 3, float(v) // 2 + 1, float(v) // 3 + 1)) for label, v in raw]
    parsed = fl.parse(fl.encode_objects(objects, size), size)
    assert sorted(label for label, _ in parsed) == sorted(label for label, _ in objects)
    assert sorted(box_to_florence(b, size) for _, b in parsed) == sorted(box_to_florence(b, size) for _, b in objects)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(["drop", "broken weft", "fil cassé"]), st.integers(0, 1023)), max_size=6),
    st.booleans(),
)
def test_every_suffix_the_export_writes_is_in_the_grammar_training_checks(
    raw: list[tuple[str, int]], grouped: bool
) -> None:
    size = ImageSize(1024, 768)
    boxes = [(label, Box(v / 2, v / 3, v / 2 + 1, min(768.0, v / 3 + 1))) for label, v in raw]
    if grouped:
        groups: dict[str, list[Box]] = {}
        for label, box in boxes:
            groups.setdefault(label, []).append(box)
        text = fl.encode_grounding(list(groups.items()), size)
    else:
        text = fl.encode_objects(boxes, size)
    assert fl.suffix_problem(text) is None, text


@pytest.mark.parametrize(
    ("text", "problem", "value"),
    [
        ("drop<loc_1><loc_2><loc_3><loc_1000>", "not one of the location tokens <loc_0>..<loc_999>", "<loc_1000>"),
        ("drop<loc_01><loc_2><loc_3><loc_4>", "not one of the location tokens <loc_0>..<loc_999>", "<loc_01>"),
        ("drop<loc_1><loc_2><loc_3>", "a label needs boxes of 4 location tokens each (got 3)", "drop"),
        ("drop<loc_1><loc_2><loc_3><loc_4>wrinkle", "a label needs boxes of 4 location tokens each (got 0)", "wrinkle"),
        ("<loc_1><loc_2><loc_3><loc_4>", "a location token without a label before it", "<loc_1>"),
        ("drop<loc_1><loc_2><loc_3><loc_4></s>", "not a location token (a suffix holds labels and <loc_N> tokens only)",
         "</s>"),
        ("drop<loc_1><loc_2><loc_3><loc_4> <loc_1><loc_2><loc_3><loc_4>", "a blank label", " "),
    ],
)  # fmt: skip
def test_suffixes_off_the_grammar_name_their_problem(text: str, problem: str, value: str) -> None:
    assert fl.suffix_problem(text) == (problem, value)


def _random_boxes(rng: random.Random, n: int) -> list[tuple[ImageSize, Box]]:
    cases = []
    for _ in range(n):
        size = ImageSize(rng.choice([7, 640, 999, 1000, 1024, 1536, 2448, 4096]), rng.choice([5, 480, 768, 2048]))
        xs = sorted(rng.sample(range(size.width + 1), 2))
        ys = sorted(rng.sample(range(size.height + 1), 2))
        cases.append((size, Box(xs[0], ys[0], xs[1], ys[1])))
    cases.append((ImageSize(1024, 1024), Box(896, 896, 1000, 1024)))
    return cases


def test_quantizer_equals_processor_bit_for_bit(tiny_processor) -> None:  # type: ignore[no-untyped-def]
    quantize = tiny_processor.post_processor.quantize
    for size, box in _random_boxes(random.Random(0), 3000):
        theirs = quantize(torch.tensor([box.as_tuple()], dtype=torch.float32), (size.width, size.height))
        assert tuple(theirs[0].tolist()) == box_to_florence(box, size), (size, box)


def test_parser_agrees_with_post_process_generation(tiny_processor) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(1)
    for _ in range(200):
        size = ImageSize(rng.choice([640, 1024, 2448]), rng.choice([480, 768, 2048]))
        labels = [rng.choice(["drop", "broken-weft", "wrinkle", "two words"]) for _ in range(rng.randint(0, 5))]
        text = "</s><s>"
        for label in labels:
            text += label + "".join(f"<loc_{rng.randint(0, 999)}>" for _ in range(4 * rng.randint(1, 2)))
        text += "</s>"
        theirs = tiny_processor.post_process_generation(text, task="<OD>", image_size=(size.width, size.height))
        ours = fl.parse(text, size)
        assert [label for label, _ in ours] == theirs["<OD>"]["labels"]
        # the processor truncates its decoded bin centres to int; ours are the exact centres
        assert [[int(v) for v in box.as_tuple()] for _, box in ours] == theirs["<OD>"]["bboxes"]


def test_bin_centre_decode(tiny_processor) -> None:  # type: ignore[no-untyped-def]
    dequantize = tiny_processor.post_processor.dequantize
    size = ImageSize(2448, 2048)
    bins = (0, 17, 874, 999)
    ours = florence_to_box(bins, size)
    theirs = dequantize(torch.tensor([bins]), (size.width, size.height))[0].tolist()
    assert [int(v) for v in ours.as_tuple()] == theirs


def test_malformed_generated_boxes_are_counted_not_predicted(tiny_model_dir) -> None:  # type: ignore[no-untyped-def]
    """A random model writes corners in any order: such boxes are counted as malformed, never returned."""
    from PIL import Image

    from finetune.model import load_for_inference
    from finetune.predict import PredictOptions, generate

    model, processor = load_for_inference(tiny_model_dir)
    images = [Image.new("RGB", (64, 48), (i * 30, 90, 120)) for i in range(6)]
    results = generate(model, processor, images, PredictOptions(max_new_tokens=60, num_beams=1))
    for result in results:
        for det in result["detections"]:
            assert det["bbox"][0] <= det["bbox"][2] and det["bbox"][1] <= det["bbox"][3]
        parsed = fl.parse_pieces([result["text"]])
        assert len(parsed) == len(result["detections"]) + result["malformed_boxes"]
