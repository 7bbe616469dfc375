"""A wheel is a complete fabricdata: built from a copy of the sources, installed into a fresh virtual environment
and run from outside the repository, it finds its augmentation recipes, phrase table and schemas."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import fiftyone as fo
import pytest

from tests.helpers import new_name

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "setup.py", "README.md", "fabricdata", "finetune", "pipelines", "schemas")


@pytest.mark.slow
def test_a_wheel_installed_in_a_fresh_venv_runs_augment_with_its_shipped_recipe(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, source / name)
    dist = tmp_path / "dist"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", str(source), "--no-deps", "--no-build-isolation", "-w", str(dist)], check=True)
    [wheel] = dist.glob("fabricdata-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    assert {"fabricdata/_data/pipelines/augment/flip.yaml", "fabricdata/_data/pipelines/phrases.yaml"} <= shipped
    assert "fabricdata/_data/schemas/prediction-record.schema.json" in shipped

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(
        subprocess.check_output(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
        ).strip()
    )
    # the dependencies come from the test environment (nothing can be downloaded here); fabricdata from the wheel
    (site / "test-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([*pip, "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)], check=True)

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = subprocess.check_output(
        [python, "-c", "import fabricdata; print(fabricdata.__file__)"], text=True, cwd=tmp_path, env=env
    )
    assert where.startswith(str(site)), where
    fabricdata = str(venv / "bin" / "fabricdata")
    dataset = new_name("wheel")
    steps = [
        [fabricdata, "synth", str(tmp_path / "fabric"), "--images", "3", "--size", "128x96", "--workers", "1"],
        [fabricdata, "import", str(tmp_path / "fabric"), "--dataset", dataset],
        [fabricdata, "augment", "--dataset", dataset, "--recipe", "flip", "--split", "all"],
    ]
    try:
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
            assert done.returncode == 0, f"{step[1:3]}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
        assert len(fo.load_dataset(dataset).exists("source_id")) == 3
    finally:
        if fo.dataset_exists(dataset):
            fo.delete_dataset(dataset)
