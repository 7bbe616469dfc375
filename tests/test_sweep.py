"""Sweeps and the runs table, with the tiny offline Florence-2: a 2 x 2 grid makes four ordinary runs, a rerun
trains nothing, a sweep killed (SIGKILL) in its second run resumes it and ends with the adapters of an
uninterrupted sweep, bad grids stop before training, `runs` shows only the differing keys, and --review puts
mAP beside the losses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from fabricdata.core.errors import ConfigError
from fabricdata.prepare.synth import SynthConfig, generate
from finetune.sweep import combo_name, parse_axis, plan
from tests.helpers import new_name, run

FAST = ["--set", "num_workers=0", "--set", "batch_size=4", "--set", "epochs=1"]


@pytest.fixture(scope="module")
def reviewed_export(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A dataset of 8 synthetic images split train/val/test, and its Florence-2 export (kept for the module)."""
    import fiftyone as fo

    root = tmp_path_factory.mktemp("sweep")
    name = new_name("sweep")
    generate(SynthConfig(images=8, seed=4, width=256, height=192), root / "fabric")
    quiet = _Quiet()
    assert run(["import", str(root / "fabric"), "-d", name], quiet)[0] == 0  # type: ignore[arg-type]
    assert run(["split", "-d", name, "--ratios", "0.5,0.25,0.25"], quiet)[0] == 0  # type: ignore[arg-type]
    args = ["export", "florence", str(root / "export"), "-d", name, "--tasks", "od"]
    assert run(args, quiet)[0] == 0  # type: ignore[arg-type]
    yield name, root / "export"
    fo.delete_dataset(name)


class _Quiet:
    def readouterr(self) -> tuple[str, str]:
        return "", ""


def _common(model: Path, data: Path) -> list[str]:
    return ["--set", f"model={model}", "--set", f"data={data}", *FAST]


# --- planning -----------------------------------------------------------------------------------------------


def test_grid_parsing_naming_and_alpha_following_r(tmp_path: Path) -> None:
    assert parse_axis("lora.r=8,16").values == (8, 16)
    assert parse_axis("tasks=[<OD>],[<OD>, <DENSE_REGION_CAPTION>]").values == (
        ["<OD>"],
        ["<OD>", "<DENSE_REGION_CAPTION>"],
    )
    assert combo_name({"lora.r": 8, "lr": 3e-6}) == "r8-lr3e-6"
    assert combo_name({"lora.targets": "language+vision", "data": "exports/od first"}) == (
        "targets_language+vision-data_od_first"
    )
    runs = plan([parse_axis("lora.r=8,32")], tmp_path / "s", sets=["model=m", "data=d"])
    assert [(r.name, r.config.lora.r, r.config.lora.alpha) for r in runs] == [("r8", 8, 16), ("r32", 32, 64)]
    assert runs[0].config.out == tmp_path / "s" / "r8"
    fixed = plan([parse_axis("lora.r=8,32")], tmp_path / "s", sets=["lora.alpha=8"])
    assert [r.config.lora.alpha for r in fixed] == [8, 8]  # a given alpha is kept
    config = tmp_path / "base.yaml"
    config.write_text("lora:\n  alpha: 4\n")
    assert [r.config.lora.alpha for r in plan([parse_axis("lora.r=8,32")], tmp_path / "s", config)] == [4, 4]
    paired = plan([parse_axis("lora.r=8,16"), parse_axis("lr=1e-6,3e-6")], tmp_path / "s", zip_=True)
    assert [r.name for r in paired] == ["r8-lr1e-6", "r16-lr3e-6"]


