"""Small defects in big frames: the tile grid, box pieces clipped into tiles and joined back, tiled export, sliced
prediction merged onto the whole frame (exact with an oracle in place of the model), review on the frame, advice."""

from __future__ import annotations

import hashlib
import itertools
import json
import shutil
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
    [
        (STRIP, 256, 0.0),
        (STRIP, 256, 0.25),
        (STRIP, 640, 0.2),
        (FRAME, 640, 0.25),
        (FRAME, 640, 0.0),
        (FRAME, 512, 0.3),
    ],
)
def test_the_grid_covers_the_frame_with_whole_tiles_aligned_to_its_edges(
    size: ImageSize, tile: int, overlap: float
) -> None:
    tiles = tile_grid(size, ImageSize(tile, tile), overlap)
    assert _covered(size, tiles).min() >= 1  # every pixel in some tile
    side = (min(tile, size.width), min(tile, size.height))
    assert {(t.width, t.height) for t in tiles} == {side}  # no padding: every tile full size, inside the frame
    assert all(t.xmin >= 0 and t.ymin >= 0 and t.xmax <= size.width and t.ymax <= size.height for t in tiles)
    assert max(t.xmax for t in tiles) == size.width and max(t.ymax for t in tiles) == size.height
    xs = sorted({t.xmin for t in tiles})
    steps = {b - a for a, b in itertools.pairwise(xs[:-1])}  # the last column is aligned, not stepped
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
        assert piece.xmin >= 0 and piece.xmax <= tile.width and piece.ymin >= 0 and piece.ymax <= tile.height
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
def test_pieces_of_one_defect_merge_back_into_it(
    size: ImageSize, tile: int, overlap: float, box: Box, pieces: int
) -> None:
    tiles = tile_grid(size, ImageSize(tile, tile), overlap)
    found = _pieces_of(box, "broken", tiles, size, tolerance=2.56)
    assert len(found) == pieces
    merged = merge_pieces(found, tolerance=2.56)
    assert [(m.label, m.box) for m in merged] == [("broken", box)]
    assert merged[0].confidence == 0.9


@pytest.mark.parametrize("order", [(0, 1, 2), (1, 0, 2), (2, 1, 0), (1, 2, 0)])
def test_halves_of_a_defect_never_outlive_its_whole_copy(order: tuple[int, int, int]) -> None:
    """Equally sure: a whole copy (tile in the overlap) and two halves that cover under half of each other
    (Florence-2's bins shave them); a single greedy pass leaves one half alone when the other claims the whole."""
    whole = Piece("drop", Box(245.89, 245.89, 266.11, 266.11), 1.0)
    top = Piece("drop", Box(245.89, 245.89, 266.11, 255.87), 1.0, frozenset({"bottom"}))
    left = Piece("drop", Box(245.89, 245.89, 255.87, 266.11), 1.0, frozenset({"right"}))
    pieces = [(whole, top, left)[k] for k in order]
    assert [m.box for m in merge_pieces(pieces, 2.56)] == [whole.box]


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


def test_sahi_is_installed_beside_one_opencv_only() -> None:
    """make setup installs sahi without its dependencies: its opencv-python would overwrite the cv2 of
    opencv-python-headless (FiftyOne and albumentations)."""
    from importlib.metadata import PackageNotFoundError, version

    assert version("sahi") and version("opencv-python-headless")
    with pytest.raises(PackageNotFoundError):
        version("opencv-python")


def test_without_sahi_tiling_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """finetune runs without sahi until a tiling is asked for; then the error says how to install it."""
    import subprocess
    import sys

    from fabricdata.core.errors import ConfigError
    from finetune.tiles import require_sahi

    probe = "import sys, finetune.predict, finetune.tiles, fabricdata.core.boxes; print('sahi' in sys.modules)"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "False"  # imported inside the functions only
    monkeypatch.setitem(sys.modules, "sahi.slicing", None)  # as if it were not installed
    with pytest.raises(ConfigError, match=r"pip install --no-deps sahi==0\.12\.8"):
        tile_grid(STRIP, ImageSize(256, 256), 0.2)
    with pytest.raises(ConfigError, match="make setup"):
        require_sahi()


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


# --- through the CLI: a tiled export, and sliced prediction with an oracle in place of the model -----------------

