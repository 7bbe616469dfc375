"""Review finds real label mistakes: planted errors land in the right views; mAP equals FiftyOne's own; and
confidences matter (all 1.0 changes the ranking-based figures)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fabricdata.core.boxes import ImageSize, fiftyone_to_box
from fabricdata.prepare.synth import SynthConfig, generate
from tests.helpers import imported_synth, run


def _truth_predictions(ds, folder: Path, confidence=lambda i: 0.97, extra=()) -> None:  # type: ignore[no-untyped-def]
    """predictions.jsonl as a perfect model would write it for the dataset's current labels (plus extras)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, sample in enumerate(ds.sort_by("filepath")):
        size = ImageSize(sample.metadata.width, sample.metadata.height)
        detections = [
            {
                "label": d.label,
                "bbox": list(fiftyone_to_box(d.bounding_box, size).as_tuple()),
                "confidence": confidence(i),
            }
            for d in sample.ground_truth.detections
        ]
        detections = [e for key, e in extra if key == sample.id] + detections  # extras first: ties keep this order
        record = {
            "image": Path(sample.filepath).name,
            "filepath": sample.filepath,
            "task": "<OD>",
            "text": "",
            "detections": detections,
        }
        lines.append(json.dumps(record))
    (folder / "predictions.jsonl").write_text("\n".join(lines) + "\n")


def _perfect_run(tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str], images: int) -> Path:
    """A small imported dataset and the predictions.jsonl of a perfect model for it (run folder runs/r)."""
    import fiftyone as fo

    imported_synth(tmp_path / "data", name, capsys, images=images)
    _truth_predictions(fo.load_dataset(name), tmp_path / "runs" / "r")
    return tmp_path / "runs" / "r" / "predictions.jsonl"


def _ids(ds, view_name: str) -> set[str]:  # type: ignore[no-untyped-def]
    return set(ds.load_saved_view(view_name).values("id"))


def test_planted_label_errors_land_in_the_right_views(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import fiftyone as fo

    generate(SynthConfig(images=24, seed=12, width=320, height=240, clean_share=0.0), tmp_path / "data")
    assert run(["import", str(tmp_path / "data"), "-d", name], capsys)[0] == 0
    ds = fo.load_dataset(name)
    runs = tmp_path / "runs"
    _truth_predictions(ds, runs / "r1")  # the model is right everywhere...
    samples = list(ds.sort_by("filepath").match(fo.ViewField("ground_truth.detections").length() >= 1))
    deleted, shifted, swapped, correct = samples[0], samples[1], samples[2], samples[3]
    # ...and the labels are wrong in three places
    deleted.ground_truth.detections = deleted.ground_truth.detections[1:]
    deleted.save()
    det = shifted.ground_truth.detections[0]
    x, y, w, h = det.bounding_box
    det.bounding_box = [min(x + w / 2, 1 - w), y, w, h]  # shifted by half its width
    shifted.save()
    other = {"wrinkle": "drop", "drop": "broken", "broken": "wrinkle"}
    swapped_det = swapped.ground_truth.detections[0]
    swapped_det.label = other[swapped_det.label]
    swapped.save()

    code, out, _ = run(["review", "--run", str(runs / "r1"), "-d", name], capsys)
    assert code == 0, out
    assert "r1-false-positives" in out and "fabricdata app" in out
    assert deleted.id in _ids(ds, "r1-false-positives") and deleted.id in _ids(ds, "r1-possible-missing")
    assert shifted.id in _ids(ds, "r1-mislocated")
    assert swapped.id in _ids(ds, "r1-confused")
    for view in ("r1-false-positives", "r1-missed", "r1-mislocated", "r1-confused", "r1-possible-missing"):
        assert correct.id not in _ids(ds, view), view
    fp_view = ds.load_saved_view("r1-false-positives")
    assert fp_view.count("pred_r1.detections") >= 1 and fp_view.distinct("pred_r1.detections.eval_r1") == ["fp"]
    report = (runs / "r1" / "report.md").read_text()
    assert "r1-confused" in report and (runs / "r1" / "pr_curves.png").stat().st_size > 1000
    assert (runs / "r1" / "confusion_matrix.png").exists()
    summary = json.loads((runs / "r1" / "review.json").read_text())
    assert summary["confusion"][swapped_det.label][_predicted(swapped_det.label, other)] >= 1

    # our mAP is FiftyOne's own evaluate_detections on the same fields
    own = ds.evaluate_detections("pred_r1", gt_field="ground_truth", eval_key="check", compute_mAP=True, progress=False)
    assert summary["map"] == pytest.approx(own.mAP())
    ds.delete_evaluation("check")

    # reviewing again replaces, never duplicates
    fields_before = set(ds.get_field_schema())
    views_before = ds.list_saved_views()
    assert run(["review", "--run", str(runs / "r1"), "-d", name], capsys)[0] == 0
    assert set(ds.get_field_schema()) == fields_before and ds.list_saved_views() == views_before


def _noisy_predictions(ds, folder: Path, seed: int) -> None:  # type: ignore[no-untyped-def]
    """predictions.jsonl of a poor model: per box 0-2 guesses shifted up to 60% of its size, half of them
    with another label (or one outside the classes), plus spurious boxes; confidences spread 0.05-1.0."""
    import random

    rng = random.Random(seed)
    classes = list(ds.default_classes)
    lines = []
    for sample in ds.sort_by("filepath"):
        size = ImageSize(sample.metadata.width, sample.metadata.height)
        guesses = []
        for det in sample.ground_truth.detections:
            box = fiftyone_to_box(det.bounding_box, size)
            for _ in range(rng.choice((0, 1, 1, 2))):
                dx, dy = rng.uniform(-0.6, 0.6) * box.width, rng.uniform(-0.6, 0.6) * box.height
                x0, y0 = max(0.0, box.xmin + dx), max(0.0, box.ymin + dy)
                x1, y1 = min(size.width, box.xmax + dx), min(size.height, box.ymax + dy)
                label = det.label if rng.random() > 0.5 else rng.choice([*classes, "stripe"])
                if x1 > x0 + 1 and y1 > y0 + 1:
                    guesses.append({"label": label, "bbox": [x0, y0, x1, y1], "confidence": rng.uniform(0.05, 1)})
        for _ in range(rng.choice((0, 1, 3))):
            x, y = rng.uniform(0, size.width * 0.7), rng.uniform(0, size.height * 0.7)
            w, h = rng.uniform(10, size.width * 0.3), rng.uniform(10, size.height * 0.3)
            guesses.append({"label": rng.choice(classes), "bbox": [x, y, x + w, y + h], "confidence": rng.random()})
        record = {"image": Path(sample.filepath).name, "filepath": sample.filepath, "task": "<OD>", "text": ""}
        lines.append(json.dumps({**record, "detections": guesses}))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "predictions.jsonl").write_text("\n".join(lines) + "\n")


