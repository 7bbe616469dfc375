"""The plugin in the App that ``fabricdata app`` serves, driven in Debian's headless Chromium: *Write back to label
files* from the operator browser after an edit made through the API, and the runs panel's confidence slider,
whose F1 is checked against ``review.json`` and against the designed predictions (tests/app_data.py)."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fabricdata.core.boxes import Box, box_to_fiftyone
from fabricdata.formats.voc import read_voc
from tests.app_data import SIZE, imported_grey, write_predictions
from tests.helpers import ARTIFACTS, CHROMIUM_FLAGS, free_port, new_name, require_chromium, run, wait_for_http

pytestmark = pytest.mark.browser


@pytest.fixture
def served(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[dict[str, object]]:
    """A reviewed grey dataset, and ``fabricdata app`` serving it with the runs folder."""
    import fiftyone as fo

    name = new_name("plugin")
    folder = imported_grey(tmp_path, name, capsys)
    runs = tmp_path / "runs"
    run_folder = write_predictions(runs / "r1", folder)
    assert run(["review", "--run", str(run_folder), "-d", name], capsys)[0] == 0
    port = free_port()
    cmd = [sys.executable, "-m", "fabricdata.cli", "app", "-d", name, "--port", str(port), "--runs", str(runs)]
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    wait_for_http(base, server, "the App")
    yield {"name": name, "folder": folder, "run": run_folder, "url": f"{base}/datasets/{name}"}
    if server.poll() is None:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
    fo.delete_dataset(name)


def _open(page, url: str) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page.goto(url, wait_until="domcontentloaded", timeout=60_000)
    page.get_by_text("8 samples").wait_for(timeout=90_000)
    with contextlib.suppress(PlaywrightTimeout):  # FiftyOne's promotional pop-up, once per browser
        page.get_by_role("button", name="Dismiss").click(timeout=10_000)


def _summary(page) -> str:  # type: ignore[no-untyped-def]
    """The panel's line 'At confidence T: precision P, recall R, F1 F (all classes) ...'."""
    found = re.findall(r"At confidence [0-9.]+: .*", page.inner_text("body"))
    return found[0] if found else ""


def _slide(page, key: str, to: str) -> str:  # type: ignore[no-untyped-def]
    """One step of the slider by keyboard (the panel re-renders after each, so focus it again), until the panel
    shows the threshold ``to``."""
    page.get_by_role("slider").first.focus()
    page.keyboard.press(key)
    deadline = time.monotonic() + 30
    while f"At confidence {to}:" not in _summary(page) and time.monotonic() < deadline:
        time.sleep(0.5)
    return _summary(page)


def _grid_shown(page, out: Path, wait: float = 60) -> None:  # type: ignore[no-untyped-def]
    """Screenshot ``out`` once the grid shows its grey tiles again (left of the panel, below the toolbar)."""
    deadline = time.monotonic() + wait
    while True:
        page.screenshot(path=str(out))
        pixels = np.asarray(Image.open(out).convert("RGB")).astype(np.int16)[150:, 320:900]
        if int((np.abs(pixels - 128).max(axis=2) < 12).sum()) > 50_000 or time.monotonic() > deadline:
            return
        time.sleep(1)


def test_write_back_from_the_operator_browser_and_the_runs_panel_slider(served: dict[str, object]) -> None:
    import fiftyone as fo
    from playwright.sync_api import sync_playwright

    executable = require_chromium()
    ARTIFACTS.mkdir(exist_ok=True)
    folder = Path(str(served["folder"]))
    dataset = fo.load_dataset(str(served["name"]))
    # an edit through the API, as the App's Annotate tab makes it
    sample = dataset.sort_by("filepath").first()
    sample.ground_truth.detections[0].bounding_box = box_to_fiftyone(Box(40, 30, 140, 180), SIZE)
    sample.save()
    before = {xml.name: xml.read_bytes() for xml in folder.glob("*.xml")}
    review = json.loads((Path(str(served["run"])) / "review.json").read_text())
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1800, "height": 1000})
        _open(page, str(served["url"]))
        # the operator browser (the ` key), the operator, its form's Execute button
        page.keyboard.press("`")
        page.keyboard.type("Write back")
        page.get_by_text("Write back to label files", exact=True).click(timeout=30_000)
        page.get_by_text("Only files whose labels changed are written").wait_for(timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "app-plugin-writeback-form.png"))
        page.get_by_role("button", name="Execute").click(timeout=30_000)
        page.get_by_text("Wrote 1 label file; 7 unchanged").wait_for(timeout=60_000)
        page.screenshot(path=str(ARTIFACTS / "app-plugin-writeback.png"))
        # the runs panel, from the grid's new-panel menu (on a fresh page: no operator popover left over)
        _open(page, str(served["url"]))
        page.locator("[title='New panel']").first.click()
        page.get_by_text("fabricdata runs", exact=True).first.click(timeout=30_000)
        page.get_by_text("At confidence 0.65:").wait_for(timeout=60_000)
        at_best = _summary(page)
        up_one = _slide(page, "ArrowRight", "0.66")
        up_two = _slide(page, "ArrowRight", "0.67")
        # the grid's view: the run's predictions at or above the threshold (a FilterLabels stage in the view bar)
        page.locator("input[data-cy='input-view-stage'][value='FilterLabels']").wait_for(timeout=60_000)
        _grid_shown(page, ARTIFACTS / "app-plugin-runs-panel.png")
        back = _slide(page, "ArrowLeft", "0.66")
        back = _slide(page, "ArrowLeft", "0.65")
        browser.close()
    # the file on disk: exactly the edited one changed, with the edited box
    changed = {xml.name for xml in folder.glob("*.xml") if xml.read_bytes() != before[xml.name]}
    assert changed == {"g0.xml"}
    assert read_voc(folder / "g0.xml").objects[0].box.as_tuple() == (40, 30, 140, 180)
    # the slider: at the run's best-F1 confidence the F1 shown is review.json's, elsewhere the designed figure
    assert review["best_f1_threshold"] == pytest.approx(0.65)
    assert f"F1 {review['f1']:.3f} " in at_best and f"F1 {review['f1']:.3f} " in back, (at_best, back)
    assert "At confidence 0.66:" in up_one and "F1 0.839 " in up_one, up_one  # 13 of 15 kept, 13 of 16 found
    assert "At confidence 0.67:" in up_two and "F1 0.800 " in up_two, up_two  # 12 of 14 kept, 12 of 16 found
