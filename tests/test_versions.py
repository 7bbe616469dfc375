"""Label versions through the CLI: App-style edits between two snapshots are counted exactly, per class; the same
labels snapshot to the same id; every export records its version and a run knows it; `review --compare` states
the label change beside the mAP change; a restored version exports byte for byte what the old export held."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fabricdata.core.boxes import Box, ImageSize, fiftyone_to_box, fiftyone_to_boxes, iou, iou_pairs
from fabricdata.formats.voc import read_voc, write_voc
from fabricdata.prepare.synth import SynthConfig, generate
from tests.helpers import imported_synth, run

KINDS = ("added", "removed", "moved", "relabelled", "attributes")


def _json(args: list[str], capsys: pytest.CaptureFixture[str]) -> Any:
    code, out, err = run(args, capsys)
    assert code == 0, err
    return json.loads(out)


def _ok(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    code, out, err = run(args, capsys)
    assert code == 0, err
    return out


def _with_boxes(ds: Any, count: int, at_least: int = 2) -> list[Any]:
    import fiftyone as fo

    samples = list(ds.match(fo.ViewField("ground_truth.detections").length() >= at_least).sort_by("filepath"))
    assert len(samples) >= count
    return samples[:count]


def _other(label: str) -> str:
    return "broken" if label != "broken" else "drop"


def _app_edits(ds: Any) -> tuple[dict[str, dict[str, int]], Counter[str], set[str]]:
    """What an annotator does in the App's Annotate tab (the labels change in MongoDB, ids kept): move a box far
    (no overlap with where it was), relabel one, delete one, draw one, tick 'difficult' on one. Returns the
    counts a diff must find per class, the relabel pairs and the edited file paths."""
    import fiftyone as fo

    expected: dict[str, Counter[str]] = {}
    pairs: Counter[str] = Counter()
    moved, relabelled, deleted, drawn, ticked = _with_boxes(ds, 5)
    det = moved.ground_truth.detections[0]
    x, y, w, h = det.bounding_box
    det.bounding_box = [0.0 if x > 0.5 else 1.0 - w, y, w, h]
    expected.setdefault(det.label, Counter())["moved"] += 1
    det = relabelled.ground_truth.detections[1]
    pairs[f"{det.label} -> {_other(det.label)}"] += 1
    expected.setdefault(det.label, Counter())["relabelled"] += 1
    det.label = _other(det.label)
    gone = deleted.ground_truth.detections.pop(0)
    expected.setdefault(gone.label, Counter())["removed"] += 1
    drawn.ground_truth.detections.append(fo.Detection(label="wrinkle", bounding_box=[0.02, 0.03, 0.1, 0.12]))
    expected.setdefault("wrinkle", Counter())["added"] += 1
    det = ticked.ground_truth.detections[0]
    det.difficult = True
    expected.setdefault(det.label, Counter())["attributes"] += 1
    for sample in (moved, relabelled, deleted, drawn, ticked):
        sample.save()
    per_class = {name: {kind: counts[kind] for kind in KINDS} for name, counts in sorted(expected.items())}
    return per_class, pairs, {s.filepath for s in (moved, relabelled, deleted, drawn, ticked)}


def test_app_edits_between_two_snapshots_are_counted_exactly_per_class(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import fiftyone as fo

    imported_synth(tmp_path / "data", name, capsys, images=24)
    assert "version v1" in _ok(["snapshot", "-d", name, "-m", "as imported"], capsys)
    ds = fo.load_dataset(name)
    before = {s.filepath: [(d.label, d.bounding_box) for d in s.ground_truth.detections] for s in ds}
    per_class, pairs, edited = _app_edits(ds)
    assert "version v2" in _ok(["snapshot", "-d", name], capsys)
    result = _json(["diff", "v1", "v2", "-d", name, "--json"], capsys)
    assert result["per_class"] == per_class
    assert result["total"] == {kind: sum(c[kind] for c in per_class.values()) for kind in KINDS}
    assert result["relabelled"] == dict(pairs)
    assert result["boxes_changed"] == 5 and result["samples_changed"] == 5 and set(result["changed"]) == edited
    assert (result["samples_added"], result["samples_removed"], result["split_changed"]) == (0, 0, 0)
    # the view: the edited images, each version in its own field, so the App shows before and after
    view = ds.load_saved_view(result["view"])
    assert result["view"] == "diff-v1-v2" and set(view.values("filepath")) == edited
    assert result["fields"] == {"a": "version_v1", "b": "version_v2"}
    for sample in view:
        assert [(d.label, d.bounding_box) for d in sample.version_v1.detections] == before[sample.filepath]
        assert [(d.label, d.bounding_box) for d in sample.version_v2.detections] == [
            (d.label, d.bounding_box) for d in sample.ground_truth.detections
        ]
    # against the labels now: the same counts, the before field beside ground_truth
    now = _json(["diff", "v1", "-d", name, "--json"], capsys)
    assert now["per_class"] == per_class and now["fields"] == {"a": "version_v1", "b": "ground_truth"}
    table = _ok(["diff", "v1", "v2", "-d", name], capsys)
    assert "| total | 1 | 1 | 1 | 1 | 1 |" in table and "fabricdata app --dataset" in table


def test_a_label_file_edited_and_reimported_pairs_boxes_by_iou(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Re-import replaces an edited file's boxes (new ids): they pair by IoU. A box nudged by 2 px is moved, a box
    relabelled in place is relabelled; a box moved off its place (IoU < --iou) is removed and added."""
    import fiftyone as fo

    imported_synth(tmp_path / "data", name, capsys, images=24)
    _ok(["snapshot", "-d", name], capsys)
    first, second = _with_boxes(fo.load_dataset(name), 2)
    annotation = read_voc(first.annotation_path)
    nudged, relabelled = annotation.objects[0], annotation.objects[1]
    box = nudged.box
    objects = [
        replace(nudged, box=Box(box.xmin + 2, box.ymin, box.xmax + 2, box.ymax)),
        replace(relabelled, label=_other(relabelled.label)),
        *annotation.objects[2:],
    ]
    write_voc(annotation.with_objects(objects), first.annotation_path)
    far = read_voc(second.annotation_path)
    jump = far.objects[0]
    shift = far.size.width - jump.box.xmax if jump.box.xmin < far.size.width / 2 else -jump.box.xmin
    moved = replace(jump, box=Box(jump.box.xmin + shift, jump.box.ymin, jump.box.xmax + shift, jump.box.ymax))
    write_voc(far.with_objects([moved, *far.objects[1:]]), second.annotation_path)
    assert "2 updated" in _ok(["import", str(tmp_path / "data"), "-d", name], capsys)
    result = _json(["diff", "v1", "now", "-d", name, "--json", "--no-view"], capsys)
    expected: dict[str, Counter[str]] = {}
    expected.setdefault(nudged.label, Counter())["moved"] += 1
    expected.setdefault(relabelled.label, Counter())["relabelled"] += 1
    expected.setdefault(jump.label, Counter())["removed"] += 1
    expected[jump.label]["added"] += 1
    assert result["per_class"] == {c: {k: n[k] for k in KINDS} for c, n in sorted(expected.items())}
    assert result["boxes_changed"] == 4 and result["view"] is None