def test_confusions_and_mislocations_are_fiftyones_own_matching_of_the_leftovers(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The confused and mislocated views hold exactly the pairs FiftyOne's COCO matching makes among what the
    review's evaluation left unmatched: across classes at the review's IoU (classwise=False), then within each
    class at IoU 0.1 among what is still free. The review hands FiftyOne only the leftovers that overlap enough
    to pair; here the reference is FiftyOne's matching over all of them."""
    import fiftyone as fo

    F = fo.ViewField  # noqa: N806
    imported_synth(tmp_path / "data", name, capsys, images=60, seed=8)
    ds = fo.load_dataset(name)
    _noisy_predictions(ds, tmp_path / "runs" / "r", seed=2)
    code, out, _ = run(["review", "--run", str(tmp_path / "runs" / "r"), "-d", name, "--iou", "0.4"], capsys)
    assert code == 0, out
    assert "Evaluating detections" not in out  # FiftyOne's chatter, one line per pass, stays off stdout

    def matched(view, iou: float, classwise: bool) -> set[tuple[str, str]]:  # type: ignore[no-untyped-def]
        found = view.evaluate_detections(
            "pred_r", gt_field="ground_truth", iou=iou, classwise=classwise, progress=False
        )
        return {(g, p) for g, p in zip(found.ytrue_ids, found.ypred_ids, strict=True) if g and p}

    leftovers = ds.filter_labels("pred_r", F("eval_r") == "fp").filter_labels("ground_truth", F("eval_r") == "fn")
    confused = matched(leftovers, 0.4, classwise=False)
    taken = [i for pair in confused for i in pair]
    mislocated = matched(leftovers.exclude_labels(ids=taken, fields=["ground_truth", "pred_r"]), 0.1, True)
    assert len(confused) >= 5 and len(mislocated) >= 5  # the fixture exercises both passes

    def labels(view_name: str) -> set[str]:
        view = ds.load_saved_view(view_name)
        return {i for ids in view.values("ground_truth.detections.id") + view.values("pred_r.detections.id")
                for i in ids or []}  # fmt: skip

    assert labels("r-confused") == set(taken)
    assert labels("r-mislocated") == {i for pair in mislocated for i in pair}
    summary = json.loads((tmp_path / "runs" / "r" / "review.json").read_text())
    off_diagonal = sum(n for truth, row in summary["confusion"].items() for guess, n in row.items()
                       if truth != guess and "(background)" not in (truth, guess))  # fmt: skip
    assert off_diagonal == len(confused)


def _predicted(true_label: str, other: dict[str, str]) -> str:
    """The swapped box: ground truth now says other[x]; the model still predicts x."""
    return next(k for k, v in other.items() if v == true_label)


def test_confidence_matters_and_runs_compare(tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Why per-box confidence matters. A realistic model is sure of some of its mistakes: here 6 spurious boxes
    at 0.99 (above every true box) and 6 at 0.05. With real confidences AP ranks the confident mistakes first and
    drops; the best-F1 threshold drops the unsure ones. With every confidence forced to 1.0 (what peer tools
    write) the ranking is gone: FiftyOne breaks the ties in favour of matches, AP looks perfect, and no threshold
    can separate right from wrong."""
    import fiftyone as fo

    generate(SynthConfig(images=24, seed=13, width=320, height=240, clean_share=0.0), tmp_path / "data")
    run(["import", str(tmp_path / "data"), "-d", name], capsys)
    ds = fo.load_dataset(name)
    runs = tmp_path / "runs"
    chosen = ds.take(12, seed=0).values("id")
    extras = [
        (sid, {"label": "drop", "bbox": [1.0, 1.0, 40.0, 40.0], "confidence": 0.99 if i % 2 else 0.05})
        for i, sid in enumerate(chosen)
    ]
    _truth_predictions(ds, runs / "scored", confidence=lambda i: 0.6 + 0.01 * (i % 30), extra=extras)
    flat = [(sid, {**e, "confidence": 1.0}) for sid, e in extras]
    _truth_predictions(ds, runs / "flat", confidence=lambda i: 1.0, extra=flat)
    assert run(["review", "--run", str(runs / "scored"), "-d", name], capsys)[0] == 0
    assert run(["review", "--run", str(runs / "flat"), "-d", name, "--compare", str(runs / "scored")], capsys)[0] == 0
    scored = json.loads((runs / "scored" / "review.json").read_text())
    flat_summary = json.loads((runs / "flat" / "review.json").read_text())
    assert flat_summary["ap50"] == pytest.approx(1.0)  # looks perfect, although 12 of the boxes are wrong
    assert scored["ap50"] < flat_summary["ap50"] - 0.02 and scored["map"] < flat_summary["map"]
    assert scored["per_class_ap"]["drop"] < flat_summary["per_class_ap"]["drop"]
    assert scored["precision"] > flat_summary["precision"]  # a threshold removes the unsure spurious boxes
    assert 0.05 < scored["best_f1_threshold"] < 1.0 and flat_summary["best_f1_threshold"] == 1.0
    assert (runs / "flat" / "ap_per_class.png").exists()
    # same boxes, same matches: nothing fixed; but the 6 unsure spurious boxes (0.05, below scored's best-F1
    # confidence) are sure ones in flat (1.0, at its threshold): those 6 images got worse
    unsure = {sid for i, sid in enumerate(chosen) if i % 2 == 0}
    assert _ids(ds, "flat-regressions") == unsure
    assert len(ds.load_saved_view("flat-fixed")) == 0


def test_predictions_for_images_outside_the_dataset_are_clear_errors(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _perfect_run(tmp_path, name, capsys, images=4)
    stranger = {
        "image": "elsewhere.jpg",
        "filepath": "/nowhere/elsewhere.jpg",
        "task": "<OD>",
        "text": "",
        "detections": [],
    }
    path.write_text(path.read_text() + json.dumps(stranger) + "\n")
    code, _, err = run(["review", "--run", str(tmp_path / "runs" / "r"), "-d", name], capsys)
    assert code == 1 and "/nowhere/elsewhere.jpg is not in dataset" in err
    path.write_text(path.read_text() + "{not json\n")
    code, _, err = run(["review", "--run", str(tmp_path / "runs" / "r"), "-d", name], capsys)
    assert code == 1 and "predictions.jsonl: line 6: not a prediction record" in err


def test_boxes_with_corners_out_of_order_are_rejected_with_file_and_line(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _perfect_run(tmp_path, name, capsys, images=3)
    bad = {
        "image": "x.jpg",
        "task": "<OD>",
        "text": "",
        "detections": [{"label": "drop", "bbox": [50, 5, 10, 20], "confidence": 0.5}],
    }
    path.write_text(path.read_text() + json.dumps(bad) + "\n")
    code, _, err = run(["review", "--run", str(tmp_path / "runs" / "r"), "-d", name], capsys)
    assert code == 1 and "line 4 detections[0].bbox: corners out of order" in err


def test_junk_labels_go_to_other_unsure_boxes_are_not_stored_and_commands_name_the_dataset(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import fiftyone as fo

    imported_synth(tmp_path / "data", name, capsys, images=6)
    ds = fo.load_dataset(name)
    ids = ds.values("id")
    junk = [(sid, {"label": "stripe<", "bbox": [2.0, 2.0, 30.0, 30.0], "confidence": 0.9}) for sid in ids[:3]]
    noise = [(sid, {"label": "drop", "bbox": [40.0, 40.0, 60.0, 60.0], "confidence": 0.01}) for sid in ids]
    _truth_predictions(ds, tmp_path / "runs" / "j", extra=junk + noise)
    code, out, _ = run(["review", "--run", str(tmp_path / "runs" / "j"), "-d", name], capsys)
    assert code == 0
    summary = json.loads((tmp_path / "runs" / "j" / "review.json").read_text())
    assert summary["outside_classes"] == 3 and summary["below_min_confidence"] == 6
    assert summary["confusion"]["(background)"]["(other)"] == 3
    assert "stripe<" not in json.dumps(summary["confusion"])
    assert ds.count("pred_j.detections") == summary["predictions"] == summary["ground_truth"] + 3
    from fabricdata.store.dataset import detections_layout_matches

    assert detections_layout_matches()  # predictions were written as FiftyOne's own documents, not the fallback
    stored = ds.first()["pred_j"].detections[0]
    assert isinstance(stored, fo.Detection) and stored.id and 0.05 <= stored.confidence <= 1
    assert "3 predictions with labels outside the dataset's classes" in out
    assert "6 predictions below confidence 0.05 not stored" in out
    report = (tmp_path / "runs" / "j" / "report.md").read_text()
    assert f"`fabricdata app --dataset {name} --view j-false-positives`" in report
    assert f"  fabricdata app --dataset {name} --view j-false-positives" in out.splitlines()


def test_a_run_that_predicts_nothing_fixes_nothing(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import fiftyone as fo

    imported_synth(tmp_path / "data", name, capsys, images=8)
    ds = fo.load_dataset(name)
    spurious = [(sid, {"label": "drop", "bbox": [1.0, 1.0, 20.0, 20.0], "confidence": 0.3}) for sid in ds.values("id")]
    _truth_predictions(ds, tmp_path / "runs" / "good", extra=spurious)
    empty = tmp_path / "runs" / "empty"
    empty.mkdir()
    lines = [
        json.dumps(
            {"image": Path(s.filepath).name, "filepath": s.filepath, "task": "<OD>", "text": "", "detections": []}
        )
        for s in ds
    ]
    (empty / "predictions.jsonl").write_text("\n".join(lines) + "\n")
    assert run(["review", "--run", str(tmp_path / "runs" / "good"), "-d", name], capsys)[0] == 0
    assert (
        run(["review", "--run", str(empty), "-d", name, "--compare", str(tmp_path / "runs" / "good")], capsys)[0] == 0
    )
    with_boxes = set(ds.match(fo.ViewField("ground_truth.detections").length() > 0).values("id"))
    assert len(ds.load_saved_view("empty-fixed")) == 0  # it lost its false positives, but found nothing
    assert _ids(ds, "empty-regressions") == with_boxes  # every box it no longer finds
    assert (
        run(["review", "--run", str(tmp_path / "runs" / "good"), "-d", name, "--compare", str(empty)], capsys)[0] == 0
    )
    assert _ids(ds, "good-fixed") == with_boxes


def test_a_run_that_predicted_nothing_says_so_instead_of_suspecting_every_label(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import fiftyone as fo

    imported_synth(tmp_path / "data", name, capsys, images=6)
    ds = fo.load_dataset(name)
    empty = tmp_path / "runs" / "empty"
    empty.mkdir(parents=True)
    record = {"task": "<OD>", "text": "", "detections": []}
    lines = [json.dumps({"image": Path(s.filepath).name, "filepath": s.filepath, **record}) for s in ds]
    (empty / "predictions.jsonl").write_text("\n".join(lines) + "\n")
    code, out, _ = run(["review", "--run", str(empty), "-d", name], capsys)
    assert code == 0 and "the run predicted nothing" in out
    with_boxes = set(ds.match(fo.ViewField("ground_truth.detections").length() > 0).values("id"))
    assert with_boxes and _ids(ds, "empty-missed") == with_boxes  # every box is missed ...
    assert len(ds.load_saved_view("empty-possible-spurious")) == 0  # ... and no label is suspect for it
