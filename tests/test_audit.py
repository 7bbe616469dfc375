"""The label audit: planted errors found through the CLI (average precision per kind), the scores against
cleanlab's own, each kind on a hand-made image, folds that keep groups together, clear errors, and the whole
path with the tiny model (trained, killed in its second fold, resumed to the same scores)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fabricdata.core.boxes import Box, ImageSize, fiftyone_to_box, iou
from fabricdata.prepare.synth import SynthConfig, generate
from fabricdata.review.audit_scores import AuditOptions, ImageBoxes, score_images
from tests.helpers import new_name, run
from tests.planted import Planted, average_precision, plant_errors, simulate_predictions

CLASSES = ["wrinkle", "drop", "broken"]
KINDS = ("missing", "swapped", "mislocated", "spurious")


# --- planted errors, through the CLI ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def planted_audit(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """1000 synthetic images with 5% of their labels corrupted (a quarter each way), imported, and audited from the
    out-of-fold predictions of a simulated decent model given as two fold files."""
    import fiftyone as fo

    root = tmp_path_factory.mktemp("planted")
    folder = generate(SynthConfig(images=1000, seed=11, width=160, height=120), root / "fabric")
    planted = plant_errors(folder, CLASSES, share=0.05, seed=0)
    records = simulate_predictions(folder, planted, CLASSES, root / "all.jsonl", seed=0)
    files = [root / "fold-0.jsonl", root / "fold-1.jsonl"]
    for k, path in enumerate(files):
        path.write_text("".join(json.dumps(r) + "\n" for r in records[k::2]), encoding="utf-8")
    name = new_name("planted")
    quiet = _Quiet()
    code, _, err = run(["import", str(folder), "-d", name], quiet)  # type: ignore[arg-type]
    assert code == 0, err
    args = ["audit", "-d", name, "--root", str(root / "runs"), *(a for f in files for a in ("--predictions", str(f)))]
    code, _, err = run(args, quiet)  # type: ignore[arg-type]
    assert code == 0, err
    yield name, planted, root
    fo.delete_dataset(name)


class _Quiet:
    def readouterr(self) -> tuple[str, str]:
        return "", ""


def _truth_rows(dataset: Any) -> list[tuple[str, Box, dict[str, Any]]]:
    """(image name, box in pixels, audit attributes) of every label box of the audited samples."""
    rows = []
    for sample in dataset.exists("audit_predictions").select_fields(["metadata", "ground_truth"]):
        size = ImageSize(sample.metadata.width, sample.metadata.height)
        for det in sample.ground_truth.detections:
            attrs = {k: det[k] for k in ("audit_swap", "audit_badloc", "audit_support", "audit_issue")}
            rows.append((Path(sample.filepath).name, fiftyone_to_box(det.bounding_box, size), attrs))
    return rows


def _is(planted: dict[str, list[Box]], image: str, box: Box) -> bool:
    return any(iou(box, other) > 0.9 for other in planted.get(image, []))


def _ap_per_kind(dataset: Any, planted: Planted) -> dict[str, float]:
    rows = _truth_rows(dataset)
    aps = {}
    for kind, attr in (("swapped", "audit_swap"), ("mislocated", "audit_badloc"), ("spurious", "audit_support")):
        scores = [a[attr] for _, _, a in rows]
        hits = [_is(getattr(planted, kind), image, box) for image, box, _ in rows]
        aps[kind] = average_precision(scores, hits, planted.count(kind))
    scores, hits, found = [], [], set()
    for sample in dataset.exists("audit_predictions").select_fields(["metadata", "audit_predictions"]):
        size, image = ImageSize(sample.metadata.width, sample.metadata.height), Path(sample.filepath).name
        for det in sample.audit_predictions.detections:
            box = fiftyone_to_box(det.bounding_box, size)
            deleted = [b for b in planted.missing.get(image, []) if iou(box, b) >= 0.5 and (image, b) not in found]
            found.update((image, b) for b in deleted[:1])
            scores.append(det["audit_score"] if det["audit_issue"] == "missing" else 1.0)
            hits.append(bool(deleted))
    aps["missing"] = average_precision(scores, hits, planted.count("missing"))
    return aps


@pytest.mark.slow  # 1000 images synthesized and imported (about a minute)
def test_planted_errors_are_ranked_first_in_every_kind(planted_audit: Any) -> None:
    import fiftyone as fo

    name, planted, _ = planted_audit
    dataset = fo.load_dataset(name)
    assert all(planted.count(kind) >= 15 for kind in KINDS)
    aps = _ap_per_kind(dataset, planted)
    print("average precision per kind:", {kind: round(ap, 3) for kind, ap in aps.items()})
    assert all(aps[kind] >= 0.8 for kind in KINDS), aps


@pytest.mark.slow  # 1000 images synthesized and imported (about a minute)
def test_the_views_open_the_planted_errors_worst_first(planted_audit: Any) -> None:
    import fiftyone as fo

    name, planted, root = planted_audit
    dataset = fo.load_dataset(name)
    assert {f"audit-{v}" for v in (*KINDS, "worst")} <= set(dataset.list_saved_views())
    swapped = dataset.load_saved_view("audit-swapped")
    first = swapped.first()
    image = Path(first.filepath).name
    size = ImageSize(first.metadata.width, first.metadata.height)
    shown = [fiftyone_to_box(d.bounding_box, size) for d in first.ground_truth.detections]
    assert shown and all(_is(planted.swapped, image, box) for box in shown)  # only the disputed box is shown
    beside = first.audit_predictions.detections
    assert len(beside) == 1 and beside[0].label != first.ground_truth.detections[0].label
    assert beside[0].id == first.ground_truth.detections[0]["audit_disputed_by"]
    worst = dataset.load_saved_view("audit-worst").values("audit_score")
    assert worst == sorted(worst) and len(worst) == len(dataset)
    report = (root / "runs" / f"audit-{name}" / "audit.md").read_text()
    assert f"fabricdata app --dataset {name} --view audit-swapped" in report
    assert "| wrinkle |" in report and "AP50" in report
    samples = dataset.exists("audit_predictions")
    assert set(samples.distinct("audit_fold")) == {0, 1}
    assert {Path(p).name for p in samples.distinct("audit_run")} == {"fold-0.jsonl", "fold-1.jsonl"}


@pytest.mark.slow  # 1000 images synthesized and imported (about a minute)
def test_rescore_after_a_fix_clears_the_fixed_box(planted_audit: Any, capsys: pytest.CaptureFixture[str]) -> None:
    import fiftyone as fo

    name, _, root = planted_audit
    dataset = fo.load_dataset(name)
    first = dataset.load_saved_view("audit-swapped").first()
    sample = dataset[first.id]
    fixed_id = first.ground_truth.detections[0].id
    predicted = first.audit_predictions.detections[0].label
    for det in sample.ground_truth.detections:  # what an annotator does in the App
        if det.id == fixed_id:
            det.label = predicted
    sample.save()
    before = len(dataset.load_saved_view("audit-swapped"))
    code, _, err = run(["audit", "--rescore", "-d", name, "--root", str(root / "runs")], capsys)
    assert code == 0, err
    after = dataset.load_saved_view("audit-swapped")
    assert len(after) == before - 1 and first.id not in after.values("id")
    assert fo.load_dataset(name)[first.id].ground_truth.detections[0]["audit_issue"] is None


# --- the scores ------------------------------------------------------------------------------------------------


def test_the_image_score_is_cleanlabs_where_each_box_has_one_prediction() -> None:
    """With one label and one prediction per image (the evidence rule changes nothing) and cleanlab's thresholds,
    the label quality is cleanlab's ``get_label_quality_scores`` on the calibrated confidences, to the last bit."""
    from cleanlab.object_detection.rank import get_label_quality_scores

    from fabricdata.review.audit_scores import cleanlab_predictions

    rng = np.random.default_rng(3)
    labels, predictions = [], []
    for i in range(40):
        x, y = rng.uniform(0, 400, 2)
        box = (x, y, x + rng.uniform(40, 80), y + rng.uniform(40, 80))
        moved = tuple(v + rng.normal(0, 2) for v in box)
        labels.append(ImageBoxes.of([(i % 3, box)]))
        predictions.append(ImageBoxes.of([((i + (i % 7 == 0)) % 3, moved)], [rng.uniform(0.9, 1.0)]))
    scores = score_images(labels, predictions, 3, AuditOptions(sure=0.95, located=0.5))  # cleanlab's defaults
    calibrated = [
        ImageBoxes(p.boxes, p.classes, image.calibrated) for p, image in zip(predictions, scores.images, strict=True)
    ]
    cl_labels = [{"bboxes": image.boxes, "labels": image.classes} for image in labels]
    expected = get_label_quality_scores(cl_labels, [cleanlab_predictions(p, 3) for p in calibrated], verbose=False)
    assert np.array_equal([image.quality for image in scores.images], expected) and len(set(expected)) > 30