def test_the_same_labels_snapshot_to_the_same_id(tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    import fiftyone as fo

    imported_synth(tmp_path / "data", name, capsys, images=12)
    _ok(["snapshot", "-d", name], capsys)
    (first,) = _json(["versions", "-d", name, "--json"], capsys)
    ds = fo.load_dataset(name)
    for sample in ds.iter_samples(autosave=True):  # boxes saved again, in reverse order: the same labels
        sample.ground_truth.detections = list(reversed(sample.ground_truth.detections))
    out = _ok(["snapshot", "-d", name], capsys)
    assert f"unchanged: the labels are version v1 ({first['id'][:12]})" in out
    # a name for the same labels is a second name of the same content (nothing stored twice)
    _ok(["snapshot", "-d", name, "--name", "delivered"], capsys)
    versions = _json(["versions", "-d", name, "--json"], capsys)
    assert [(v["name"], v["id"]) for v in versions] == [("v1", first["id"]), ("delivered", first["id"])]
    assert len(list(Path(fo.config.default_dataset_dir, "fabricdata", name, "versions").glob("*.json.gz"))) == 1
    # any change is a new id; a name already given to other labels is refused
    sample = _with_boxes(ds, 1)[0]
    sample.tags = ["val"]
    sample.save()
    code, _, err = run(["snapshot", "-d", name, "--name", "delivered"], capsys)
    assert code == 1 and "version delivered already names other labels" in err
    assert "version v2" in _ok(["snapshot", "-d", name], capsys)
    result = _json(["diff", "v1", "v2", "-d", name, "--json"], capsys)
    assert result["split_changed"] == 1 and result["boxes_changed"] == 0 and result["view"] is None


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_export_records_the_version_and_a_restored_version_exports_byte_for_byte(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import fiftyone as fo

    data = imported_synth(tmp_path / "data", name, capsys, images=20)
    _ok(["split", "-d", name], capsys)
    out = _ok(["export", "florence", str(tmp_path / "e1"), "-d", name], capsys)
    manifest = json.loads((tmp_path / "e1" / "manifest.json").read_text())
    (v1,) = _json(["versions", "-d", name, "--json"], capsys)
    assert (manifest["labels_version"], manifest["labels_version_name"]) == (v1["id"], "v1")
    assert v1["taken_by"] == "export" and f"labels: version v1 ({v1['id'][:12]})" in out
    _ok(["export", "florence", str(tmp_path / "e1-again"), "-d", name], capsys)  # unchanged: no new version
    assert len(_json(["versions", "-d", name, "--json"], capsys)) == 1
    _app_edits(fo.load_dataset(name))
    _ok(["export", "florence", str(tmp_path / "e2"), "-d", name], capsys)
    assert json.loads((tmp_path / "e2" / "manifest.json").read_text())["labels_version_name"] == "v2"
    # restore v1 and export it: every file as the old export, the manifest differs in the dataset's name only
    label_files = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in data.glob("*.xml")}
    restored = f"{name}-v1"
    try:
        assert f"dataset {restored}: version v1" in _ok(["restore", "v1", "--as", restored, "-d", name], capsys)
        _ok(["export", "florence", str(tmp_path / "e3"), "-d", restored], capsys)
        old, new = _files(tmp_path / "e1"), _files(tmp_path / "e3")
        old_manifest, new_manifest = (json.loads(files.pop("manifest.json")) for files in (old, new))
        assert old == new and len(old) > 20  # annotations.jsonl, sources.jsonl (same sample ids), images
        assert new_manifest == {**old_manifest, "dataset": restored}
        assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in data.glob("*.xml")} == label_files
        assert _json(["versions", "-d", restored, "--json"], capsys)[0]["id"] == v1["id"]
        assert len(fo.load_dataset(name)) == 20  # the dataset restored from is untouched
    finally:
        if fo.dataset_exists(restored):
            fo.delete_dataset(restored)