#: 20-px defects placed on the tile borders of a 256 grid with overlap 0.25 (tiles start every 192 px) and with
#: no overlap (every 256 px): cut by 2 (a border) or 4 (a corner), inside an overlap (whole in 2 or 4 tiles), at the
#: frame's edge, and a longer crease
PLANNED: dict[str, list[tuple[str, Box]]] = {
    "strip_a": [
        ("broken", Box(246, 100, 266, 120)),
        ("drop", Box(182, 30, 202, 50)),
        ("broken", Box(590, 150, 610, 170)),
        ("drop", Box(1015, 60, 1035, 80)),
        ("wrinkle", Box(1500, 120, 1560, 128)),
        ("broken", Box(4076, 230, 4096, 250)),
    ],
    "strip_b": [("broken", Box(3830, 10, 3850, 30)), ("drop", Box(2040, 200, 2060, 220))],
    "frame": [
        ("drop", Box(246, 246, 266, 266)),
        ("broken", Box(182, 182, 202, 202)),
        ("drop", Box(1015, 1270, 1035, 1290)),
        ("broken", Box(2185, 1785, 2205, 1805)),
        ("wrinkle", Box(600, 700, 620, 720)),
        ("wrinkle", Box(1000, 30, 1040, 40)),
        ("broken", Box(100, 2028, 120, 2048)),
    ],
}


def _cli(args: list[str]) -> str:
    """``fabricdata ARGS`` in this process (module fixtures have no capsys); exit 0 expected."""
    import contextlib
    import io

    from fabricdata.cli.main import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            main(args)
        except SystemExit as exc:
            assert not exc.code, f"fabricdata {' '.join(args)} exited {exc.code}:\n{out.getvalue()}"
    return out.getvalue()


def _labelimg(folder: Path, stem: str, size: ImageSize, objects: list[tuple[str, Box]]) -> None:
    """Replace a synthetic image's labels with planned boxes."""
    from fabricdata.core.annotation import ImageAnnotation, LabeledBox
    from fabricdata.formats.voc import voc_to_bytes

    image = next(folder.glob("*.jpg"))
    target = image.with_name(f"{stem}.jpg")
    image.rename(target)
    for xml in folder.glob("*.xml"):
        xml.unlink()
    boxes = tuple(LabeledBox(label=label, box=box) for label, box in objects)
    (folder / f"{stem}.xml").write_bytes(voc_to_bytes(ImageAnnotation(target.name, size, boxes, folder="synth")))