def test_each_kind_on_one_image() -> None:
    """A swapped class, a shifted box, a box nothing supports and a missed defect, with a neighbour's detection
    touching a good box (which must stay unflagged); other images only calibrate the confidences."""
    good, swapped, shifted, lonely = (10, 10, 60, 60), (100, 10, 150, 60), (200, 30, 250, 80), (300, 300, 340, 340)
    missed, neighbour = (10, 200, 60, 250), (62, 10, 112, 60)  # neighbour: the next defect, touching ``good``
    labels = [ImageBoxes.of([(0, good), (1, swapped), (2, shifted), (0, lonely), (0, neighbour)])]
    shifted_truth = (200, 10, 250, 60)
    predictions = [
        ImageBoxes.of(
            [(0, good), (0, swapped), (2, shifted_truth), (1, missed), (0, neighbour)], [0.97, 0.96, 0.95, 0.98, 0.99]
        )
    ]
    for k in range(30):  # plain images: right, sure predictions (and unsure wrong ones)
        box = (10 + k, 10, 60 + k, 60)
        labels.append(ImageBoxes.of([(k % 3, box)]))
        predictions.append(ImageBoxes.of([(k % 3, box), ((k + 1) % 3, (300, 300, 320, 320))], [0.9 + k / 300, 0.2]))
    image = score_images(labels, predictions, 3, AuditOptions()).images[0]
    assert image.issues == [None, "swapped", "mislocated", "spurious", None]
    assert image.disputed_by[1:3] == [1, 2]  # the prediction shown beside each disputed box
    assert np.isnan(image.missing[[0, 1, 2, 4]]).all() and image.missing[3] < 0.2
    assert image.quality < 0.5


