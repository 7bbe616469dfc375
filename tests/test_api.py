"""The Python API as a notebook uses it: ``import fabricdata as fd``, FiftyOne views, typed results.

Every verb is called with an ``fo.DatasetView``: those that work on samples must touch the view's samples and
no other; those that add samples or act on a dataset's label history must refuse the view in one line.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import fabricdata as fd
from fabricdata.core.boxes import ImageSize, fiftyone_to_box
from fabricdata.core.errors import DatasetError
from fabricdata.prepare.synth import SynthConfig, generate

IMAGES = 24


@pytest.fixture
def fabric(tmp_path: Path, name: str) -> Path:
    """24 synthetic fabric images imported through the API (progress reported in the one shape)."""
    folder = generate(SynthConfig(images=IMAGES, seed=5, width=160, height=120), tmp_path / "fabric")
    seen: list[fd.Progress] = []
    report = fd.import_folder(folder, name, progress=seen.append)
    assert report.added == IMAGES and not report.errors
    assert seen[0] == fd.Progress("importing", 0, IMAGES) and seen[-1] == fd.Progress("importing", IMAGES, IMAGES)
    return folder


def perfect_predictions(samples: Any, out: Path) -> Path:
    """A predictions.jsonl as a perfect model writes it for the samples' labels now."""
    lines = []
    for sample in samples.sort_by("filepath"):
        size = ImageSize(sample.metadata.width, sample.metadata.height)
        detections = [
            {"label": d.label, "bbox": list(fiftyone_to_box(d.bounding_box, size).as_tuple()), "confidence": 0.9}
            for d in sample.ground_truth.detections
        ]
        lines.append(json.dumps({"image": Path(sample.filepath).name, "filepath": sample.filepath, "task": "<OD>",
                                 "text": "", "detections": detections}))  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def test_the_package_face_imports_the_api_only_when_asked() -> None:
    code = (
        "import sys, fabricdata as fd; assert 'fabricdata.api' not in sys.modules and 'fiftyone' not in sys.modules;"
        " fd.validate; assert 'fabricdata.api' in sys.modules; print(sorted(set(fd.api.__all__) - set(dir(fd))))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr
    code = (  # the verb review shares its name with the subpackage fabricdata.review: both keep working
        "import fabricdata as fd, fabricdata.review.report as report, inspect;"
        " from fabricdata.review.review import ReviewSummary;"
        " assert 'compare' in inspect.signature(fd.review).parameters and report.__name__.endswith('review.report')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        fd.nothing  # noqa: B018


def test_every_sample_verb_works_on_the_view_and_only_on_it(fabric: Path, name: str, tmp_path: Path) -> None:
    dataset = fd.load(name)
    inside = set(dataset.sort_by("filepath").limit(12).values("id"))
    view = dataset.select(list(inside))  # as the App's selection gives it; stays these samples as variants come

    assert fd.stats(view).samples == 12 and fd.stats(name).samples == IMAGES
    patches = view.to_patches("ground_truth").limit(5)  # the App's patches view: the images of those boxes
    assert fd.stats(patches).samples == len(set(patches.values("sample_id"))) >= 1
    split = fd.split(view, ratios=(0.5, 0.25, 0.25))
    assert set(dataset.match_tags(["train", "val", "test"]).values("id")) == inside
    assert split.assigned > 0 and sum(table.get("(images)", 0) for table in split.images.values()) == 12

    report = fd.validate(view, save_views=False)
    assert report.samples == 12 and report.dataset == name

    train = set(view.match_tags("train").values("id"))
    augmented = fd.augment(view, "flip", split="train")
    assert augmented.sources == len(train) and augmented.created == len(train)
    assert set(dataset.select(augmented.created_ids).values("source_id")) == train

    balanced = fd.balance(view, target=40, max_copies=2, workers=1)
    sources = set(dataset.select(balanced_ids(dataset, augmented.created_ids)).values("source_id"))
    assert sources <= train, "balance made variants of samples outside the view"
    assert balanced.created == len(balanced_ids(dataset, augmented.created_ids)) > 0

    originals = view.exists("source_id", bool=False)
    manifest = fd.export_florence(originals, tmp_path / "export")
    exported = {Path(line["filepath"]).name for line in read_jsonl(tmp_path / "export", "sources.jsonl")}
    assert exported == {Path(p).name for p in originals.values("filepath")}
    assert manifest.dataset == name

    labelimg = fd.export_labelimg(originals, tmp_path / "labelimg")
    assert labelimg.images == len(originals) == len(list((tmp_path / "labelimg").glob("*.xml")))

    run = tmp_path / "runs" / "perfect"
    perfect_predictions(dataset.exists("source_id", bool=False), run / "predictions.jsonl")
    stages: list[str] = []
    summary = fd.review(originals, run, progress=lambda p: stages.append(p.stage))
    assert summary.images == len(originals) and summary.map == pytest.approx(1.0)
    assert "storing predictions" in stages

    folds = [perfect_predictions(dataset.exists("source_id", bool=False), tmp_path / f"fold-{k}.jsonl") for k in "01"]
    audited = fd.audit(view, predictions=folds, root=tmp_path / "runs", name="api")
    assert audited.images == len(originals)


def balanced_ids(dataset: Any, augmented: list[str]) -> list[str]:
    """The variants balance made (every variant but augment's)."""
    return [sid for sid in dataset.exists("source_id").values("id") if sid not in set(augmented)]


def read_jsonl(root: Path, name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for path in root.rglob(name) for line in path.read_text().splitlines()]


def test_writeback_of_a_view_writes_its_files_only(fabric: Path, name: str) -> None:
    dataset = fd.load(name)
    ordered = dataset.sort_by("filepath")
    first, last = ordered.first(), ordered.last()
    for sample in (first, last):
        sample.ground_truth.detections[0].label = (
            "drop" if sample.ground_truth.detections[0].label != "drop" else "broken"
        )
        sample.save()
    before = Path(last.annotation_path).read_bytes()
    report = fd.writeback(ordered.limit(1))
    assert report.written == [first.annotation_path] and not report.errors
    assert Path(last.annotation_path).read_bytes() == before  # outside the view: untouched
    assert fd.writeback(name).written == [last.annotation_path]


@pytest.mark.parametrize("ratios", [(0.5,), (2.0, -1.0, 0.0), (0.8, float("nan"), 0.1), (0.0, 0.0, 0.0)])
def test_split_refuses_bad_ratios_in_one_line_and_tags_nothing(
    fabric: Path, name: str, ratios: tuple[float, ...]
) -> None:
    with pytest.raises(fd.FabricDataError, match="--ratios: expected three non-negative numbers"):
        fd.split(name, ratios=ratios)
    assert not fd.load(name).match_tags(["train", "val", "test"])


def test_split_ratios_are_shares_as_on_the_command_line(fabric: Path, name: str) -> None:
    fd.split(name, ratios=(16, 4, 4))  # the same shares as --ratios 0.666,0.167,0.167
    counts = {s: len(fd.load(name).match_tags(s)) for s in ("train", "val", "test")}
    assert counts["val"] > 0 and counts["test"] > 0 and counts["train"] >= counts["val"] + counts["test"]


def test_label_versions_and_the_verbs_that_refuse_a_view(fabric: Path, name: str, tmp_path: Path) -> None:
    dataset = fd.load(name)
    view = dataset.limit(3)
    for refused in (
        lambda: fd.import_folder(fabric, view),
        lambda: fd.prelabel(fabric, view, tmp_path / "runs" / "r", predictor=lambda paths, images: []),
        lambda: fd.snapshot(view),
        lambda: fd.diff(view, "v1"),
        lambda: fd.restore(view, "v1", "never"),
    ):
        with pytest.raises(DatasetError, match=rf"works on a whole dataset, not a view: pass the dataset \('{name}'\)"):
            refused()

    first = fd.snapshot(dataset, name="before", message="as imported")
    assert first.created and first.version.name == "before"
    assert not fd.snapshot(name).created  # the same labels: the same version
    sample = dataset.sort_by("filepath").first()
    sample.ground_truth.detections.pop()
    sample.save()
    change = fd.diff(dataset, "before")
    assert change.total.removed == 1 and change.b == "now"
    restored = fd.restore(name, "before", f"{name}-restored")
    try:
        assert len(restored.dataset) == IMAGES and restored.version.id == first.version.id
    finally:
        restored.dataset.delete()


def test_prelabel_drafts_new_photos_through_the_api(fabric: Path, name: str, tmp_path: Path) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    for image in sorted(fabric.glob("*.jpg"))[:3]:
        (incoming / f"new-{image.name}").write_bytes(image.read_bytes())

    def predictor(paths: list[Path], images: list[Any]) -> list[list[dict[str, Any]]]:
        return [[{"label": "wrinkle", "bbox": [10.0, 10.0, 60.0, 50.0], "confidence": 0.9}] for _ in paths]

    seen: list[fd.Progress] = []
    report = fd.prelabel(incoming, name, tmp_path / "runs" / "r", predictor=predictor, progress=seen.append)
    assert report.added == 3 and report.boxes == 3 and seen[-1].done == 3 == seen[-1].total
    assert fd.stats(name).drafts_to_verify == 3
