"""Florence-2 JSONL export: processor round trip, determinism, orders, negatives, budget, schemas."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fabricdata.cli.schemas import SCHEMA_DIR
from fabricdata.core.annotation import LabeledBox
from fabricdata.core.boxes import Box, ImageSize, fiftyone_to_box, florence_bin_width
from fabricdata.core.florence import TASK_DENSE, TASK_GROUNDING, TASK_OD, parse
from fabricdata.prepare.export import ExportOptions, records_for
from fabricdata.prepare.synth import SynthConfig, generate
from tests.helpers import run

FOLDERS = ("train", "valid", "test")


def _dataset(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str], classes: str = "", images: int = 30
) -> None:
    config = SynthConfig(images=images, seed=8, width=320, height=240)
    if classes:
        config = SynthConfig(images=images, seed=8, width=320, height=240, classes=tuple(classes.split(",")))
    generate(config, tmp_path / "data")
    assert run(["import", str(tmp_path / "data"), "-d", name], capsys)[0] == 0
    assert run(["split", "-d", name, "--ratios", "0.6,0.2,0.2"], capsys)[0] == 0


def _lines(out: Path, folder: str) -> list[dict[str, str]]:
    text = (out / folder / "annotations.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()]


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_export_round_trips_through_the_processor_and_follows_its_schemas(
    tmp_path: Path,
    name: str,
    tiny_processor,
    capsys: pytest.CaptureFixture[str],  # type: ignore[no-untyped-def]
) -> None:
    import fiftyone as fo

    _dataset(tmp_path, name, capsys)
    out = tmp_path / "export"
    code, text, _ = run(["export", "florence", str(out), "-d", name], capsys)
    assert code == 0 and "content hash" in text
    record_schema = json.loads((SCHEMA_DIR / "export-record.schema.json").read_text())
    manifest = json.loads((out / "manifest.json").read_text())
    jsonschema.validate(manifest, json.loads((SCHEMA_DIR / "export-manifest.schema.json").read_text()))
    ds = fo.load_dataset(name)
    by_name = {Path(s.filepath).name: s for s in ds}
    checked = 0
    for folder in FOLDERS:
        for record in _lines(out, folder):
            jsonschema.validate(record, record_schema)
            assert (out / folder / record["image"]).is_file()
            assert "<loc_1000>" not in record["suffix"]
            if record["prefix"] != "<OD>":
                continue
            sample = by_name[record["image"]]
            size = ImageSize(sample.metadata.width, sample.metadata.height)
            theirs = tiny_processor.post_process_generation(
                record["suffix"], task="<OD>", image_size=(size.width, size.height)
            )["<OD>"]
            truth = sorted(
                (d.label, fiftyone_to_box(d.bounding_box, size).as_tuple()) for d in sample.ground_truth.detections
            )
            got = sorted(zip(theirs["labels"], [tuple(b) for b in theirs["bboxes"]], strict=True))
            assert [g[0] for g in got] == [t[0] for t in truth]
            bin_w, bin_h = florence_bin_width(size)
            for (_, g), (_, t) in zip(got, truth, strict=True):  # within one bin (+1 px: the processor truncates)
                assert all(abs(a - b) <= bw + 1 for a, b, bw in zip(g, t, (bin_w, bin_h, bin_w, bin_h), strict=True))
            checked += 1
    assert checked == sum(manifest["records"][f]["<OD>"] for f in FOLDERS) == 30
    assert manifest["images"]["train"] + manifest["images"]["valid"] + manifest["images"]["test"] == 30


def test_exporting_twice_is_byte_identical(tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    _dataset(tmp_path, name, capsys)
    for out in ("a", "b"):
        assert run(["export", "florence", str(tmp_path / out), "-d", name], capsys)[0] == 0
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert run(["export", "florence", str(tmp_path / "a"), "-d", name], capsys)[0] == 0  # over an old export
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")


def test_hyphens_and_spaces_in_class_names_survive(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import fiftyone as fo

    _dataset(tmp_path, name, capsys, classes="broken-weft,oil stain,wrinkle")
    out = tmp_path / "export"
    assert run(["export", "florence", str(out), "-d", name, "--tasks", "od"], capsys)[0] == 0
    ds = fo.load_dataset(name)
    exported = sorted(
        label for f in FOLDERS for r in _lines(out, f) for label, _ in parse(r["suffix"], ImageSize(320, 240))
    )
    assert exported == sorted(ds.values("ground_truth.detections.label", unwind=True))
    assert {"broken-weft", "oil stain"} <= set(exported)


def test_task_orders(tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    _dataset(tmp_path, name, capsys)
    results = {}
    for order, seed in (("sequential", 0), ("interleave", 0), ("shuffle", 1), ("shuffle", 2)):
        out = tmp_path / f"{order}-{seed}"
        assert run(["export", "florence", str(out), "-d", name, "--order", order, "--seed", str(seed)], capsys)[0] == 0
        results[(order, seed)] = _lines(out, "train")
    sequential = [r["prefix"][:4] for r in results[("sequential", 0)]]
    assert sequential == sorted(sequential, key=lambda p: ["<OD>", "<DEN", "<CAP"].index(p))  # OD, dense, grounding
    interleave = results[("interleave", 0)]
    assert [r["image"] for r in interleave[:2]] == [interleave[0]["image"]] * 2  # one image's records together
    assert interleave[0]["prefix"] == "<OD>" and interleave[1]["prefix"] == "<DENSE_REGION_CAPTION>"
    canon = sorted(json.dumps(r) for r in results[("sequential", 0)])
    for key in (("interleave", 0), ("shuffle", 1), ("shuffle", 2)):
        assert sorted(json.dumps(r) for r in results[key]) == canon  # same records, other order
    assert results[("shuffle", 1)] != results[("shuffle", 2)] != results[("sequential", 0)]


def test_negatives_empty_splits_and_budget(tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    import fiftyone as fo

    generate(SynthConfig(images=20, seed=2, width=320, height=240), tmp_path / "data")
    run(["import", str(tmp_path / "data"), "-d", name], capsys)
    run(["split", "-d", name, "--ratios", "1,0,0"], capsys)
    ds = fo.load_dataset(name)
    clean = sum(1 for s in ds if not s.ground_truth.detections)
    assert clean > 0
    out = tmp_path / "neg"
    code, _, err = run(["export", "florence", str(out), "-d", name], capsys)
    assert code == 1 and "split valid (val), test would be empty" in err and "--allow-empty-split" in err
    assert not out.exists()  # refused before anything was written
    assert run(["export", "florence", str(out), "-d", name, "--allow-empty-split"], capsys)[0] == 0
    od = [r for r in _lines(out, "train") if r["prefix"] == "<OD>"]
    assert sum(1 for r in od if r["suffix"] == "") == clean  # "nothing here" examples
    assert (out / "valid" / "annotations.jsonl").read_text() == "" == (out / "test" / "annotations.jsonl").read_text()
    out = tmp_path / "noneg"
    assert run(["export", "florence", str(out), "-d", name, "--no-negatives", "--allow-empty-split"], capsys)[0] == 0
    assert all(r["suffix"] for r in _lines(out, "train"))
    # a tight label budget: records that might not fit are reported and skipped, never truncated
    out = tmp_path / "budget"
    code, text, _ = run(
        [
            "export",
            "florence",
            str(out),
            "-d",
            name,
            "--tasks",
            "od",
            "--max-label-tokens",
            "20",
            "--allow-empty-split",
        ],
        capsys,
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert code == 0 and manifest["over_budget"] and "over the label budget" in text
    for record in _lines(out, "train"):
        sample = ds.one(fo.ViewField("filepath").ends_with("/" + record["image"]))
        assert len(parse(record["suffix"], ImageSize(320, 240))) == len(sample.ground_truth.detections)


def test_phrases_and_captions(tmp_path: Path) -> None:
    size = ImageSize(1000, 1000)
    objects = [
        LabeledBox("broken", Box(500, 600, 520, 700)),
        LabeledBox("drop", Box(10, 10, 30, 30)),
        LabeledBox("broken", Box(100, 200, 120, 300)),
        LabeledBox("drop", Box(800, 900, 820, 950), caption="dropped stitch near the selvedge"),
    ]
    options = ExportOptions(phrases={"broken": "broken weft"})
    records = records_for(objects, size, "x.jpg", options)
    grounding = records[TASK_GROUNDING]
    assert grounding is not None
    caption = "fabric with a drop, two broken wefts and a dropped stitch near the selvedge"
    assert grounding["prefix"] == "<CAPTION_TO_PHRASE_GROUNDING>" + caption
    assert grounding["suffix"].startswith("a drop<loc_10><loc_10><loc_30><loc_30>two broken wefts<loc_100>")
    dense = records[TASK_DENSE]
    assert dense is not None and "broken weft<loc_100>" in dense["suffix"]
    assert "dropped stitch near the selvedge<loc_800>" in dense["suffix"]
    od = records[TASK_OD]
    assert od is not None and od["suffix"].startswith("drop<loc_10>")  # OD keeps class names


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([7, 640, 999, 1000, 1024, 2448, 4096]),
    st.sampled_from([5, 480, 1000, 2048]),
    st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1), st.floats(0, 1), st.floats(0, 1)), max_size=6),
)
def test_no_loc_1000_ever(width: int, height: int, raw: list[tuple[float, float, float, float]]) -> None:
    size = ImageSize(width, height)
    objects = []
    for a, b, c, d in raw:
        x1, x2 = sorted((a * width, c * width))
        y1, y2 = sorted((b * height, d * height))
        if x2 > x1 and y2 > y1:
            objects.append(LabeledBox("drop", Box(x1, y1, x2, y2)))
    for record in records_for(objects, size, "x.jpg", ExportOptions()).values():
        assert record is None or "<loc_1000>" not in record["suffix"]


def test_export_of_a_saved_view(tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    import fiftyone as fo

    _dataset(tmp_path, name, capsys)
    ds = fo.load_dataset(name)
    ds.save_view("with-drops", ds.match(fo.ViewField("ground_truth.detections.label").contains("drop")))
    out = tmp_path / "view"
    assert run(["export", "florence", str(out), "-d", name, "--view", "with-drops", "--tasks", "od"], capsys)[0] == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["view"] == "with-drops"
    assert sum(manifest["images"].values()) == len(ds.load_saved_view("with-drops"))
    code, _, err = run(["export", "florence", str(out), "-d", name, "--view", "nope"], capsys)
    assert code == 1 and "no saved view" in err