@pytest.fixture(scope="module")
def big_frames(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """Dataset of two 4096x256 strips and one 2448x2048 frame (``fabricdata synth --size``) with PLANNED boxes,
    all in the test split."""
    import uuid

    import fiftyone as fo

    root = tmp_path_factory.mktemp("big-frames")
    name = f"t-{uuid.uuid4().hex[:8]}"
    for seed, (stem, size) in enumerate((("strip_a", STRIP), ("strip_b", STRIP), ("frame", FRAME))):
        folder = root / stem
        size_option = f"{size.width}x{size.height}"
        _cli(["synth", str(folder), "--images", "1", "--size", size_option, "--seed", str(seed), "--workers", "1"])
        _labelimg(folder, stem, size, PLANNED[stem])
        _cli(["import", str(folder), "-d", name])
    _cli(["split", "-d", name, "--ratios", "0,0,1"])
    yield name, root
    fo.delete_dataset(name)


def _oracle(export: Path) -> Any:
    """A stand-in for ``finetune.predict.generate``: a tile of the export (found by its pixels) answers its own
    <OD> ground truth, any other image nothing; parsed and scored like a generation (confidence 1)."""
    from PIL import Image

    from fabricdata.core.florence import parse_pieces
    from finetune.predict import _detections

    truth: dict[str, str] = {}
    for listed in export.glob("*/annotations.jsonl"):
        for line in listed.read_text().splitlines():
            record = json.loads(line)
            if record["prefix"] == "<OD>":
                with Image.open(listed.parent / record["image"]) as tile:
                    truth[_pixels(tile.convert("RGB"))] = record["suffix"]

    def generate(model: Any, processor: Any, images: list[Any], options: Any, prompts: Any = None) -> list[Any]:
        results = []
        for image in images:
            text = truth.get(_pixels(image), "")
            found, malformed = _detections(parse_pieces([text]), [0.0], ImageSize(*image.size))
            results.append({"text": text, "detections": found, "malformed_boxes": malformed})
        return results

    return generate


def _pixels(image: Any) -> str:
    return hashlib.sha256(np.asarray(image).tobytes()).hexdigest()


@pytest.mark.parametrize(
    ("overlap", "min_visibility", "cut"),
    [("0.25", "0.5", "whole in a neighbour"), ("0", "0", "cut in 2 or 4 pieces")],
)
def test_oracle_predictions_merged_onto_the_frame_are_its_boxes(
    big_frames: tuple[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    overlap: str,
    min_visibility: str,
    cut: str,
) -> None:
    """Exactness through the CLI: export --tile, predict (the oracle answers each tile's own ground truth), review.
    Every frame's merged boxes are its labelled boxes, each within 1 px, none twice; the tiles saw more pieces."""
    import finetune.model
    import finetune.predict

    name, _ = big_frames
    export = tmp_path / "export"
    _cli(["export", "florence", str(export), "-d", name, "--tasks", "od", "--tile", "256", "--overlap", overlap,
          "--min-visibility", min_visibility, "--tile-negatives", "1000", "--allow-empty-split"])  # fmt: skip
    monkeypatch.setattr(finetune.predict, "generate", _oracle(export))
    monkeypatch.setattr(finetune.model, "load_for_inference", lambda *args, **kwargs: (None, None))
    run = tmp_path / "oracle"
    said = _cli(["predict", "--run", str(run), "--model", "oracle", "--data", str(export), "--batch-size", "16"])
    assert "sliced 256x256" in said
    records = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    assert sorted(Path(r["filepath"]).stem for r in records) == sorted(PLANNED)  # one record per whole frame
    pieces = 0
    for record in records:
        planned = PLANNED[Path(record["filepath"]).stem]
        _assert_planned([(d["label"], Box(*d["bbox"])) for d in record["detections"]], planned)
        pieces += sum(line.count("<loc_") // 4 for line in record["text"].splitlines())
        assert record["sliced"]["tiling"] == {"width": 256, "height": 256, "overlap": float(overlap)}
    assert pieces > sum(len(p) for p in PLANNED.values())  # the tiles saw duplicates and cut pieces
    reviewed = _cli(["review", "--run", str(run), "-d", name])
    assert "predicted on tiles 256x256" in reviewed
    summary = json.loads((run / "review.json").read_text())
    assert summary["ap50"] == 1.0 and summary["map"] > 0.99 and summary["images"] == 3, summary


def _within(a: Box, b: Box, tolerance: float) -> bool:
    return all(abs(x - y) <= tolerance for x, y in zip(a.as_tuple(), b.as_tuple(), strict=True))


# --- a tiled export of synthetic strips (with augmented variants), the whole loop, the advice ----------------------


@pytest.fixture(scope="module")
def strips(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Four 4096x256 synthetic strips (``fabricdata synth --size 4096x256``: 10-40 px defects), split, flipped."""
    import uuid

    import fiftyone as fo

    root = tmp_path_factory.mktemp("strips")
    name = f"t-{uuid.uuid4().hex[:8]}"
    _cli(["synth", str(root / "strips"), "--images", "4", "--size", "4096x256", "--seed", "5", "--workers", "1"])
    _cli(["import", str(root / "strips"), "-d", name])
    _cli(["split", "-d", name, "--ratios", "0.5,0.25,0.25"])
    _cli(["augment", "--recipe", "flip", "-d", name, "--workers", "1"])
    yield name
    fo.delete_dataset(name)


def _export_records(out: Path, folder: str) -> dict[str, str]:
    """Tile name -> its <OD> suffix."""
    lines = [json.loads(line) for line in (out / folder / "annotations.jsonl").read_text().splitlines()]
    return {r["image"]: r["suffix"] for r in lines if r["prefix"] == "<OD>"}


def test_a_tiled_export_cuts_each_frame_in_its_split_and_says_where_each_tile_lies(
    strips: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import fiftyone as fo
    import jsonschema
    from PIL import Image

    from fabricdata.cli.schemas import SCHEMA_DIR
    from fabricdata.core.boxes import fiftyone_to_box, florence_bin_width
    from fabricdata.core.florence import parse
    from fabricdata.core.images import load_rgb
    from fabricdata.store.dataset import F_SOURCE_ID
    from tests.helpers import run

    out = tmp_path / "tiles"
    args = [
        "export",
        "florence",
        str(out),
        "-d",
        strips,
        "--tile",
        "256",
        "--tile-negatives",
        "0.5",
        "--allow-empty-split",
    ]
    code, said, err = run(args, capsys)
    assert code == 0, err
    assert "box pieces:" in said
    manifest = json.loads((out / "manifest.json").read_text())
    jsonschema.validate(manifest, json.loads((SCHEMA_DIR / "export-manifest.schema.json").read_text()))
    tiling = manifest["tiling"]
    assert (tiling["width"], tiling["height"], tiling["overlap"], tiling["min_visibility"]) == (256, 256, 0.2, 0.5)
    ds = fo.load_dataset(strips)
    samples = {s.id: s for s in ds}
    variants = 0
    for folder, tag in (("train", "train"), ("valid", "val"), ("test", "test")):
        sources = [json.loads(line) for line in (out / folder / "sources.jsonl").read_text().splitlines()]
        frames = [json.loads(line) for line in (out / folder / "frames.jsonl").read_text().splitlines()]
        assert len(frames) == len(ds.match_tags(tag)) == tiling["frames"][folder]  # every frame of the split
        assert all((out / folder / f["image"]).is_file() for f in frames)
        suffixes = _export_records(out, folder)
        kinds = tiling["tiles"][folder]
        assert len(sources) == kinds["boxes"] + kinds["negatives"] == manifest["images"][folder]
        assert kinds["negatives"] == min(kinds["negatives"] + kinds["negatives_left"], kinds["boxes"] // 2)
        for source in sources:
            sample = samples[source["sample_id"]]
            assert tag in sample.tags  # a tile never leaves its frame's split
            variants += sample[F_SOURCE_ID] is not None
            x, y = source["offset"]
            w, h = source["tile"]
            with Image.open(out / folder / source["image"]) as tile:
                assert np.array_equal(
                    np.asarray(tile), np.asarray(load_rgb(sample.filepath).crop((x, y, x + w, y + h)))
                )
            frame = ImageSize(*source["frame"])
            tile_box = Box(x, y, x + w, y + h)
            expected = sorted(
                (d.label, box_to_tile(b, tile_box).as_tuple())
                for d in sample.ground_truth.detections
                if visibility(b := fiftyone_to_box(d.bounding_box, frame), tile_box) >= 0.5
            )
            got = sorted((label, box.as_tuple()) for label, box in parse(suffixes[source["image"]], ImageSize(w, h)))
            assert [g[0] for g in got] == [e[0] for e in expected]
            bin_w, _ = florence_bin_width(ImageSize(w, h))
            assert all(
                abs(a - b) <= bin_w for g, e in zip(got, expected, strict=True) for a, b in zip(g[1], e[1], strict=True)
            )
    assert variants > 0  # augmented variants are tiled like originals
    again = tmp_path / "again"
    assert run([*args[:2], str(again), *args[3:]], capsys)[0] == 0
    assert _tree_digest(out) == _tree_digest(again)  # deterministic, negatives included


def _tree_digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_validate_advises_the_tile_for_strips(strips: str, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.helpers import run

    code, out, _ = run(["validate", "-d", strips, "--json"], capsys)
    assert code == 0
    findings = {f["check"]: f for f in json.loads(out)["findings"]}
    advice = findings["small-defects"]
    assert advice["severity"] == "warning" and advice["count"] == 4  # the originals, not their flipped copies
    assert "--tile 256 --overlap" in advice["message"] and "16.0:1" in advice["message"]
    assert advice["view"] == "validate-small-defects"


@pytest.mark.slow
def test_the_whole_loop_on_strips_export_tiles_train_predict_on_frames_review(
    strips: str, tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """export --tile, train (tiny model), predict (the run's export tiling by default), review on the whole
    frames, runs shows the tiling; then whole-frame prediction of the same run is reviewed on the same frames."""
    import fiftyone as fo

    from tests.helpers import prediction_records, run

    export = tmp_path / "export"
    args = ["export", "florence", str(export), "-d", strips, "--tasks", "od", "--tile", "256", "--allow-empty-split"]
    assert run(args, capsys)[0] == 0
    runs = tmp_path / "runs"
    settings = ["--set", "epochs=1", "--set", "batch_size=8", "--set", "num_workers=0", "--set", "lr=1e-3"]
    code, _, err = run(["train", "--set", f"model={tiny_model_dir}", "--set", f"data={export}",
                        "--set", f"out={runs / 'tiled'}", *settings], capsys)  # fmt: skip
    assert code == 0, err
    code, said, err = run(["predict", "--run", str(runs / "tiled"), "--max-new-tokens", "24"], capsys)
    assert code == 0, err
    assert "sliced 256x256, overlap 0.2" in said
    records = prediction_records(runs / "tiled" / "predictions.jsonl")
    test_frames = fo.load_dataset(strips).match_tags("test")
    assert sorted(r["filepath"] for r in records) == sorted(test_frames.values("filepath"))
    for record in records:
        assert record["sliced"] == {"tiling": {"width": 256, "height": 256, "overlap": 0.2}, "tiles": 20,
                                    "full_frame": False}  # fmt: skip
        assert len(record["text"].splitlines()) == 20  # one generation per tile
        assert all(0 <= d["bbox"][0] <= d["bbox"][2] <= 4096 and d["bbox"][3] <= 256 for d in record["detections"])
    code, said, err = run(["review", "--run", str(runs / "tiled"), "-d", strips, "--min-confidence", "0"], capsys)
    assert code == 0, err
    assert "predicted on tiles 256x256, overlap 0.2" in said
    tiled = json.loads((runs / "tiled" / "review.json").read_text())
    assert tiled["images"] == len(test_frames) and tiled["tiling"] == "tiles 256x256, overlap 0.2"
    assert tiled["ground_truth"] == test_frames.count("ground_truth.detections")  # the frames' own boxes
    shutil.copytree(runs / "tiled", runs / "whole")  # the same model, predicting whole frames
    code, said, err = run(["predict", "--run", str(runs / "whole"), "--tile", "none", "--max-new-tokens", "24"], capsys)
    assert code == 0 and "sliced" not in said, err
    assert all("sliced" not in r for r in prediction_records(runs / "whole" / "predictions.jsonl"))
    assert run(["review", "--run", str(runs / "whole"), "-d", strips, "--min-confidence", "0"], capsys)[0] == 0
    whole = json.loads((runs / "whole" / "review.json").read_text())
    assert (whole["images"], whole["ground_truth"]) == (tiled["images"], tiled["ground_truth"])  # same truth
    code, _, err = run(["runs", "--root", str(runs), "--sort", "name", "--md", str(tmp_path / "runs.md")], capsys)
    assert code == 0, err
    lines = (tmp_path / "runs.md").read_text().splitlines()
    header = [cell.strip() for cell in lines[2].strip("|").split("|")]
    rows = {cells[0]: cells for cells in ([c.strip() for c in line.strip("|").split("|")] for line in lines[4:])}
    tiling = header.index("tiling")
    assert rows["tiled"][tiling] == "tiles 256x256, overlap 0.2"
    assert rows["whole"][tiling] == "tiles 256x256, overlap 0.2; predicted on whole frames"


def test_prelabel_and_serve_slice_photos_the_same_way(
    big_frames: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """New photos drafted tile by tile (prelabel --tile) and the page's detector with a tiling: the oracle's
    merged boxes land on the whole photos."""
    import fiftyone as fo

    import finetune.model
    import finetune.predict
    from fabricdata.assist.serve import Detector
    from fabricdata.core.boxes import fiftyone_to_box
    from finetune.data import read_image

    source, root = big_frames
    export = tmp_path / "export"
    _cli(["export", "florence", str(export), "-d", source, "--tasks", "od", "--tile", "256", "--overlap", "0.25",
          "--tile-negatives", "1000", "--allow-empty-split"])  # fmt: skip
    monkeypatch.setattr(finetune.predict, "generate", _oracle(export))
    monkeypatch.setattr(finetune.model, "load_for_inference", lambda *args, **kwargs: (None, None))
    photos = tmp_path / "photos"
    photos.mkdir()
    for stem in PLANNED:
        shutil.copy(root / stem / f"{stem}.jpg", photos)
    said = _cli(["prelabel", str(photos), "--run", str(tmp_path / "oracle"), "--model", "oracle", "-d", name,
                 "--tile", "256", "--overlap", "0.25", "--min-confidence", "0"])  # fmt: skip
    assert "3 images prelabeled" in said
    for sample in fo.load_dataset(name):
        size = ImageSize(sample.metadata.width, sample.metadata.height)
        got = [(d.label, fiftyone_to_box(d.bounding_box, size)) for d in sample.ground_truth.detections]
        _assert_planned(got, PLANNED[Path(sample.filepath).stem])
    tiling = Tiling(width=256, height=256, overlap=0.25)
    detector = Detector("oracle", (), batch_size=16, max_new_tokens=None, num_beams=1, tiling=tiling,
                        tile_and_full=True)  # fmt: skip
    images = [(stem, read_image(photos / f"{stem}.jpg")) for stem in PLANNED]
    found, _ = detector.detect(images, "od")
    for photo in found:
        _assert_planned([(d["label"], Box(*d["bbox"])) for d in photo.results[0]["detections"]], PLANNED[photo.name])
        assert photo.results[0]["sliced"]["full_frame"] is True  # the whole photo asked too (the oracle: nothing)
    grounded, _ = detector.detect(images[:1], "grounding", "broken thread, dropped stitch")
    assert [r["phrase"] for r in grounded[0].results] == ["broken thread", "dropped stitch"]  # merged per phrase


def _assert_planned(got: list[tuple[str, Box]], planned: list[tuple[str, Box]]) -> None:
    assert len(got) == len(planned), got
    for label, box in planned:
        assert sum(g[0] == label and _within(g[1], box, 1.0) for g in got) == 1, (label, box, got)
