"""The model in the annotators' hands: prediction for every task on any folder, and model-assisted labeling
(prelabel -> App edit -> verified -> writeback), with a tiny Florence-2 taught 4 synthetic images offline."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fabricdata.core.annotation import ImageAnnotation, LabeledBox
from fabricdata.core.boxes import Box, ImageSize, box_to_fiftyone, florence_bin_width
from fabricdata.core.florence import parse
from fabricdata.formats.voc import read_voc, write_voc
from fabricdata.prepare.synth import SynthConfig, generate
from tests.helpers import (
    ARTIFACTS,
    CHROMIUM_FLAGS,
    free_port,
    imported_synth,
    new_name,
    prediction_records,
    require_chromium,
    run,
    wait_for_http,
)

SIZE = ImageSize(256, 192)
IMAGES = 4  # x 3 tasks: 12 records, one full batch per step (as the <OD> overfit test of test_finetune)
PHRASES = Path(__file__).parents[1] / "pipelines" / "phrases.yaml"
TEACH = [
    "--set", "epochs=200", "--set", "batch_size=12", "--set", "num_workers=0", "--set", "lr=5e-3",
    "--set", "schedule=cosine", "--set", "warmup_ratio=0.05", "--set", "lora.dropout=0", "--set", "lora.r=32",
    "--set", "lora.alpha=64", "--set", "lora.targets=all",
]  # fmt: skip


class _NoCapture:
    def readouterr(self) -> tuple[str, str]:
        return "", ""


@pytest.fixture(scope="module")
def taught(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[dict[str, Path]]:
    """A run that learnt 4 synthetic images for <OD>, <DENSE_REGION_CAPTION> and grounding (phrases from
    pipelines/phrases.yaml), its export, and the images without their label files."""
    import fiftyone as fo

    root = tmp_path_factory.mktemp("assist")
    capsys = _NoCapture()
    name = new_name("teach")
    generate(SynthConfig(images=IMAGES, seed=1, width=SIZE.width, height=SIZE.height), root / "labelled")
    assert run(["import", str(root / "labelled"), "-d", name], capsys)[0] == 0  # type: ignore[arg-type]
    assert run(["split", "-d", name, "--ratios", "1,0,0"], capsys)[0] == 0  # type: ignore[arg-type]
    export = root / "export"
    args = ["export", "florence", str(export), "-d", name, "--phrases", str(PHRASES), "--allow-empty-split"]
    assert run(args, capsys)[0] == 0  # type: ignore[arg-type]
    fo.delete_dataset(name)
    out = root / "runs" / "taught"
    args = ["train", "--set", f"model={tiny_model_dir}", "--set", f"data={export}", "--set", f"out={out}", *TEACH]
    assert run(args, capsys)[0] == 0  # type: ignore[arg-type]
    photos = root / "photos" / "line 2"  # a nested folder, as a camera's upload tree has them
    photos.mkdir(parents=True)
    for image in sorted((root / "labelled").glob("*.jpg")):
        shutil.copy(image, photos / image.name)
    yield {"run": out, "export": export, "labelled": root / "labelled", "photos": root / "photos"}


def _truth(labelled: Path) -> dict[str, list[tuple[str, tuple[float, ...]]]]:
    return {
        xml.with_suffix(".jpg").name: sorted((o.label, o.box.as_tuple()) for o in read_voc(xml).objects)
        for xml in labelled.glob("*.xml")
    }


def _close(a: tuple[float, ...], b: tuple[float, ...], bins: float = 1.0) -> bool:
    bin_w, bin_h = florence_bin_width(SIZE)
    limits = (bin_w, bin_h, bin_w, bin_h)
    return all(abs(x - y) <= bins * lim for x, y, lim in zip(a, b, limits, strict=True))


def _matches(found: list[tuple[str, tuple[float, ...]]], expected: list[tuple[str, tuple[float, ...]]]) -> bool:
    found, expected = sorted(found), sorted(expected)
    return [f[0] for f in found] == [e[0] for e in expected] and all(
        _close(f[1], e[1]) for f, e in zip(found, expected, strict=True)
    )


@pytest.mark.slow
def test_predict_od_and_dense_on_a_folder_of_new_photos(
    taught: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    truth = _truth(taught["labelled"])
    for task in ("od", "dense"):
        out = tmp_path / task
        args = ["predict", "--run", str(out), "--model", str(taught["run"]), "--images", str(taught["photos"])]
        code, text, err = run([*args, "--task", task, "--data", str(taught["export"])], capsys)
        assert code == 0, err
        assert "4 predictions" in text and "4 images" in text
        records = prediction_records(out / "predictions.jsonl")
        assert {r["image"] for r in records} == {f"line 2/{name}" for name in truth}
        for record in records:
            assert record["task"] == {"od": "<OD>", "dense": "<DENSE_REGION_CAPTION>"}[task]
            assert Path(record["filepath"]).is_file()
            found = [(d["label"], tuple(d["bbox"])) for d in record["detections"]]
            assert _matches(found, truth[Path(record["image"]).name]), (task, record)
            assert all(0.5 < d["confidence"] <= 1.0 for d in record["detections"])
            if task == "dense":  # generated phrases name their class; the phrase is kept
                phrases = {"wrinkle": "fabric wrinkle", "drop": "dropped stitch", "broken": "broken weft"}
                assert all(d["text"] == phrases[d["label"]] for d in record["detections"]), record


@pytest.mark.slow
def test_grounding_asks_each_class_phrase_or_the_phrase_given(
    taught: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # without --phrase: every class phrase of the run's export, one record per image and phrase
    out = tmp_path / "grounding"
    args = ["predict", "--run", str(taught["run"]), "--images", str(taught["photos"]), "--task", "grounding"]
    code, text, err = run([*args, "--max-new-tokens", "80", "--num-beams", "1"], capsys)
    assert code == 0, err
    records = prediction_records(taught["run"] / "predictions.jsonl")
    assert len(records) == 12 and "12 predictions" in text
    assert {r["phrase"] for r in records} == {"fabric wrinkle", "dropped stitch", "broken weft"}
    labels = {"fabric wrinkle": "wrinkle", "dropped stitch": "drop", "broken weft": "broken"}
    for record in records:
        assert record["task"] == "<CAPTION_TO_PHRASE_GROUNDING>"
        assert all(d["label"] == labels[record["phrase"]] for d in record["detections"])
    # a phrase given is asked as it is: the caption the model learnt for one image finds that image's boxes
    export_records = [json.loads(line) for line in (taught["export"] / "train" / "annotations.jsonl").open()]
    one = next(r for r in export_records if r["prefix"].startswith("<CAPTION_TO_PHRASE_GROUNDING>") and r["suffix"])
    caption = one["prefix"].removeprefix("<CAPTION_TO_PHRASE_GROUNDING>")
    single = tmp_path / "single"
    single.mkdir()
    shutil.copy(taught["export"] / "train" / one["image"], single / one["image"])
    args = ["predict", "--run", str(out), "--model", str(taught["run"]), "--images", str(single)]
    code, _, err = run([*args, "--task", "grounding", "--phrase", caption], capsys)
    assert code == 0, err
    (record,) = prediction_records(out / "predictions.jsonl")
    assert record["phrase"] == caption
    expected = sorted(box.as_tuple() for _, box in parse(one["suffix"], SIZE))
    found = sorted(tuple(d["bbox"]) for d in record["detections"])
    assert len(found) == len(expected) and all(_close(f, e) for f, e in zip(found, expected, strict=True))
    assert all(d["label"] == caption for d in record["detections"])


@pytest.mark.slow
def test_caption_task_and_unreadable_images(
    taught: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(next(taught["photos"].rglob("*.jpg")), folder / "good.jpg")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    out = tmp_path / "caption"
    args = ["predict", "--run", str(out), "--model", str(taught["run"]), "--images", str(folder)]
    code, text, err = run([*args, "--task", "caption", "--max-new-tokens", "20"], capsys)
    assert code == 1  # the unreadable image is named, the readable one predicted
    assert "broken.jpg: cannot be read as an image" in err and "1 prediction" in text
    (record,) = prediction_records(out / "predictions.jsonl")
    assert record["task"] == "<CAPTION>" and record["image"] == "good.jpg"
    assert isinstance(record["caption"], str) and "<" not in record["caption"] and record["detections"] == []
    code, _, err = run([*args, "--task", "segment"], capsys)
    assert code != 0 and "unknown task 'segment'" in err


def _edit(sample, moved: Box | None) -> None:  # type: ignore[no-untyped-def]
    """What an annotator does in the App: move the first box, or delete every box."""
    detections = sample.ground_truth.detections
    if moved is None:
        sample.ground_truth.detections = []
    else:
        detections[0].bounding_box = box_to_fiftyone(moved, SIZE)
    sample.tags.append("verified")
    sample.save()


def _incoming(root: Path) -> tuple[Path, Path]:
    """New photos (4 synthetic ones in a nested folder, a plain PNG, and one photo that has a label file), and the
    folder of their LabelImg truth."""
    labelled = root / "labelled"
    generate(SynthConfig(images=IMAGES, seed=1, width=SIZE.width, height=SIZE.height), labelled)
    incoming = root / "incoming"
    (incoming / "line 2").mkdir(parents=True)
    for image in sorted(labelled.glob("*.jpg")):
        shutil.copy(image, incoming / "line 2" / image.name)
    shutil.copy(labelled / "fabric_00000.jpg", incoming / "labelled.jpg")  # has a label file: import's
    shutil.copy(labelled / "fabric_00000.xml", incoming / "labelled.xml")
    Image.new("RGB", (64, 64), (10, 200, 10)).save(incoming / "plain.png")  # no defect
    return incoming, labelled


class Oracle:
    """A predictor that knows the truth: every true box of ``fabric_0000K.jpg`` at confidence 0.5 + 0.1 K (so
    the view's order is known), plus one box below the minimum confidence and one of a class the dataset does
    not have; nothing for other images. It records what it was asked and checks it got the one decode."""

    def __init__(self, truth: dict[str, list[tuple[str, tuple[float, ...]]]]) -> None:
        self.truth = truth
        self.asked: list[str] = []

    def __call__(self, paths: list[Path], images: list[Image.Image]) -> list[list[dict[str, object]]]:
        from fabricdata.core.images import load_rgb

        found: list[list[dict[str, object]]] = []
        for path, image in zip(paths, images, strict=True):
            assert np.array_equal(np.asarray(image), np.asarray(load_rgb(path))), path
            self.asked.append(path.name)
            if path.name not in self.truth:
                found.append([])
                continue
            confidence = 0.5 + 0.1 * int(path.stem[-1])
            boxes = [
                {"label": label, "bbox": list(box), "confidence": confidence} for label, box in self.truth[path.name]
            ]
            boxes.append({"label": "drop", "bbox": [1, 1, 9, 9], "confidence": 0.1})
            boxes.append({"label": "stain", "bbox": [2, 2, 20, 20], "confidence": 0.99})
            found.append(boxes)
        return found


def test_prelabel_verify_and_write_back(tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    """prelabel's bookkeeping with known boxes (an oracle predictor), then the annotators' loop through the CLI."""
    import fiftyone as fo

    from fabricdata.assist.prelabel import prelabel

    # the dataset the mill already has: other labelled photos in LabelImg VOC
    generate(SynthConfig(images=4, seed=9, width=SIZE.width, height=SIZE.height), tmp_path / "known")
    assert run(["import", str(tmp_path / "known"), "-d", name], capsys)[0] == 0
    incoming, labelled = _incoming(tmp_path)
    truth = _truth(labelled)
    oracle = Oracle(truth)
    report = prelabel(incoming, name, tmp_path / "runs" / "taught", predictor=oracle)
    assert sorted(oracle.asked) == sorted([*truth, "plain.png"])  # the labelled photo is import's, never asked
    assert (report.added, report.labeled, report.known, report.view) == (5, 1, 0, "taught-to-verify")
    assert report.boxes == sum(len(boxes) for boxes in truth.values())
    assert report.below_confidence == 4 and report.other_labels == {"stain": 4} and report.unreadable == []
    dataset = fo.load_dataset(name)
    drafts = dataset.match_tags("prelabeled")
    assert len(drafts) == 5 and len(dataset) == 9
    for sample in drafts:
        dets = sample.ground_truth.detections
        assert all(d.proposal is True for d in dets)
        found = sorted((d.label, _pixels(d.bounding_box)) for d in dets)
        expected = truth.get(Path(sample.filepath).name, [])
        assert [f[0] for f in found] == [e[0] for e in expected], sample.filepath
        assert all(np.allclose(f[1], e[1], atol=1e-6) for f, e in zip(found, expected, strict=True))
        confidence = 0.5 + 0.1 * int(Path(sample.filepath).stem[-1]) if expected else None
        assert sample.prelabel_confidence == confidence and all(d.confidence == confidence for d in dets)
    # most uncertain first: the lowest best-box confidence, then the image without any box
    view = dataset.load_saved_view("taught-to-verify")
    assert [Path(p).name for p in view.values("filepath")] == [*sorted(truth), "plain.png"]
    # drafts wait: stats counts them apart, exports leave them out
    code, text, _ = run(["stats", "-d", name], capsys)
    assert code == 0 and "5 prelabeled images wait for verification" in text
    code, text, _ = run(["stats", "-d", name, "--json"], capsys)
    assert json.loads(text)["samples"] == 4
    # an annotator fixes two drafts and verifies them, edits a third without verifying it
    first, second, third, fourth = (drafts.match(fo.ViewField("filepath").ends_with(f"_0000{i}.jpg")).first()
                                    for i in (0, 1, 2, 3))  # fmt: skip
    _edit(first, Box(10, 12, 60, 70))
    _edit(second, None)
    third.ground_truth.detections = third.ground_truth.detections[:0]
    third.save()
    # ... and someone boxed the fourth in LabelImg meanwhile: that file is never overwritten
    theirs = Path(fourth.filepath).with_suffix(".xml")
    write_voc(ImageAnnotation(theirs.with_suffix(".jpg").name, SIZE, (LabeledBox("drop", Box(1, 2, 30, 40)),)), theirs)
    before = theirs.read_bytes()
    fourth.tags.append("verified")
    fourth.save()
    code, text, err = run(["writeback", "-d", name], capsys)
    assert code == 1 and "exists already" in err and "fabric_00003.xml" in err.replace("\n", "")
    assert theirs.read_bytes() == before
    written = sorted(path.name for path in incoming.rglob("*.xml"))
    assert written == ["fabric_00000.xml", "fabric_00001.xml", "fabric_00003.xml", "labelled.xml"]
    one = read_voc(Path(first.filepath).with_suffix(".xml"))
    assert one.verified and one.filename == "fabric_00000.jpg"
    assert [o.box.as_tuple() for o in one.objects] == [(10, 12, 60, 70)]  # the one true box, moved
    assert read_voc(Path(second.filepath).with_suffix(".xml")).objects == ()
    # reruns change nothing: writeback writes nothing new, prelabel asks nothing and keeps the edit
    code, text, _ = run(["writeback", "-d", name], capsys)
    assert "0 files written" in text.replace("file(s)", "files")
    again = prelabel(incoming, name, tmp_path / "runs" / "taught", predictor=Oracle(truth))
    assert (again.added, again.known, again.labeled) == (0, 5, 1)
    assert len(fo.load_dataset(name)) == 9
    kept = fo.load_dataset(name).match(fo.ViewField("filepath") == third.filepath).first()
    assert len(kept.ground_truth.detections) == 0
    # re-import: the written files are unchanged, LabelImg's file replaces the untouched draft, the labelled
    # image comes in; the two drafts still to verify stay out of the statistics
    code, text, err = run(["import", str(incoming), "-d", name], capsys)
    assert code == 0, err
    assert "1 added" in text and "1 updated" in text and "2 unchanged" in text, text
    updated = fo.load_dataset(name).match(fo.ViewField("filepath") == fourth.filepath).first()
    assert [d.label for d in updated.ground_truth.detections] == ["drop"] and "prelabeled" not in updated.tags
    code, text, _ = run(["stats", "-d", name, "--json"], capsys)
    stats = json.loads(text)
    assert stats["samples"] == 8 and stats["drafts_to_verify"] == 2


@pytest.mark.slow
def test_prelabel_drafts_what_the_trained_model_predicts(
    taught: dict[str, Path], tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The real model through the CLI: the drafts are the boxes ``predict`` writes for the same photos with the
    same model (at or above the minimum confidence, of the dataset's classes), whatever the model predicts."""
    import fiftyone as fo

    generate(SynthConfig(images=4, seed=9, width=SIZE.width, height=SIZE.height), tmp_path / "known")
    assert run(["import", str(tmp_path / "known"), "-d", name], capsys)[0] == 0
    incoming, _ = _incoming(tmp_path)
    code, text, err = run(["prelabel", str(incoming), "--run", str(taught["run"]), "-d", name], capsys)
    assert code == 0, err
    assert "5 images prelabeled" in text and "1 with a label file" in text and "taught-to-verify" in text
    (incoming / "labelled.jpg").unlink()
    out = tmp_path / "predicted"
    args = ["predict", "--run", str(out), "--model", str(taught["run"]), "--images", str(incoming)]
    assert run(args, capsys)[0] == 0
    classes = set(fo.load_dataset(name).default_classes)
    predicted = {
        Path(r["filepath"]).name: sorted(
            (d["label"], tuple(d["bbox"]), d["confidence"])
            for d in r["detections"] if d["confidence"] >= 0.25 and d["label"] in classes
        )
        for r in prediction_records(out / "predictions.jsonl")
    }  # fmt: skip
    drafts = fo.load_dataset(name).match_tags("prelabeled")
    assert len(drafts) == 5
    for sample in drafts:
        found = sorted((d.label, _pixels(d.bounding_box), d.confidence) for d in sample.ground_truth.detections)
        expected = predicted[Path(sample.filepath).name]
        assert [f[0] for f in found] == [e[0] for e in expected], sample.filepath
        for (_, box, confidence), (_, want, want_confidence) in zip(found, expected, strict=True):
            assert _close(box, want) and abs(confidence - want_confidence) < 0.02
        assert all(d.proposal is True for d in sample.ground_truth.detections)


def _pixels(relative: list[float]) -> tuple[float, ...]:
    x, y, w, h = relative
    return (x * SIZE.width, y * SIZE.height, (x + w) * SIZE.width, (y + h) * SIZE.height)


# --- the page: fabricdata serve -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def page_server(taught: dict[str, Path]) -> Iterator[str]:
    """``fabricdata serve`` with the taught run on a free port, offering the new photos to pick from."""
    port = free_port()
    cmd = [sys.executable, "-m", "fabricdata.cli", "serve", "--run", str(taught["run"]), "--port", str(port),
           "--images", str(taught["photos"])]  # fmt: skip
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    base = f"http://127.0.0.1:{port}/"
    wait_for_http(base, server, "fabricdata serve")
    yield base
    server.send_signal(signal.SIGINT)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        pytest.fail("fabricdata serve did not stop on Ctrl-C")


@pytest.mark.slow
@pytest.mark.browser
def test_serve_page_boxes_uploaded_photos_in_chromium(taught: dict[str, Path], page_server: str) -> None:
    from playwright.sync_api import sync_playwright

    executable = require_chromium()
    photos = sorted(taught["photos"].rglob("*.jpg"))[:2]
    truth = _truth(taught["labelled"])
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(page_server, wait_until="domcontentloaded", timeout=60_000)
        page.locator("input[type=file]").first.set_input_files([str(p) for p in photos])
        page.get_by_text(photos[1].stem).first.wait_for(timeout=30_000)  # uploaded and listed
        page.get_by_role("button", name="Detect").click()
        page.get_by_text("2 images,").wait_for(timeout=120_000)
        gallery = page.locator("#detections img")
        gallery.first.wait_for(timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "serve-od.png"), full_page=True)
        table_text = page.locator("#boxes").inner_text()
        source = gallery.first.get_attribute("src")
        drawn = page.request.get(source if source.startswith("http") else page_server.rstrip("/") + source).body()
        browser.close()
    expected = sum(len(truth[p.name]) for p in photos)
    assert table_text.count("fabric_0000") >= expected, table_text
    for photo in photos:
        for label, _ in truth[photo.name]:
            assert label in table_text
    # the image shown is the photo with boxes drawn on it: many pixels differ from the upload
    shown = np.asarray(Image.open(io.BytesIO(drawn)).convert("RGB")).astype(int)
    original = np.asarray(Image.open(photos[0]).convert("RGB")).astype(int)
    assert shown.shape == original.shape
    assert (np.abs(shown - original).max(axis=2) > 80).sum() > 300