@pytest.mark.parametrize(
    ("grid", "named"),
    [
        (["lora.rank=8,16"], "lora.rank"),
        (["lora.r=8,zero"], "lora.r"),
        (["lr=-1,1e-6"], "lr"),
        (["epochs=1,2", "epochs=3"], "epochs"),
        (["out=a,b"], "out"),
    ],
)
def test_a_bad_grid_stops_before_training_naming_the_key(
    grid: list[str], named: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["sweep", "--name", "bad", "--root", str(tmp_path), "--set", "model=nowhere", "--set", "data=nowhere"]
    for spec in grid:
        args += ["--grid", spec]
    code, _, err = run(args, capsys)
    assert code == 1 and named in err and "Traceback" not in err
    assert not (tmp_path / "bad").exists()  # nothing trained, no folder made
    with pytest.raises(ConfigError):
        plan([parse_axis(spec) for spec in grid], tmp_path / "bad")


# --- running ------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_two_by_two_sweep_rerun_runs_table_and_plot(
    reviewed_export: tuple[str, Path], tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fabricdata.review.runs import load_runs, plot_runs

    _, data = reviewed_export
    args = ["sweep", "--name", "grid", "--root", str(tmp_path), *_common(tiny_model_dir, data)]
    args += ["--grid", "lora.r=4,8", "--grid", "lr=1e-4,1e-3"]
    code, out, err = run(args, capsys)
    assert code == 0, err
    folders = sorted(p.name for p in (tmp_path / "grid").iterdir() if p.is_dir())
    assert folders == ["r4-lr0.0001", "r4-lr0.001", "r8-lr0.0001", "r8-lr0.001"]
    ledger = json.loads((tmp_path / "grid" / "sweep.json").read_text())["runs"]  # the sweep's own runs, by id
    assert sorted(ledger) == folders and len(set(ledger.values())) == 4
    for folder in folders:
        config = yaml.safe_load((tmp_path / "grid" / folder / "config.yaml").read_text())
        r, lr = int(folder[1]), float(folder.split("lr")[1])
        assert (config["lora"]["r"], config["lora"]["alpha"], config["lr"]) == (r, 2 * r, lr)
        assert config["out"] == str(tmp_path / "grid" / folder)
        last = tmp_path / "grid" / folder / "checkpoints" / "last"
        assert (last / "adapter_model.safetensors").is_file()
        assert json.loads((last / "trainer_state.json").read_text())["run_id"] == ledger[folder]
    assert "sweep grid" in out and "best val loss" in out
    said = out + err
    assert "adapter checksum" not in said and "precision no" not in said and "full precision (fp32)" in said
    adapters = {p: p.stat().st_mtime_ns for p in (tmp_path / "grid").rglob("adapter_model.safetensors")}
    code, out, _ = run(args, capsys)
    assert code == 0 and out.count("finished earlier, skipped") == 4
    assert adapters == {p: p.stat().st_mtime_ns for p in adapters}  # a rerun trains nothing
    code, out, _ = run(["runs", "--root", str(tmp_path), "--sweep", "grid", "--sort", "val_loss"], capsys)
    assert code == 0
    header = next(line for line in out.splitlines() if "best val loss" in line)
    assert "lora.r" in header and "lr" in header and "lora.alpha" in header
    assert "epochs" not in header and "batch_size" not in header and "model" not in header
    plot, md = tmp_path / "grid.png", tmp_path / "grid.md"
    code, _, _ = run(["runs", "--root", str(tmp_path / "grid"), "--plot", str(plot), "--md", str(md)], capsys)
    assert code == 0 and plot.stat().st_size > 10_000
    lines = md.read_text().splitlines()
    assert sum(line.startswith(("| r4-", "| r8-")) for line in lines) == 4
    figure = plot_runs(load_runs(tmp_path / "grid"), tmp_path / "again.png")
    train_axis, val_axis = figure.axes
    assert len(train_axis.lines) == 4 and len(val_axis.lines) == 4  # one line per run in each panel
    assert {line.get_label() for line in train_axis.lines} == {
        "lr=0.0001, r=4, alpha=8",
        "lr=0.001, r=4, alpha=8",
        "lr=0.0001, r=8, alpha=16",
        "lr=0.001, r=8, alpha=16",
    }


def _sweep_cmd(root: Path, model: Path, data: Path) -> list[str]:
    slow = ["--set", "batch_size=1", "--set", "epochs=3", "--set", "save_every_steps=1", "--set", "lora.dropout=0.1"]
    return [
        sys.executable, "-m", "fabricdata.cli", "sweep", "--name", "k", "--root", str(root),
        "--set", f"model={model}", "--set", f"data={data}", "--set", "num_workers=0", *slow,
        "--grid", "lr=1e-3,2e-3",
    ]  # fmt: skip


@pytest.mark.slow
def test_a_sweep_killed_in_its_second_run_resumes_it(
    reviewed_export: tuple[str, Path], tiny_model_dir: Path, tmp_path: Path
) -> None:
    from safetensors.torch import load_file

    _, data = reviewed_export
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    straight = subprocess.run(_sweep_cmd(tmp_path / "a", tiny_model_dir, data), capture_output=True, text=True, env=env)
    assert straight.returncode == 0, straight.stderr
    cmd = _sweep_cmd(tmp_path / "b", tiny_model_dir, data)
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    second = tmp_path / "b" / "k" / "lr0.002" / "checkpoints" / "last" / "trainer_state.json"
    deadline = time.monotonic() + 300
    while not second.is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the sweep ended before it could be killed"
    assert not (tmp_path / "b" / "k" / "lr0.002" / "summary.json").exists()
    rerun = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert rerun.returncode == 0, rerun.stderr
    assert "[1/2] lr0.001: finished earlier, skipped" in rerun.stdout
    assert "[2/2] lr0.002: resuming" in rerun.stdout
    for combo in ("lr0.001", "lr0.002"):
        a = load_file(str(tmp_path / "a" / "k" / combo / "checkpoints" / "last" / "adapter_model.safetensors"))
        b = load_file(str(tmp_path / "b" / "k" / combo / "checkpoints" / "last" / "adapter_model.safetensors"))
        assert a.keys() == b.keys() and all((a[key] == b[key]).all() for key in a), combo


@pytest.mark.slow
def test_sweep_review_puts_map_beside_the_losses(
    reviewed_export: tuple[str, Path], tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import fiftyone as fo

    name, data = reviewed_export
    args = ["sweep", "--name", "rv", "--root", str(tmp_path), *_common(tiny_model_dir, data)]
    args += ["--grid", "lora.targets=language,all", "--review", "-d", name]
    code, out, err = run(args, capsys)
    assert code == 0, err
    for combo in ("targets_language", "targets_all"):
        assert (tmp_path / "rv" / combo / "review.json").is_file()
        assert fo.load_dataset(name).has_saved_view(f"rv-{combo}-missed")
    header = next(line for line in out.splitlines() if "best val loss" in line)
    assert "mAP" in header and "lora.targets" in header


def test_a_sweep_never_resumes_a_checkpoint_it_did_not_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A planted ``last`` (an old pickled one, or a new-format one without this sweep's run id) stops the sweep
    before anything loads or trains; the pickle never runs."""
    from tests.test_finetune import _live_pickle

    marker = tmp_path / "ran"
    args = ["sweep", "--name", "s", "--root", str(tmp_path), "--set", "model=none", "--set", "data=none"]
    last = tmp_path / "s" / "lr0.001" / "checkpoints" / "last"
    _live_pickle(last / "trainer_state.pt", marker)
    (last / "adapter_model.safetensors").write_bytes(b"")
    code, _, err = run([*args, "--grid", "lr=1e-3,2e-3"], capsys)
    assert code == 1 and "a checkpoint of an older fabricdata" in err and not marker.exists(), err
    (last / "trainer_state.pt").unlink()
    (last / "trainer_state.json").write_text(json.dumps({"format": 2, "run_id": "someone-elses"}))
    (last / "trainer_state.safetensors").write_bytes(b"")
    code, _, err = run([*args, "--grid", "lr=1e-3,2e-3"], capsys)
    flat = " ".join(err.split())
    assert (
        code == 1
        and "not written by this sweep (its run id is 'someone-elses'; this sweep started no run there)" in flat
    ), err
    assert not (tmp_path / "s" / "lr0.002").exists()  # nothing trained
