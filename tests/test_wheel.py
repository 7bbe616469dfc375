"""A wheel is a complete fabricdata: built from a copy of the sources, installed into a fresh virtual environment
and run from outside the repository, it finds its augmentation recipes, phrase table and schemas, and the App that
``fabricdata app`` serves lists the plugin's operators (beside a user's own plugin) without any plugin step."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import urllib.request
import zipfile
from pathlib import Path

import fiftyone as fo
import pytest

from tests.helpers import free_port, new_name, wait_for_http

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_OPERATORS = ("writeback", "verify_drafts", "prelabel", "review_run", "open_run_view", "fabricdata_runs")
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
    assert {"fabricdata/app/plugin/fiftyone.yml", "fabricdata/app/plugin/__init__.py"} <= shipped

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
        _app_lists_the_plugin(fabricdata, dataset, tmp_path, env)
    finally:
        if fo.dataset_exists(dataset):
            fo.delete_dataset(dataset)


def _app_lists_the_plugin(fabricdata: str, dataset: str, tmp_path: Path, env: dict[str, str]) -> None:
    """``fabricdata app`` from the fresh install: its server lists fabricdata's operators and panel, and a user's
    own plugin (in the configured plugins folder, left as it is) still works beside them."""
    mine = tmp_path / "my-plugins" / "hello"
    mine.mkdir(parents=True)
    (mine / "fiftyone.yml").write_text('name: "@me/hello"\noperators:\n  - hello\n')
    (mine / "__init__.py").write_text(
        "import fiftyone.operators as foo\n\n\nclass Hello(foo.Operator):\n    @property\n    def config(self):\n"
        "        return foo.OperatorConfig(name='hello', label='Hello')\n\n    def execute(self, ctx):\n"
        "        return {}\n\n\ndef register(p):\n    p.register(Hello)\n"
    )
    port = free_port()
    app_env = {**env, "FIFTYONE_PLUGINS_DIR": str(tmp_path / "my-plugins")}
    cmd = [fabricdata, "app", "--dataset", dataset, "--port", str(port)]
    server = subprocess.Popen(
        cmd, cwd=tmp_path, env=app_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}", server, "fabricdata app (wheel)")
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/operators",
            data=json.dumps({"dataset_name": dataset}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            listed = json.loads(response.read())
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
    uris = {operator["uri"] for operator in listed["operators"]}
    ours = {f"@fabricdata/fabricdata/{name}" for name in PLUGIN_OPERATORS}
    assert ours | {"@me/hello/hello"} <= uris, sorted(uris)
    assert listed["errors"] == [], listed["errors"]  # tracebacks of plugins that failed to load
    assert sorted(p.name for p in mine.iterdir()) == ["__init__.py", "fiftyone.yml"]
