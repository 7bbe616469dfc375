"""What the product exposes to other users and machines (#28): the servers (`serve`, `app`) answer only requests
addressed to this machine's loopback names unless told to serve the network, `serve` has pixel and upload limits,
keeps only display copies and keeps uploads private; export folders are as readable as the user's umask allows."""

from __future__ import annotations

import gc
import http.client
import os
import signal
import stat
import subprocess
import sys
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.helpers import free_port, imported_synth, run, wait_for_http


def _status(port: int, host: str, path: str = "/") -> tuple[int, bytes]:
    """A raw HTTP request to 127.0.0.1:PORT with the Host header ``host`` (what a DNS-rebinding page sends)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", path, headers={"Host": host})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _stop(server: subprocess.Popen[str]) -> None:
    server.send_signal(signal.SIGINT)
    try:
        server.wait(timeout=60)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


# --- export folders ---------------------------------------------------------------------------------------------


def test_export_folders_are_as_readable_as_the_umask_allows(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    imported_synth(tmp_path / "fabric", name, capsys, images=4)
    assert run(["split", "-d", name, "--ratios", "0.5,0.25,0.25"], capsys)[0] == 0
    export = tmp_path / "export"
    for umask, expected in ((0o022, 0o755), (0o077, 0o700)):
        previous = os.umask(umask)
        try:
            assert run(["export", "florence", str(export), "-d", name, "--tasks", "od"], capsys)[0] == 0
        finally:
            os.umask(previous)
        for folder in (export, export / "train"):
            assert stat.S_IMODE(folder.stat().st_mode) == expected, (oct(umask), folder)


# --- serve: display copies only, memory released -----------------------------------------------------------------


def test_serve_keeps_display_copies_only_and_releases_the_full_images(tmp_path: Path) -> None:
    from fabricdata.assist.serve import DISPLAY_MAX_SIDE, _handlers
    from finetune.predict import PredictOptions

    big = tmp_path / "line-scan.png"
    Image.fromarray(np.full((3000, 4000, 3), 128, np.uint8)).save(big)

    class Stub:
        """A detector that finds one box, and remembers the images it was given by weak reference only."""

        phrases: tuple[tuple[str, str], ...] = ()
        device = "cpu"
        options = PredictOptions(batch_size=1)

        def __init__(self) -> None:
            self.given: list[weakref.ref[Any]] = []

        def detect(self, images: list[tuple[str, Any]], task: str, phrase: str = "") -> tuple[list[Any], float]:
            from fabricdata.assist.serve import Photo

            self.given += [weakref.ref(image) for _, image in images]
            box = {"label": "drop", "bbox": [1000.0, 500.0, 2000.0, 1500.0], "confidence": 0.9}
            found = [{"task": "<OD>", "text": "", "detections": [box]}]
            return [Photo(name, image, found) for name, image in images], 0.1

    detector = Stub()
    detect, refilter = _handlers(detector, {})  # type: ignore[arg-type]
    gallery, rows, _, note, photos = detect([str(big), str(big)], [], "od", "", 0.5)
    assert "2 images, 2 boxes" in note
    gc.collect()
    assert len(detector.given) == 2 and all(ref() is None for ref in detector.given)  # full images released
    assert all(max(photo.image.size) == DISPLAY_MAX_SIDE and photo.scale == 0.4 for photo in photos)
    assert all(image.size == (1600, 1200) for image, _ in gallery)
    assert rows[0][3:7] == [1000.0, 500.0, 2000.0, 1500.0]  # the table keeps the image's own pixels
    drawn = np.asarray(gallery[0][0].convert("RGB")).astype(int)
    assert (np.abs(drawn[200, 400:800] - 128).max(axis=1) > 60).sum() > 300  # the box's top edge, scaled by 0.4
    gallery, _ = refilter(photos, 0.95)
    assert [image.size for image, _ in gallery] == [(1600, 1200)] * 2


# --- serve and app as servers -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[tuple[int, Path]]:
    """``fabricdata serve`` with the tiny model, small limits (40 000 pixels, 1 MB uploads) and its own TMPDIR."""
    temp = tmp_path_factory.mktemp("serve-tmp")
    port = free_port()
    cmd = [sys.executable, "-m", "fabricdata.cli", "serve", "--model", str(tiny_model_dir), "--port", str(port),
           "--max-new-tokens", "4", "--num-beams", "1", "--max-pixels", "40000", "--max-upload-mb", "1"]  # fmt: skip
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "TMPDIR": str(temp)}
    env.pop("GRADIO_TEMP_DIR", None)
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    wait_for_http(f"http://127.0.0.1:{port}/", server, "fabricdata serve")
    yield port, temp
    _stop(server)
    assert not list(temp.glob("fabricdata-serve-*")), "the upload folder outlived the server"


@pytest.mark.slow
def test_serve_refuses_foreign_hosts_large_images_and_uploads_and_keeps_uploads_private(
    served: tuple[int, Path], tmp_path: Path
) -> None:
    import requests
    from gradio_client import Client, handle_file

    port, temp = served
    assert _status(port, "evil.example:80") == (400, b"Invalid host header")
    assert _status(port, f"localhost:{port}")[0] == 200 and _status(port, f"127.0.0.1:{port}")[0] == 200
    small, large, huge = tmp_path / "small.png", tmp_path / "large.png", tmp_path / "huge.png"
    Image.new("RGB", (150, 100), (90, 90, 90)).save(small)
    Image.new("RGB", (256, 192), (90, 90, 90)).save(large)  # 49 152 pixels: over the page's 40 000
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (700, 700, 3), np.uint8)).save(huge)  # ~1.5 MB
    client = Client(f"http://127.0.0.1:{port}/", verbose=False)
    _, _, _, note = client.predict(
        [handle_file(str(small)), handle_file(str(large))], [], "od", "", 0.0, api_name="/detect"
    )
    assert "large.png: too large (256x192: more than 40000 pixels)" in note and "1 image," in note, note
    uploads = list(temp.glob("fabricdata-serve-*"))
    assert len(uploads) == 1 and stat.S_IMODE(uploads[0].stat().st_mode) == 0o700
    assert list(uploads[0].rglob("small.png")) and not (temp / "gradio").exists()
    with pytest.raises(ValueError, match="exceeds the maximum file size of 1048576 bytes"):
        client.predict([handle_file(str(huge))], [], "od", "", 0.0, api_name="/detect")
    with huge.open("rb") as handle:  # not only the client: the server refuses it too
        refused = requests.post(f"http://127.0.0.1:{port}/gradio_api/upload", files={"files": handle}, timeout=60)
    assert refused.status_code == 413, refused.text


def test_app_help_warns_about_serving_the_network(capsys: pytest.CaptureFixture[str]) -> None:
    code, text, _ = run(["app", "--help"], capsys)
    flat = " ".join(text.replace("│", " ").split())
    assert code == 0 and "0.0.0.0 serves the whole network, and with it every file this user can read" in flat
    assert "--address 0.0.0.0" not in flat.split("Examples")[-1]  # no longer suggested without a word


@pytest.mark.slow
def test_app_refuses_foreign_host_headers(tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    import psutil

    imported_synth(tmp_path / "fabric", name, capsys, images=2)
    port = free_port()
    cmd = [sys.executable, "-m", "fabricdata.cli", "app", "-d", name, "--port", str(port)]
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/fiftyone", server, "fabricdata app")
        children = psutil.Process(server.pid).children(recursive=True)
        assert _status(port, "evil.example", "/fiftyone") == (400, b"Invalid host header")
        assert _status(port, f"attacker.example:{port}", f"/media?filepath={tmp_path / 'fabric'}")[0] == 400
        assert _status(port, f"localhost:{port}", "/fiftyone")[0] == 200
        assert _status(port, f"127.0.0.1:{port}", f"/datasets/{name}")[0] == 200
    finally:
        _stop(server)
    _, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, "the App server outlived 'fabricdata app'"