# --- folds -------------------------------------------------------------------------------------------------------


def test_folds_keep_groups_together_and_hold_out_nothing_they_train_on(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import fiftyone as fo
    from PIL import Image

    from fabricdata.prepare.folds import plan_folds

    folder = generate(SynthConfig(images=24, seed=5, width=160, height=120), tmp_path / "fabric")
    twin = folder / "fabric_00000_copy.jpg"  # a re-encoded copy of an image: near-identical
    Image.open(folder / "fabric_00000.jpg").save(twin, quality=80)
    twin.with_suffix(".xml").write_bytes((folder / "fabric_00000.xml").read_bytes())
    assert run(["import", str(folder), "-d", name], capsys)[0] == 0
    assert run(["augment", "--recipe", "flip", "--split", "all", "--workers", "1", "-d", name], capsys)[0] == 0
    plan = plan_folds(name, 3, seed=1)
    dataset = fo.load_dataset(name)
    ids, paths, sources = dataset.values(["id", "filepath", "source_id"])
    by_path = dict(zip(paths, ids, strict=True))
    assert plan.fold_of[by_path[str(twin)]] == plan.fold_of[by_path[str(folder / "fabric_00000.jpg")]]
    assert plan.near_duplicates >= 1 and sorted(set(plan.fold_of.values())) == [0, 1, 2]
    for k, roles in enumerate(plan.roles):
        held = {sid for sid, fold in plan.fold_of.items() if fold == k}
        assert {sid for sid, role in roles.items() if role == "test"} == held
        assert "val" in roles.values()
        for sid, source in zip(ids, sources, strict=True):
            if source:  # a variant: with its source, never beside its held-out source
                assert roles.get(sid) == (None if source in held else roles[source])
    labels = dict(zip(ids, dataset.values("ground_truth.detections.label"), strict=True))
    for k in range(3):  # stratified: every class in every fold
        shown = {label for sid, fold in plan.fold_of.items() if fold == k for label in labels[sid] or []}
        assert shown == set(CLASSES)


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--set", "data=elsewhere"], "--set data"),
        (["--set", "lora.rank=8"], "lora.rank"),
        (["--folds", "1"], "at least 2 folds"),
        (["--rescore"], "no audit there"),
        (["--predictions", "nowhere.jsonl"], "nowhere.jsonl"),
    ],
)
def test_bad_requests_stop_with_one_line(
    args: list[str], said: str, tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    generate(SynthConfig(images=6, seed=1, width=96, height=72), tmp_path / "f")
    assert run(["import", str(tmp_path / "f"), "-d", name], capsys)[0] == 0
    code, _, err = run(["audit", "-d", name, "--root", str(tmp_path / "runs"), "--set", "model=m", *args], capsys)
    assert code == 1 and said in err and "Traceback" not in err, err
    assert not list((tmp_path / "runs").glob("*/fold-*"))  # nothing trained


# --- the whole path with the tiny model ----------------------------------------------------------------------------

TINY = ["--set", "num_workers=0", "--set", "batch_size=2", "--set", "epochs=2"]


def _audit_args(model: Path, name: str, audit: str, root: Path) -> list[str]:
    sets = ["--set", f"model={model}", "--set", "lr=1e-3", "--set", "lora.targets=all", *TINY]
    return ["audit", "--folds", "2", "-d", name, "--name", audit, "--root", str(root), *sets]


def _scores(name: str) -> dict[str, Any]:
    """Per audited sample: its fold, label quality, and each box's audit attributes (by box id)."""
    import fiftyone as fo

    found = {}
    for sample in fo.load_dataset(name).exists("audit_predictions"):
        boxes = {
            d.id: (d["audit_issue"], d["audit_swap"], d["audit_badloc"], d["audit_support"])
            for d in sample.ground_truth.detections
        }
        found[sample.id] = (
            sample["audit_fold"],
            sample["audit_score"],
            boxes,
            len(sample.audit_predictions.detections),
        )
    return found


def _checkpoint_saves(run: Path) -> int:
    """How often a finished run reached the ``train.checkpoint`` crash point: every epoch saves ``last``, and
    ``best`` first when validation improved."""
    import csv

    summary = json.loads((run / "summary.json").read_text())
    losses = [float(row["loss"]) for row in csv.DictReader((run / "metrics.csv").open()) if row["split"] == "val"]
    improved = sum(1 for i, loss in enumerate(losses) if loss < min(losses[:i], default=float("inf")))
    return int(summary["epochs_done"]) + improved


@pytest.mark.slow
def test_audit_with_the_tiny_model_resumes_after_a_kill_in_its_second_fold(
    tiny_model_dir: Path, tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    generate(SynthConfig(images=12, seed=4, width=256, height=192), tmp_path / "fabric")
    assert run(["import", str(tmp_path / "fabric"), "-d", name], capsys)[0] == 0
    code, out, err = run(_audit_args(tiny_model_dir, name, "straight", tmp_path / "a"), capsys)
    assert code == 0, err
    folder = tmp_path / "a" / "audit-straight"
    for k in (0, 1):
        assert (folder / f"fold-{k}" / "summary.json").is_file() and (
            folder / f"fold-{k}" / "predictions.jsonl"
        ).is_file()
    straight = _scores(name)
    assert len(straight) == 12 and {fold for fold, *_ in straight.values()} == {0, 1}  # every image, by its fold
    import fiftyone as fo

    views = fo.load_dataset(name).list_saved_views()
    assert {f"audit-{v}" for v in (*KINDS, "worst")} <= set(views) and not any("fold-export" in v for v in views)
    assert len(fo.load_dataset(name).load_saved_view("audit-worst")) == 12
    report = (folder / "audit.md").read_text()
    assert "| 0 |" in report and "images trained on" in report and "best val loss" in report
    assert "fold 0 (" in out and "trained on" in out
    # the same audit again, killed in its second fold's training (its third checkpoint save: ``best`` and ``last``
    # of epoch 1 are written), then rerun
    saves = _checkpoint_saves(folder / "fold-0")
    args = _audit_args(tiny_model_dir, name, "killed", tmp_path / "b")
    marker = tmp_path / "paused"
    env = {**os.environ, "FABRICDATA_PAUSE_AT": f"train.checkpoint:{saves + 3}", "FABRICDATA_PAUSE_FILE": str(marker)}
    process = subprocess.Popen(
        [sys.executable, "-m", "fabricdata", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 600
    while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL, "the audit ended before it could be killed"
    killed = tmp_path / "b" / "audit-killed"
    assert (killed / "fold-0" / "summary.json").is_file() and not (killed / "fold-1" / "summary.json").exists()
    code, out, err = run(args, capsys)
    assert code == 0, err
    assert "[1/2] fold-0: finished earlier, skipped" in out and "[2/2] fold-1: resuming" in out
    assert _scores(name) == straight