def _perfect_run(ds: Any, export: Path, folder: Path) -> None:
    """A run folder as train leaves it for review (its copy of the export manifest) with the predictions.jsonl of
    a model that finds exactly the dataset's current boxes."""
    folder.mkdir(parents=True)
    shutil.copyfile(export / "manifest.json", folder / "export_manifest.json")
    lines = []
    for sample in ds.sort_by("filepath"):
        size = ImageSize(sample.metadata.width, sample.metadata.height)
        detections = [
            {"label": d.label, "bbox": list(fiftyone_to_box(d.bounding_box, size).as_tuple()), "confidence": 0.9}
            for d in sample.ground_truth.detections
        ]
        record = {"image": Path(sample.filepath).name, "filepath": sample.filepath, "task": "<OD>", "text": ""}
        lines.append(json.dumps({**record, "detections": detections}))
    (folder / "predictions.jsonl").write_text("\n".join(lines) + "\n")


def test_review_compare_states_the_label_change_and_runs_name_their_versions(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import fiftyone as fo

    imported_synth(tmp_path / "data", name, capsys, images=20)
    _ok(["split", "-d", name], capsys)
    ds = fo.load_dataset(name)
    _ok(["export", "florence", str(tmp_path / "e1"), "-d", name, "--tasks", "od"], capsys)
    _perfect_run(ds, tmp_path / "e1", tmp_path / "runs" / "r1")
    _ok(["review", "--run", str(tmp_path / "runs" / "r1"), "-d", name], capsys)
    _app_edits(ds)
    _ok(["export", "florence", str(tmp_path / "e2"), "-d", name, "--tasks", "od"], capsys)
    shutil.copytree(tmp_path / "runs" / "r1", tmp_path / "runs" / "r2", ignore=shutil.ignore_patterns("*.png", "*.md"))
    shutil.copyfile(tmp_path / "e2" / "manifest.json", tmp_path / "runs" / "r2" / "export_manifest.json")
    (tmp_path / "runs" / "r2" / "review.json").unlink()
    out = _ok(
        ["review", "--run", str(tmp_path / "runs" / "r2"), "-d", name, "--compare", str(tmp_path / "runs" / "r1")],
        capsys,
    )
    r1, r2 = (json.loads((tmp_path / "runs" / r / "review.json").read_text()) for r in ("r1", "r2"))
    delta = f"mAP {r2['map'] - r1['map']:+.3f} ({r2['map']:.3f} vs {r1['map']:.3f})"
    change = "5 boxes changed (1 moved, 1 relabelled, 1 added, 1 removed, 1 with other attributes) in 5 images"
    said = f"r2 trained on v2, r1 on v1: {change}; {delta}"  # the evaluation's fields on the boxes are no labels
    assert r2["label_change"] == said and said in " ".join(out.split())
    assert said in (tmp_path / "runs" / "r2" / "report.md").read_text()
    # diff and restore take runs: the versions they trained on
    by_runs = _json(
        ["diff", str(tmp_path / "runs" / "r1"), str(tmp_path / "runs" / "r2"), "-d", name, "--json"], capsys
    )
    assert by_runs == _json(["diff", "v1", "v2", "-d", name, "--json"], capsys)


def test_bad_references_are_one_line_errors_and_restore_makes_nothing_when_images_are_gone(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import fiftyone as fo

    data = imported_synth(tmp_path / "data", name, capsys, images=6)
    code, _, err = run(["diff", "v1", "-d", name], capsys)
    assert code == 1 and "has no label version 'v1' (versions: none" in err
    _ok(["snapshot", "-d", name], capsys)
    code, _, err = run(["diff", "v9", "-d", name], capsys)
    assert code == 1 and "has no label version 'v9' (versions: v1)" in err and "Traceback" not in err
    code, _, err = run(["restore", "v1", "--as", name, "-d", name], capsys)
    assert code == 1 and f"--as {name}: a dataset of that name exists" in err
    code, _, err = run(["snapshot", "-d", name, "--name", "now"], capsys)
    assert code == 1 and "--name 'now'" in err
    lost = sorted(data.glob("*.jpg"))[2]
    lost.rename(tmp_path / lost.name)
    code, _, err = run(["restore", "v1", "--as", f"{name}-x", "-d", name], capsys)
    assert code == 1 and f"{lost}: missing, with 0 more of the 6 images of version v1; nothing restored" in err
    assert not fo.dataset_exists(f"{name}-x")
    (version,) = Path(fo.config.default_dataset_dir, "fabricdata", name, "versions").glob("*.json.gz")
    version.write_bytes(version.read_bytes()[:-20])
    code, _, err = run(["diff", "v1", "-d", name], capsys)
    assert code == 1 and f"{version}: unreadable labels of version v1" in err


def test_vectorised_iou_and_conversion_equal_the_scalar_ones() -> None:
    rng = np.random.default_rng(0)
    size = ImageSize(640, 480)
    rel = np.column_stack([rng.uniform(0, 0.8, (200, 2)), rng.uniform(0.01, 0.2, (200, 2))])
    pixels = fiftyone_to_boxes(rel, np.tile([size.width, size.height], (200, 1)))
    boxes = [fiftyone_to_box(r, size) for r in rel]
    assert np.array_equal(pixels, np.array([b.as_tuple() for b in boxes]))
    other = pixels[::-1].copy()
    expected = [iou(Box(*a), Box(*b)) for a, b in zip(pixels, other, strict=True)]
    assert np.allclose(iou_pairs(pixels, other), expected, rtol=0, atol=1e-12)
    assert iou_pairs(pixels[:1], pixels[:1])[0] == pytest.approx(1.0)
    assert any(value == 0 for value in expected) and any(0 < value < 1 for value in expected)


@pytest.mark.slow
def test_a_trained_run_records_its_version_and_runs_shows_it(
    tmp_path: Path, name: str, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    generate(SynthConfig(images=8, seed=4, width=256, height=192), tmp_path / "data")
    _ok(["import", str(tmp_path / "data"), "-d", name], capsys)
    _ok(["split", "-d", name, "--ratios", "0.5,0.25,0.25"], capsys)
    _ok(["export", "florence", str(tmp_path / "e1"), "-d", name, "--tasks", "od"], capsys)
    (version,) = _json(["versions", "-d", name, "--json"], capsys)
    fast = ["--set", "num_workers=0", "--set", "batch_size=4", "--set", "epochs=1"]
    out = tmp_path / "runs" / "r1"
    _ok(
        ["train", "--set", f"model={tiny_model_dir}", "--set", f"data={tmp_path / 'e1'}", "--set", f"out={out}", *fast],
        capsys,
    )
    assert json.loads((out / "export_manifest.json").read_text())["labels_version"] == version["id"]
    table = _ok(["runs", "--root", str(tmp_path / "runs")], capsys)
    assert "| run | labels |" in table and f"| r1 | v1 ({version['id'][:8]}) |" in table