@pytest.mark.slow
def test_serve_grounds_a_phrase_through_gradio_client(taught: dict[str, Path], page_server: str) -> None:
    from gradio_client import Client, handle_file

    client = Client(page_server, verbose=False)
    good = next(taught["photos"].rglob("*.jpg"))
    broken = good.parent.parent / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 truncated")
    gallery, boxes, said, note = client.predict(
        [handle_file(str(good)), handle_file(str(broken))], ["line 2/fabric_00001.jpg"], "grounding",
        "broken weft, dropped stitch", 0.0, api_name="/detect",
    )  # fmt: skip
    broken.unlink()
    assert "broken.jpg: not a readable image" in note and "2 images" in note and "per image" in note
    assert [item["caption"] for item in gallery] == [good.name, "fabric_00001.jpg"]
    rows = boxes["data"]
    assert rows and {row[7] for row in rows} <= {"broken weft", "dropped stitch"}
    assert all(row[1] == row[7] for row in rows)  # a phrase typed is the label of its boxes
    assert all(0 <= row[2] <= 1 for row in rows)
    assert f"{good.name} [broken weft]:" in said and "fabric_00001.jpg [dropped stitch]:" in said
    # the slider filters the last result without running the model again
    gallery, boxes = client.predict(1.0, api_name="/refilter")
    assert len(gallery) == 2 and all(row[2] >= 1.0 for row in boxes["data"])


def test_review_says_it_evaluates_od_predictions(tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    imported_synth(tmp_path / "fabric", name, capsys, images=2)
    folder = tmp_path / "runs" / "grounded"
    folder.mkdir(parents=True)
    record = {"image": "fabric_00000.jpg", "task": "<CAPTION_TO_PHRASE_GROUNDING>", "phrase": "broken weft",
              "text": "", "detections": [{"label": "broken", "bbox": [1, 2, 30, 40], "confidence": 0.9}]}  # fmt: skip
    (folder / "predictions.jsonl").write_text(json.dumps(record) + "\n")
    code, _, err = run(["review", "--run", str(folder), "-d", name], capsys)
    assert code == 1 and "holds <CAPTION_TO_PHRASE_GROUNDING> predictions; review evaluates <OD>" in err
