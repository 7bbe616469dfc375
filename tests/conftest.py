"""Shared fixtures. FiftyOne's database is a private mongod of this session (tests/mongod.py), HOME and FiftyOne's
folders are temp dirs: the suite never sees, nor writes to, a user's datasets."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import mongod

ASSETS = Path(__file__).parent / "assets"
_SESSION_HOME = Path(tempfile.mkdtemp(prefix="fabricdata-tests-"))

# Before any test module imports fiftyone: its config is read once, at import.
os.environ.update(
    {
        "HOME": str(_SESSION_HOME / "home"),
        "FIFTYONE_DATABASE_DIR": str(_SESSION_HOME / "db"),
        "FIFTYONE_DEFAULT_DATASET_DIR": str(_SESSION_HOME / "fiftyone"),
        "FIFTYONE_DO_NOT_TRACK": "true",
        "FIFTYONE_DATABASE_VALIDATION": "false",
        "NO_ALBUMENTATIONS_UPDATE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    }
)
(_SESSION_HOME / "home").mkdir(parents=True, exist_ok=True)
# Under pytest-xdist the cores are shared by the workers: torch's (OpenMP's) threads per process are cut to the
# worker's share, inherited by the commands the tests start. Oversubscribed, spinning OpenMP threads made the
# training tests 4-8x slower when two of them overlapped.
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    _share = str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))
    for _variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(_variable, _share)


# Registered before fiftyone is imported, so it runs after FiftyOne's exit handlers and the private mongod's stop.
atexit.register(shutil.rmtree, _SESSION_HOME, ignore_errors=True)
mongod.start(_SESSION_HOME / "mongodb")  # sets FIFTYONE_DATABASE_URI, overriding any inherited one


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Browser tests are skipped at collection where Debian's chromium is absent (their fixtures, which train or
    import, are never built); on CI they run, and fail there if chromium is missing (make test installs it).
    They drive a real browser for tens of seconds each, so they are also ``slow`` (out of the quick loop)."""
    for item in items:
        if item.get_closest_marker("browser"):
            item.add_marker(pytest.mark.slow)
    if shutil.which("chromium") or os.environ.get("CI"):
        return
    skip = pytest.mark.skip(reason="Debian's chromium is not installed (make test installs it where it can)")
    for item in items:
        if item.get_closest_marker("browser"):
            item.add_marker(skip)


@pytest.fixture
def assets(tmp_path: Path) -> Path:
    """A writable copy of the golden LabelImg folders."""
    target = tmp_path / "assets"
    shutil.copytree(ASSETS, target)
    return target


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A tiny random Florence-2 saved once per test session."""
    from finetune.tiny import build_tiny_florence

    path = build_tiny_florence(tmp_path_factory.mktemp("tiny-florence"), classes=("wrinkle", "drop", "broken-weft"))
    yield path


@pytest.fixture(scope="session")
def tiny_processor(tiny_model_dir: Path):  # type: ignore[no-untyped-def]
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_model_dir, local_files_only=True)


@pytest.fixture
def name() -> Iterator[str]:
    """A fresh dataset name; the dataset is deleted after the test."""
    import uuid

    dataset = f"t-{uuid.uuid4().hex[:8]}"
    yield dataset
    import fiftyone as fo

    if fo.dataset_exists(dataset):
        fo.delete_dataset(dataset)
