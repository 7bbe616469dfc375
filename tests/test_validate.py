"""`fabricdata validate` finds every planted problem, saves a view per finding, and follows its schema."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from PIL import Image, ImageEnhance

from fabricdata.cli.schemas import SCHEMA_DIR
from tests.helpers import imported_synth, run


def _by_check(out: str) -> dict[str, dict]:  # type: ignore[type-arg]
    report = json.loads(out)
    schema = json.loads((SCHEMA_DIR / "validation-report.schema.json").read_text())
    jsonschema.validate(report, schema)
    return {f["check"]: f for f in report["findings"]}


def test_a_clean_synthetic_dataset_has_no_errors(tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    imported_synth(tmp_path / "data", name, capsys, images=60)
    run(["split", "-d", name], capsys)
    run(["augment", "--recipe", "flip", "-d", name, "--workers", "1"], capsys)
    code, out, _ = run(["validate", "-d", name, "--json", "--strict"], capsys)
    found = _by_check(out)
    assert code == 0, found
    assert {f["severity"] for f in found.values()} <= {"warning", "info"}
    assert "near-duplicates-across-splits" not in found and "duplicate-images" not in found
    assert found["defect-free-images"]["severity"] == "info" and found["defect-free-images"]["count"] > 0


def test_planted_problems_are_all_found(tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    import fiftyone as fo

    folder = imported_synth(tmp_path / "data", name, capsys, images=40)
    ds = fo.load_dataset(name)
    ds.default_classes = [*ds.default_classes, "hole"]  # a class nobody uses
    run(["split", "-d", name], capsys)
    run(["augment", "--recipe", "flip", "-d", name, "--workers", "1"], capsys)
    # a near-duplicate (re-encoded, slightly brighter) of a training image, imported and placed in test
    train_image = Path(ds.match_tags("train").first().filepath)
    copy = folder / "copy_of_train.jpg"
    with Image.open(train_image) as image:
        ImageEnhance.Brightness(image).enhance(1.03).save(copy, quality=80)
    (folder / "copy_of_train.xml").write_bytes(
        (folder / (train_image.stem + ".xml")).read_bytes().replace(train_image.name.encode(), copy.name.encode())
    )
    run(["import", str(folder), "-d", name], capsys)
    dup = ds.one(fo.ViewField("filepath") == str(copy))
    dup.tags = ["test"]
    dup.save()
    # box-level problems, as an annotator could make them in the App
    samples = list(ds.match(fo.ViewField("ground_truth.detections").length() > 0).match_tags("train"))
    s1, s2, s3 = samples[0], samples[1], samples[2]
    det = s1.ground_truth.detections[0]
    s1.ground_truth.detections.append(fo.Detection(label="stain", bounding_box=[0.1, 0.1, 0.2, 0.2]))
    s1.ground_truth.detections.append(fo.Detection(label=det.label, bounding_box=list(det.bounding_box)))
    s1.save()
    s2.ground_truth.detections.append(fo.Detection(label="drop", bounding_box=[0.5, 0.5, 0.001, 0.2]))
    s2.ground_truth.detections.append(fo.Detection(label="drop", bounding_box=[0.9, 0.5, 0.3, 0.2]))
    s2.save()
    s3.ground_truth.detections.append(fo.Detection(label="wrinkle", bounding_box=[0.0, 0.0, 0.999, 0.999]))
    s3.save()
    # a variant moved to another split than its source
    variant = ds.exists("source_id").first()
    variant.tags = ["val"]
    variant.save()

    code, out, _ = run(["validate", "-d", name, "--json", "--strict"], capsys)
    found = _by_check(out)
    assert code == 1
    expected = {
        "undefined-labels": "error",
        "unused-classes": "warning",
        "degenerate-boxes": "error",
        "boxes-outside-image": "error",
        "duplicate-boxes": "warning",
        "near-duplicates-across-splits": "error",
        "variant-split-differs": "error",
        "defect-free-images": "info",
    }
    for check, severity in expected.items():
        assert check in found and found[check]["severity"] == severity, (check, found.keys())
    assert found["undefined-labels"]["classes"] == ["stain"] and found["undefined-labels"]["samples"] == [s1.id]
    assert found["unused-classes"]["classes"] == ["hole"]
    assert found["degenerate-boxes"]["samples"] == [s2.id]
    assert s2.id in found["boxes-outside-image"]["samples"]
    assert found["duplicate-boxes"]["samples"] == [s1.id]
    source_id = ds.one(fo.ViewField("filepath") == str(train_image)).id
    leaked = set(found["near-duplicates-across-splits"]["samples"])
    assert {dup.id, source_id} <= leaked  # and the flipped variants of that training image (flip-invariant now)
    assert all(ds[sid].source_id == source_id for sid in leaked - {dup.id, source_id})
    assert found["variant-split-differs"]["samples"] == [variant.id]
    # a saved view per finding, opening exactly those samples (and boxes)
    view = ds.load_saved_view(found["degenerate-boxes"]["view"])
    assert view.values("id") == [s2.id] and view.count("ground_truth.detections") == 1
    assert len(ds.load_saved_view(found["near-duplicates-across-splits"]["view"])) == len(leaked)


def test_size_outliers_few_instances_and_imbalance(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import fiftyone as fo

    imported_synth(tmp_path / "data", name, capsys, images=40)
    ds = fo.load_dataset(name)
    sample = ds.match(fo.ViewField("ground_truth.detections.label").contains("wrinkle")).first()
    tiny = fo.Detection(label="wrinkle", bounding_box=[0.5, 0.5, 0.004, 0.006])
    sample.ground_truth.detections.append(tiny)
    sample.save()
    code, out, _ = run(["validate", "-d", name, "--json", "--min-instances", "1000", "--imbalance", "1.1"], capsys)
    found = _by_check(out)
    assert code == 0  # warnings only, and no --strict
    assert tiny.id in found["box-size-outliers"]["labels"]
    assert set(found["few-instances"]["classes"]) == set(ds.default_classes)
    assert found["class-imbalance"]["severity"] == "warning"


def test_human_output_names_the_views(tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    imported_synth(tmp_path / "data", name, capsys, images=12)
    code, out, _ = run(["validate", "-d", name, "--min-instances", "1000"], capsys)
    assert code == 0 and "few-instances" in out and "defect-free" in out


def test_checked_in_schemas_match_the_models() -> None:
    from fabricdata.cli.schemas import differences

    assert differences() == [], "run: python -m fabricdata.cli.schemas"
