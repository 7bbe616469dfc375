"""Helpers shared by the dataset tests (run the CLI in-process, temporary datasets)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from fabricdata.cli.main import main
from fabricdata.prepare.synth import SynthConfig, generate


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run ``fabricdata ARGS`` in this process; returns exit code, stdout, stderr."""
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def new_name(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def imported_synth(
    folder: Path, name: str, capsys: pytest.CaptureFixture[str], images: int = 30, seed: int = 3
) -> Path:
    """A synthetic LabelImg folder imported into dataset ``name``."""
    generate(SynthConfig(images=images, seed=seed, width=256, height=192), folder)
    code, _, err = run(["import", str(folder), "-d", name], capsys)
    assert code == 0, err
    return folder


ARTIFACTS = Path(__file__).parents[1] / "test-artifacts"
#: Chromium flags for a headless browser on a machine without a display, a GPU or a network
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]


def require_chromium() -> str:
    """Debian's chromium; a failure on CI (make test installs it), a skip elsewhere."""
    executable = shutil.which("chromium")
    if executable is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing on CI: 'make test' installs Debian's chromium")
        pytest.skip("Debian's chromium is not installed (make test installs it where it can)")
    return executable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_http(url: str, server: subprocess.Popen[str], what: str, timeout: float = 120) -> None:
    """Wait until ``url`` answers 200; fail with the server's output when it exits or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            output = server.stdout.read() if server.stdout else ""
            pytest.fail(f"{what} exited with {server.returncode} before answering on {url}:\n{output}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1)
    server.kill()
    pytest.fail(f"{what} did not answer on {url} within {timeout:.0f} s")


def prediction_records(path: Path) -> list[dict]:  # type: ignore[type-arg]
    """The lines of a predictions.jsonl, each checked against its JSON Schema."""
    import jsonschema

    from fabricdata.cli.schemas import SCHEMA_DIR

    schema = json.loads((SCHEMA_DIR / "prediction-record.schema.json").read_text())
    records = [json.loads(line) for line in path.read_text().splitlines()]
    for record in records:
        jsonschema.validate(record, schema)
    return records
