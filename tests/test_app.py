"""The FiftyOne App, served by `fabricdata app` and looked at in a real headless Chromium.

Images are flat grey and labels are the only coloured thing in the grid, so the test compares the grid of the
dataset with the grid of a saved view that hides the labels: boxes must add many coloured pixels.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fabricdata.core.annotation import ImageAnnotation, LabeledBox
from fabricdata.core.boxes import Box, ImageSize
from fabricdata.formats.voc import write_voc
from tests.helpers import ARTIFACTS, CHROMIUM_FLAGS, free_port, require_chromium, run, wait_for_http

pytestmark = pytest.mark.browser


@pytest.fixture
def grey_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[str]:
    import fiftyone as fo

    folder = tmp_path / "grey"
    folder.mkdir()
    size = ImageSize(320, 240)
    for i in range(8):
        Image.new("RGB", (size.width, size.height), (128, 128, 128)).save(folder / f"g{i}.jpg")
        boxes = (LabeledBox("wrinkle", Box(20, 20, 150, 200)), LabeledBox("drop", Box(170, 40, 300, 220)))
        write_voc(ImageAnnotation(f"g{i}.jpg", size, boxes), folder / f"g{i}.xml")
    name = f"app-{uuid.uuid4().hex[:8]}"
    assert run(["import", str(folder), "-d", name], capsys)[0] == 0
    dataset = fo.load_dataset(name)
    # a reviewed run whose model is right everywhere but adds a false positive on two images
    runs = tmp_path / "runs" / "r1"
    runs.mkdir(parents=True)
    lines = []
    for i, sample in enumerate(dataset.sort_by("filepath")):
        detections = [
            {"label": "wrinkle", "bbox": [20, 20, 150, 200], "confidence": 0.97},
            {"label": "drop", "bbox": [170, 40, 300, 220], "confidence": 0.97},
        ]
        if i < 2:
            detections.append({"label": "drop", "bbox": [260, 2, 316, 34], "confidence": 0.9})
        record = {
            "image": f"g{i}.jpg",
            "filepath": sample.filepath,
            "task": "<OD>",
            "text": "",
            "detections": detections,
        }
        lines.append(json.dumps(record))
    (runs / "predictions.jsonl").write_text("\n".join(lines) + "\n")
    assert run(["review", "--run", str(runs), "-d", name], capsys)[0] == 0
    assert len(dataset.load_saved_view("r1-false-positives")) == 2
    dataset.save_view("no-labels", dataset.select_fields())  # default fields only: no label field at all
    yield name
    fo.delete_dataset(name)


@pytest.fixture
def app_server(grey_dataset: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    yield from _serve(grey_dataset)


def _serve(dataset: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = free_port()
    cmd = [sys.executable, "-m", "fabricdata.cli", "app", "-d", dataset, "--port", str(port)]
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    wait_for_http(base, server, "the App")
    yield base, server
    if server.poll() is None:
        server.kill()


def coloured_pixels(png: Path) -> int:
    """Pixels of the sample grid (right of the sidebar, below the toolbar) that are clearly not grey."""
    pixels = np.asarray(Image.open(png).convert("RGB")).astype(np.int16)
    grid = pixels[150:, 320:]
    return int(((grid.max(axis=2) - grid.min(axis=2)) > 60).sum())


def grey_tile_pixels(png: Path) -> int:
    pixels = np.asarray(Image.open(png).convert("RGB")).astype(np.int16)[150:, 320:]
    return int((np.abs(pixels - 128).max(axis=2) < 12).sum())


def _shoot(page, url: str, out: Path, ready, wait: float = 60) -> Path:  # type: ignore[no-untyped-def]
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page.goto(url, wait_until="domcontentloaded", timeout=60_000)
    deadline = time.monotonic() + wait
    while True:
        time.sleep(2)
        with contextlib.suppress(PlaywrightTimeout):  # the promotional pop-up is not always there
            page.get_by_text("Dismiss", exact=True).click(timeout=500)
        page.screenshot(path=str(out))
        if ready(out) or time.monotonic() > deadline:
            return out


def test_app_grid_renders_the_datasets_boxes(app_server: tuple[str, subprocess.Popen[str]], grey_dataset: str) -> None:
    from playwright.sync_api import sync_playwright

    executable = require_chromium()
    base, server = app_server
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        with_boxes = _shoot(
            page,
            f"{base}/datasets/{grey_dataset}",
            ARTIFACTS / "app-grid.png",
            lambda p: coloured_pixels(p) > 5_000,
        )
        review_view = _shoot(
            page,
            f"{base}/datasets/{grey_dataset}?view=r1-false-positives",
            ARTIFACTS / "app-review-false-positives.png",
            lambda p: grey_tile_pixels(p) > 50_000,
        )
        without = _shoot(
            page,
            f"{base}/datasets/{grey_dataset}?view=no-labels",
            ARTIFACTS / "app-grid-no-labels.png",
            lambda p: grey_tile_pixels(p) > 200_000,
        )
        browser.close()
    assert grey_tile_pixels(without) > 200_000, "the grid of the view without labels did not render"
    boxes, baseline = coloured_pixels(with_boxes), coloured_pixels(without)
    assert boxes > 5_000 and boxes > 10 * max(baseline, 100), (boxes, baseline)
    # the review view shows only the 2 samples with a false positive (of 8), with their boxes
    tiles = grey_tile_pixels(review_view)
    assert 50_000 < tiles < 0.4 * grey_tile_pixels(without), (tiles, grey_tile_pixels(without))
    assert coloured_pixels(review_view) > 1_000
    # Ctrl-C stops the App cleanly
    server.send_signal(signal.SIGINT)
    output, _ = server.communicate(timeout=60)
    assert server.returncode == 0 and "App stopped" in output
    assert f"/datasets/{grey_dataset}" in output


@pytest.fixture
def tiff_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[str]:
    """Eight flat grey grayscale TIFFs (browsers cannot show TIFF), labelled in LabelImg VOC."""
    import fiftyone as fo

    folder = tmp_path / "maskdb" / "train"
    folder.mkdir(parents=True)
    size = ImageSize(320, 240)
    for i in range(8):
        Image.new("L", (size.width, size.height), 128).save(folder / f"m{i}.tif")
        boxes = (LabeledBox("wrinkle", Box(20, 20, 150, 200)),)
        write_voc(ImageAnnotation(f"m{i}.tif", size, boxes, depth=1), folder / f"m{i}.xml")
    name = f"tiff-{uuid.uuid4().hex[:8]}"
    assert run(["import", str(tmp_path / "maskdb"), "-d", name], capsys)[0] == 0
    yield name
    fo.delete_dataset(name)


def test_app_shows_tiff_images_through_their_proxies(tiff_dataset: str) -> None:
    import fiftyone as fo
    from playwright.sync_api import sync_playwright

    executable = require_chromium()
    ARTIFACTS.mkdir(exist_ok=True)
    server = _serve(tiff_dataset)
    base, _ = next(server)
    url = f"{base}/datasets/{tiff_dataset}"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        shown = _shoot(page, url, ARTIFACTS / "app-tiff-proxies.png", lambda p: grey_tile_pixels(p) > 150_000)
        # control: the same grid pointed at the TIFF files themselves shows no image
        dataset = fo.load_dataset(tiff_dataset)
        dataset.app_config.grid_media_field = "filepath"
        dataset.save()
        raw = _shoot(page, url, ARTIFACTS / "app-tiff-without-proxies.png", lambda p: False, wait=8)
        browser.close()
    with contextlib.suppress(StopIteration):
        next(server)
    assert grey_tile_pixels(shown) > 150_000, grey_tile_pixels(shown)
    assert grey_tile_pixels(raw) < 0.1 * grey_tile_pixels(shown), (grey_tile_pixels(raw), grey_tile_pixels(shown))
