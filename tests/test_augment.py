"""Augment, split, balance: exact boxes, lineage, idempotency, leak-free stratified stable splits."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from fabricdata.core.boxes import ImageSize, fiftyone_to_box
from fabricdata.prepare.augment import read_rgb
from tests.helpers import imported_synth, new_name, run

SPLITS = ("train", "val", "test")


def _boxes(sample) -> list[tuple[str, tuple[float, ...]]]:  # type: ignore[no-untyped-def]
    size = ImageSize(sample.metadata.width, sample.metadata.height)
    return [(d.label, fiftyone_to_box(d.bounding_box, size).as_tuple()) for d in sample.ground_truth.detections]


def _split_of(sample) -> str | None:  # type: ignore[no-untyped-def]
    found = [t for t in sample.tags if t in SPLITS]
    assert len(found) <= 1
    return found[0] if found else None


def test_flip_is_exact_with_lineage_and_idempotent(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import fiftyone as fo

    imported_synth(tmp_path / "data", name, capsys, images=12)
    assert run(["split", "-d", name], capsys)[0] == 0
    code, out, _ = run(["augment", "--recipe", "flip", "-d", name, "--workers", "1"], capsys)
    assert code == 0 and "0 box(es) dropped" in out
    ds = fo.load_dataset(name)
    variants = ds.exists("source_id")
    assert len(variants) == len(ds.match_tags("train")) // 2 > 0
    for variant in variants:
        source = ds[variant.source_id]
        assert Path(variant.filepath).name == "flipped_" + Path(source.filepath).name
        assert variant.aug_recipe == "flip" and variant.aug_copy == 0 and variant.aug_recipe_hash
        assert _split_of(variant) == _split_of(source) == "train"
        width = source.metadata.width
        expected = sorted((label, (width - b[2], b[1], width - b[0], b[3])) for label, b in _boxes(source))
        got = sorted(_boxes(variant))
        assert [g[0] for g in got] == [e[0] for e in expected]
        for (_, g), (_, e) in zip(got, expected, strict=True):
            assert np.allclose(g, e, atol=1e-3)  # x1' = W - x2, to the pixel
        mirrored = np.fliplr(read_rgb(source.filepath)).astype(np.int16)
        assert np.abs(read_rgb(variant.filepath).astype(np.int16) - mirrored).mean() < 3  # JPEG noise only
    code, out, _ = run(["augment", "--recipe", "flip", "-d", name], capsys)
    assert "0 variant(s) created" in out and len(ds.exists("source_id")) == len(variants)


def test_boxes_leaving_the_frame_are_dropped_and_counted(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import albumentations as A
    import fiftyone as fo

    recipe = tmp_path / "shift.yaml"  # any albumentations YAML a user writes
    shift = A.Affine(translate_percent={"x": (0.5, 0.5), "y": (0.0, 0.0)}, p=1.0)
    A.save(A.Compose([shift]), str(recipe), data_format="yaml")
    imported_synth(tmp_path / "data", name, capsys, images=16)
    code, out, _ = run(["augment", "--recipe", str(recipe), "--split", "all", "-d", name], capsys)
    assert code == 0
    ds = fo.load_dataset(name)
    dropped = 0
    for variant in ds.exists("source_id"):
        source = ds[variant.source_id]
        before, after = _boxes(source), _boxes(variant)
        dropped += len(before) - len(after)
        width = variant.metadata.width
        shifted = Counter(label for label, b in before if (width - (b[0] + width / 2)) / (b[2] - b[0]) >= 0.3)
        assert Counter(label for label, _ in after) == shifted  # labels dropped with their boxes
        assert all(0 <= b[0] < b[2] <= width for _, b in after)
    assert dropped > 0 and f"{dropped} box(es) dropped" in out


def test_results_do_not_depend_on_the_number_of_workers(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import fiftyone as fo

    other = new_name()
    folder = imported_synth(tmp_path / "data", name, capsys, images=10)
    assert run(["import", str(folder), "-d", other], capsys)[0] == 0
    try:
        for dataset, workers in ((name, "1"), (other, "2")):
            args = ["augment", "--recipe", "fabric-default", "--copies", "2", "--split", "all", "--seed", "7"]
            assert run([*args, "-d", dataset, "--workers", workers], capsys)[0] == 0

        def digests(dataset: str) -> dict[str, str]:
            view = fo.load_dataset(dataset).exists("source_id")
            return {
                Path(p).name + f"#{c}": hashlib.sha256(Path(p).read_bytes()).hexdigest()
                for p, c in zip(*view.values(["filepath", "aug_copy"]), strict=True)
            }

        assert digests(name) == digests(other) and len(digests(name)) == 20
    finally:
        fo.delete_dataset(other)


def test_no_group_crosses_splits_in_any_order_and_splits_are_stable(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import fiftyone as fo

    folder = imported_synth(tmp_path / "data", name, capsys, images=60)
    # augment before any split, then split, then balance, then split again
    assert run(["augment", "--recipe", "flip", "--split", "all", "-d", name], capsys)[0] == 0
    assert run(["split", "-d", name, "--seed", "1"], capsys)[0] == 0
    assert run(["balance", "--ratio", "0.8", "-d", name, "--workers", "1"], capsys)[0] == 0
    assert run(["split", "-d", name, "--seed", "1"], capsys)[0] == 0
    ds = fo.load_dataset(name)
    originals = ds.match(~fo.ViewField("source_id").exists())
    for variant in ds.exists("source_id"):
        assert _split_of(variant) == _split_of(ds[variant.source_id]) is not None
    # stratified: every class and the defect-free images in every split, roughly in proportion
    per_split: dict[str, Counter[str]] = {s: Counter() for s in SPLITS}
    for sample in originals:
        labels = {d.label for d in sample.ground_truth.detections} or {"(defect-free)"}
        per_split[_split_of(sample) or ""].update(labels)
    totals = sum(per_split.values(), Counter())
    for label, total in totals.items():
        assert per_split["train"][label] >= 0.6 * total
        if total >= 10:
            assert per_split["val"][label] >= 1 and per_split["test"][label] >= 1, (label, per_split)
    # stable: new images only fill the splits; the existing ones keep theirs
    before = {s.filepath: _split_of(s) for s in originals}
    from fabricdata.prepare.synth import SynthConfig, generate

    generate(SynthConfig(images=20, seed=99, width=256, height=192, prefix="late"), folder)
    assert run(["import", str(folder), "-d", name], capsys)[0] == 0
    code, out, _ = run(["split", "-d", name, "--seed", "1"], capsys)
    assert code == 0 and "20 group(s) assigned" in out
    after = {s.filepath: _split_of(s) for s in ds.match(~fo.ViewField("source_id").exists())}
    assert all(after[path] == split for path, split in before.items())
    assert all(split in SPLITS for split in after.values())
    run(["split", "-d", name, "--reshuffle", "--seed", "2"], capsys)
    reshuffled = {s.filepath: _split_of(s) for s in ds.match(~fo.ViewField("source_id").exists())}
    assert reshuffled != after


def test_split_is_deterministic_for_a_seed(tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    import fiftyone as fo

    folder = imported_synth(tmp_path / "data", name, capsys, images=40)
    other = new_name()
    run(["import", str(folder), "-d", other], capsys)
    try:
        for dataset in (name, other):
            run(["split", "-d", dataset, "--seed", "5"], capsys)
        splits = [dict(zip(*fo.load_dataset(d).values(["filepath", "tags"]), strict=True)) for d in (name, other)]
        assert splits[0] == splits[1]
    finally:
        fo.delete_dataset(other)


def test_balance_reaches_the_target_prefers_minority_sources_and_is_idempotent(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import fiftyone as fo

    imported_synth(tmp_path / "data", name, capsys, images=60)
    run(["split", "-d", name], capsys)
    ds = fo.load_dataset(name)
    train = ds.match_tags("train")
    counts = Counter(d.label for s in train for d in s.ground_truth.detections)
    majority = counts.most_common(1)[0][0]
    code, out, _ = run(["balance", "--ratio", "1.0", "-d", name, "--workers", "1"], capsys)
    assert code == 0 and "before" in out
    after = Counter(d.label for s in ds.match_tags("train") for d in s.ground_truth.detections)
    for label in counts:
        assert after[label] >= counts[majority], (label, after)
    minority = min(counts, key=lambda n: counts[n])
    sources = [ds[v.source_id] for v in ds.exists("source_id")]
    for_minority = [s for s in sources if minority in {d.label for d in s.ground_truth.detections}]
    with_majority = [s for s in for_minority if majority in {d.label for d in s.ground_truth.detections}]
    clean_sources = {
        s.id
        for s in train
        if minority in {d.label for d in s.ground_truth.detections}
        and majority not in {d.label for d in s.ground_truth.detections}
    }
    if clean_sources:  # sources without the majority class are used first
        assert len(with_majority) <= len(for_minority) // 2
    created = len(ds.exists("source_id"))
    code, out, _ = run(["balance", "--ratio", "1.0", "-d", name, "--workers", "1"], capsys)
    assert "0 variant(s) created" in out and len(ds.exists("source_id")) == created
