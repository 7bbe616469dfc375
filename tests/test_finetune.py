"""The model side: it learns (overfit 8 images), resumes exactly, runs on two processes, merges, and refuses
LoRA targets that match nothing. All on CPU with the tiny offline Florence-2."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fabricdata.core.boxes import ImageSize, florence_bin_width
from fabricdata.core.florence import parse
from fabricdata.prepare.synth import SynthConfig, generate
from tests.helpers import imported_synth, new_name, prediction_records, run

FAST = ["--set", "num_workers=0", "--set", "batch_size=4"]
OVERFIT = [
    "--set", "epochs=150", "--set", "batch_size=8", "--set", "num_workers=0", "--set", "lr=5e-3",
    "--set", "schedule=cosine", "--set", "warmup_ratio=0.05", "--set", "lora.dropout=0", "--set", "lora.r=32",
    "--set", "lora.alpha=64", "--set", "lora.targets=all",
]  # fmt: skip


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """Two exports of 8 synthetic images each: one to train on, one the model never sees."""
    import fiftyone as fo

    root = tmp_path_factory.mktemp("finetune")
    made = {}
    capsys = _NoCapture()
    for kind, seed in (("seen", 1), ("unseen", 2)):
        name = new_name(kind)
        generate(SynthConfig(images=8, seed=seed, width=256, height=192), root / kind)
        assert run(["import", str(root / kind), "-d", name], capsys)[0] == 0  # type: ignore[arg-type]
        ratios = "1,0,0" if kind == "seen" else "0,0,1"
        assert run(["split", "-d", name, "--ratios", ratios], capsys)[0] == 0  # type: ignore[arg-type]
        args = ["export", "florence", str(root / f"{kind}-export"), "-d", name, "--tasks", "od", "--allow-empty-split"]
        assert run(args, capsys)[0] == 0  # type: ignore[arg-type]
        made[kind] = root / f"{kind}-export"
        fo.delete_dataset(name)
    yield made


class _NoCapture:
    def readouterr(self) -> tuple[str, str]:
        return "", ""


@pytest.mark.slow
def test_lora_overfits_8_images_and_predicts_them_back_with_confidence(
    exports: dict[str, Path], tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "runs" / "overfit"
    args = ["train", "--set", f"model={tiny_model_dir}", "--set", f"data={exports['seen']}", "--set", f"out={out}"]
    code, text, _ = run([*args, *OVERFIT], capsys)
    assert code == 0, text
    for name in ("config.yaml", "metrics.csv", "loss_curve.png", "export_manifest.json"):
        assert (out / name).is_file(), name
    assert (out / "checkpoints" / "best" / "adapter_model.safetensors").is_file()
    assert run(["predict", "--run", str(out), "--split", "train"], capsys)[0] == 0
    seen = prediction_records(out / "predictions.jsonl")
    truth = {
        json.loads(line)["image"]: json.loads(line)["suffix"]
        for line in (exports["seen"] / "train" / "annotations.jsonl").read_text().splitlines()
    }
    size = ImageSize(256, 192)
    bin_w, bin_h = florence_bin_width(size)
    assert len(seen) == 8
    for record in seen:
        expected = sorted((label, box.as_tuple()) for label, box in parse(truth[record["image"]], size))
        got = sorted((d["label"], d["bbox"]) for d in record["detections"])
        assert [g[0] for g in got] == [e[0] for e in expected], record
        for (_, g), (_, e) in zip(got, expected, strict=True):  # every box within one bin
            limits = (bin_w, bin_h, bin_w, bin_h)
            assert all(abs(a - b) <= lim for a, b, lim in zip(g, e, limits, strict=True))
        assert record["filepath"] and Path(record["filepath"]).name == record["image"]
    other = tmp_path / "runs" / "unseen"
    args = ["predict", "--run", str(other), "--model", str(out), "--data", str(exports["unseen"]), "--split", "test"]
    assert run(args, capsys)[0] == 0
    unseen = prediction_records(other / "predictions.jsonl")
    seen_conf = [d["confidence"] for r in seen for d in r["detections"]]
    unseen_conf = [d["confidence"] for r in unseen for d in r["detections"]]
    assert sum(seen_conf) / len(seen_conf) > 0.95
    assert not unseen_conf or sum(seen_conf) / len(seen_conf) > sum(unseen_conf) / len(unseen_conf)


@pytest.mark.slow
def test_resumed_run_ends_with_the_same_adapter(
    exports: dict[str, Path], tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from safetensors.torch import load_file

    common = ["--set", f"model={tiny_model_dir}", "--set", f"data={exports['seen']}", "--set", "epochs=3",
              "--set", "lr=1e-3", "--set", "lora.dropout=0.1", *FAST]  # fmt: skip
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    assert run(["train", *common, "--set", f"out={straight}"], capsys)[0] == 0
    code, text, _ = run(["train", *common, "--set", f"out={broken}", "--set", "stop_after_steps=3"], capsys)
    assert code == 0 and "stopped early" in text
    code, text, _ = run(["train", *common, "--set", f"out={broken}", "--resume"], capsys)
    assert code == 0 and "6 steps" in text
    a = load_file(str(straight / "checkpoints" / "last" / "adapter_model.safetensors"))
    b = load_file(str(broken / "checkpoints" / "last" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and len(a) > 10
    assert all((a[k] == b[k]).all() for k in a), "resumed adapter differs from the uninterrupted one"
    steps = [row.split(",")[0] for row in (broken / "metrics.csv").read_text().splitlines()[1:] if ",train," in row]
    assert steps == ["1", "2", "3", "4", "5", "6"]


@pytest.mark.slow
def test_two_cpu_processes_agree(exports: dict[str, Path], tiny_model_dir: Path, tmp_path: Path) -> None:
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1", "FABRICDATA_DEBUG": "1"}
    torchrun = Path(sys.executable).parent / "torchrun"
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "finetune.train",
           "--set", f"model={tiny_model_dir}", "--set", f"data={exports['seen']}", "--set", f"out={tmp_path / 'ddp'}",
           "--set", "epochs=2", "--set", "num_workers=0", "--set", "batch_size=2", "--set", "lr=1e-3"]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=Path(__file__).parents[1])
    assert done.returncode == 0, done.stderr[-3000:]
    # the two processes print concurrently, so lines can interleave: search the whole output
    checksums = re.findall(r"rank (\d)/(\d): adapter checksum ([-+]?\d\.\d+e[-+]\d+)", done.stdout)
    assert sorted((rank, world) for rank, world, _ in checksums) == [("0", "2"), ("1", "2")], done.stdout
    assert len({value for _, _, value in checksums}) == 1, checksums  # identical adapters
    # 8 records over 2 ranks with batch 2: 2 steps per epoch, not 4 (each rank trains on its half)
    assert "4 optimizer steps" in done.stdout


@pytest.mark.slow
def test_merged_model_loads_standalone_and_predicts_like_the_adapter(
    exports: dict[str, Path], tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from finetune.data import load_image
    from finetune.model import load_for_inference
    from finetune.predict import PredictOptions, generate

    out = tmp_path / "run"
    args = ["train", "--set", f"model={tiny_model_dir}", "--set", f"data={exports['seen']}", "--set", f"out={out}"]
    assert run([*args, "--set", "epochs=2", "--set", "lr=1e-2", *FAST], capsys)[0] == 0
    merged = tmp_path / "merged"
    assert run(["export-model", str(merged), "--run", str(out)], capsys)[0] == 0
    model = AutoModelForImageTextToText.from_pretrained(merged, local_files_only=True).eval()
    processor = AutoProcessor.from_pretrained(merged, local_files_only=True)
    adapter_model, adapter_processor = load_for_inference(out)
    image = load_image(next((exports["seen"] / "train").glob("*.jpg")))
    options = PredictOptions(max_new_tokens=40, num_beams=1)
    assert (
        generate(model, processor, [image], options)[0]["text"]
        == generate(adapter_model, adapter_processor, [image], options)[0]["text"]
    )


def test_zero_shot_base_modelprediction_records(
    exports: dict[str, Path], tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "runs" / "base"
    args = ["predict", "--run", str(folder), "--model", str(tiny_model_dir), "--data", str(exports["unseen"])]
    code, text, _ = run([*args, "--split", "test", "--max-new-tokens", "20"], capsys)
    assert code == 0 and "8 predictions" in text
    assert len(prediction_records(folder / "predictions.jsonl")) == 8


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("lora.targets=[o_proj, linear]", "o_proj, linear match no module"),
        ("lora.targets=Conv2d", "matches no module path"),
        ("lora.rank=4", "lora.rank: Extra inputs are not permitted"),
        ("epochs=zero", "epochs: Input should be a valid integer"),
    ],
)
def test_bad_configs_stop_before_training(
    override: str, fragment: str, exports: dict[str, Path], tiny_model_dir: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    args = ["train", "--set", f"model={tiny_model_dir}", "--set", f"data={exports['seen']}", "--set", f"out={tmp_path}"]
    code, _, err = run([*args, "--set", override], capsys)
    assert code == 1 and fragment in err, err
    assert not (tmp_path / "checkpoints").exists()


def test_collation_in_worker_processes(
    exports: dict[str, Path], tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "workers"
    args = ["train", "--set", f"model={tiny_model_dir}", "--set", f"data={exports['seen']}", "--set", f"out={out}"]
    code, text, _ = run([*args, "--set", "epochs=1", "--set", "num_workers=2", "--set", "batch_size=4"], capsys)
    assert code == 0 and "2 steps" in text
    rows = (out / "metrics.csv").read_text().splitlines()
    assert rows[0] == "step,epoch,split,loss,lr,samples_per_s" and len(rows) == 3


def test_the_model_side_never_imports_fiftyone() -> None:
    """finetune runs on a GPU box with only torch/transformers/peft/accelerate/pillow."""
    code = (
        "import sys; import finetune.train, finetune.predict, finetune.model, finetune.tiny, finetune.data; "
        "print('fiftyone' in sys.modules, 'albumentations' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]


@pytest.mark.slow
def test_training_killed_between_checkpoint_renames_resumes_to_the_same_adapter(
    exports: dict[str, Path], tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """SIGKILL while the 2nd ``last`` checkpoint is swapped in (old one renamed away, new one not yet in place):
    --resume finds the complete new one and ends exactly where an uninterrupted run ends."""
    from safetensors.torch import load_file

    from tests.test_guarantees import kill_at

    common = ["--set", f"model={tiny_model_dir}", "--set", f"data={exports['seen']}", "--set", "epochs=3",
              "--set", "lr=1e-3", *FAST]  # fmt: skip
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert run(["train", *common, "--set", f"out={straight}"], capsys)[0] == 0
    kill_at("train.checkpoint:2", ["train", *common, "--set", f"out={killed}"], tmp_path)
    assert not (killed / "checkpoints" / "last").exists()  # killed exactly between the two renames
    code, text, _ = run(["train", *common, "--set", f"out={killed}", "--resume"], capsys)
    assert code == 0, text
    a = load_file(str(straight / "checkpoints" / "last" / "adapter_model.safetensors"))
    b = load_file(str(killed / "checkpoints" / "last" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    assert not [p.name for p in (killed / "checkpoints").iterdir() if p.suffix in (".tmp", ".old")]


@pytest.mark.parametrize(
    ("suffix", "problem"),
    [
        # maestro rounds a box at the right or bottom edge to <loc_1000>, a token Florence-2 does not have
        (
            "drop<loc_10><loc_20><loc_1000><loc_40>",
            "not one of the location tokens <loc_0>..<loc_999> (got '<loc_1000>')",
        ),
        ("drop<loc_10><loc_20><loc_30>", "a label needs boxes of 4 location tokens each (got 3) (got 'drop')"),
        ("<loc_10><loc_20><loc_30><loc_40>", "a location token without a label before it (got '<loc_10>')"),
        ("drop<loc_10><loc_20><loc_30><loc_40></s>", "not a location token"),
    ],
)
def test_records_off_the_florence_grammar_stop_training_before_it_starts(
    suffix: str, problem: str, exports: dict[str, Path], tiny_model_dir: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    import shutil

    data = tmp_path / "maestro"
    shutil.copytree(exports["seen"], data)
    annotations = data / "train" / "annotations.jsonl"
    lines = annotations.read_text().splitlines()
    lines[1] = json.dumps({**json.loads(lines[1]), "suffix": suffix})
    annotations.write_text("\n".join(lines) + "\n")
    out = tmp_path / "run"
    args = ["train", "--set", f"model={tiny_model_dir}", "--set", f"data={data}", "--set", f"out={out}", *FAST]
    code, _, err = run(args, capsys)
    assert code == 1 and f"{annotations}: line 2 suffix: {problem}" in " ".join(err.split()), err
    assert not out.exists()  # nothing trained, no run folder


# --- nothing executable in what a run folder holds (#28) -------------------------------------------------------


class Payload:
    """Pickled, it calls ``Path.write_text(marker, "ran")`` when unpickled: code from data."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (Path.write_text, (self.marker, "ran"))


def _live_pickle(path: Path, marker: Path) -> None:
    """A pickle whose loading runs code, shown live: ``torch.load(weights_only=False)`` (the old loader) runs it."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    pickled = path.with_name("payload.pt")  # torch.load reads a *.safetensors name as safetensors
    torch.save({"progress": Payload(marker)}, pickled)
    torch.load(pickled, weights_only=False)
    assert marker.read_text() == "ran"
    marker.unlink()
    pickled.rename(path)


def test_pickled_payloads_in_run_and_model_folders_never_run(
    exports: dict[str, Path], tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    marker = tmp_path / "ran"
    common = ["--set", f"model={tiny_model_dir}", "--set", f"data={exports['seen']}", *FAST]
    # an old checkpoint (trainer state pickled): refused, never opened
    old = tmp_path / "old-run"
    last = old / "checkpoints" / "last"
    _live_pickle(last / "trainer_state.pt", marker)
    (last / "adapter_model.safetensors").write_bytes(b"")
    code, _, err = run(["train", *common, "--set", f"out={old}", "--resume"], capsys)
    assert code == 1 and "a checkpoint of an older fabricdata (trainer_state.pt is a pickle" in err, err
    # a pickle where the safetensors trainer state belongs: not unpickled either
    forged = tmp_path / "forged-run"
    last = forged / "checkpoints" / "last"
    _live_pickle(last / "trainer_state.safetensors", marker)
    (last / "trainer_state.json").write_text(json.dumps({"format": 2, "optimizer": {"__tensor__": "x"}}))
    (last / "adapter_model.safetensors").write_bytes(b"")
    code, _, err = run(["train", *common, "--set", f"out={forged}", "--set", "epochs=1", "--resume"], capsys)
    assert code == 1 and "unreadable trainer state" in " ".join(err.split()), err
    # a run whose adapter is pickled (adapter_model.bin): predict refuses it
    adapter = tmp_path / "bin-run" / "checkpoints" / "best"
    _live_pickle(adapter / "adapter_model.bin", marker)
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(tiny_model_dir)}))
    (tmp_path / "bin-run" / "config.yaml").write_text(f"data: {exports['seen']}\n")
    code, _, err = run(["predict", "--run", str(tmp_path / "bin-run"), "--split", "train"], capsys)
    assert code == 1 and "no adapter_model.safetensors (pickled adapter weights are never loaded)" in err, err
    # a model folder whose weights are a pickle (pytorch_model.bin): transformers is told safetensors only
    model = tmp_path / "pickled-model"
    shutil.copytree(tiny_model_dir, model)
    (model / "model.safetensors").unlink()
    _live_pickle(model / "pytorch_model.bin", marker)
    args = ["predict", "--run", str(tmp_path / "p"), "--model", str(model), "--data", str(exports["seen"])]
    code, _, err = run([*args, "--split", "train"], capsys)
    assert code == 1 and "cannot be loaded: Error no file named model.safetensors" in err, err
    assert not marker.exists()  # no payload ran


def test_checkpoint_state_round_trips_exactly_without_pickle(tmp_path: Path) -> None:
    """Optimizer, scheduler and every RNG state come back equal from JSON + safetensors."""
    import random

    import numpy as np
    import torch

    from finetune import checkpoint

    weights = torch.nn.Parameter(torch.randn(3, 2))
    optimizer = torch.optim.AdamW([weights], lr=1e-3, betas=(0.8, 0.99))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 / (step + 1))
    for _ in range(3):
        weights.grad = torch.randn(3, 2)
        optimizer.step()
        scheduler.step()
    state = checkpoint._trainer_state(checkpoint.Progress(1, 2, 3, 0.5), optimizer, scheduler, "abc")
    checkpoint._write_state(tmp_path, state)
    back = checkpoint.read_state(tmp_path)
    assert back["run_id"] == "abc" and back["progress"] == {"epoch": 1, "batches_done": 2, "global_step": 3,
                                                           "best_val": 0.5}  # fmt: skip
    assert back["scheduler"] == scheduler.state_dict()
    assert back["optimizer"]["param_groups"] == optimizer.state_dict()["param_groups"]
    for key, value in optimizer.state_dict()["state"][0].items():
        assert torch.equal(back["optimizer"]["state"][0][key], value), key
    assert torch.equal(back["rng"]["torch"], torch.get_rng_state())
    numpy_state = np.random.get_state()
    assert back["rng"]["numpy"][0] == numpy_state[0] and back["rng"]["numpy"][2:] == numpy_state[2:]
    assert np.array_equal(back["rng"]["numpy"][1], numpy_state[1]) and back["rng"]["numpy"][1].dtype == np.uint32
    assert back["rng"]["python"] == random.getstate()
    assert not list(tmp_path.glob("*.pt"))


# --- training when the world fails under it (#28) ---------------------------------------------------------------


def test_an_export_swapped_in_under_a_dataset_is_never_read(exports: dict[str, Path], tmp_path: Path) -> None:
    """The pinned export: images are read from the folder training started on or not at all."""
    import shutil

    from fabricdata.core.fileio import new_stage, swap_in
    from finetune.data import ExportPin, ExportReplacedError, RecordDataset, read_records

    export = tmp_path / "export"
    shutil.copytree(exports["seen"], export)
    dataset = RecordDataset(read_records(export / "train"), ExportPin.of(export))
    assert dataset[0][0].size == (256, 192)
    stage = new_stage(export)
    shutil.copytree(exports["unseen"], stage, dirs_exist_ok=True)  # what 'export florence' does: a new folder
    swap_in(stage, export)
    with pytest.raises(ExportReplacedError, match="the export was replaced while training read it"):
        dataset[1]


def test_a_loss_that_is_not_finite_stops_training_naming_the_step(
    exports: dict[str, Path], tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """lr=1e30 makes the first step's update overflow the model: step 2's loss is NaN. Training stops there, exit
    1, and checkpoints/last stays the one of step 1."""
    out = tmp_path / "nan"
    args = ["train", "--set", f"model={tiny_model_dir}", "--set", f"data={exports['seen']}", "--set", f"out={out}"]
    code, _, err = run([*args, *FAST, "--set", "lr=1e30", "--set", "save_every_steps=1", "--set", "epochs=2"], capsys)
    flat = " ".join(err.split())
    assert code == 1 and f"{out}: step 2 (epoch 1): the training loss is nan (not finite)" in flat, err
    assert "checkpoints/last of step 1 is kept" in flat
    state = json.loads((out / "checkpoints" / "last" / "trainer_state.json").read_text())
    assert state["progress"]["global_step"] == 1
    assert not (out / "summary.json").exists()  # not "done"


@pytest.mark.slow
def test_an_export_replaced_during_training_stops_it_and_resume_refuses_the_new_one(
    tiny_model_dir: Path, tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """'export florence' to the folder a run trains on (DataLoader workers reading it): one clear line, exit 1,
    nothing of the new export trained on; --resume then refuses the changed export."""
    from fabricdata.core.errors import FabricDataError
    from finetune.config import load_config
    from finetune.train import train

    imported_synth(tmp_path / "fabric", name, capsys, images=8, seed=2)
    assert run(["split", "-d", name, "--ratios", "1,0,0"], capsys)[0] == 0
    export = tmp_path / "export"
    export_args = ["export", "florence", str(export), "-d", name, "--allow-empty-split"]
    assert run([*export_args, "--tasks", "od"], capsys)[0] == 0
    out = tmp_path / "run"
    sets = [f"model={tiny_model_dir}", f"data={export}", f"out={out}", "num_workers=2", "batch_size=1",
            "epochs=2", "save_every_steps=1"]  # fmt: skip

    def re_export(done: int, total: int) -> None:
        if done == 2:  # mid-epoch: the users' other terminal exports again
            assert run([*export_args, "--tasks", "od,dense"], capsys)[0] == 0

    with pytest.raises(FabricDataError) as raised:
        train(load_config(None, sets), log=lambda *_: None, on_step=re_export)
    assert str(raised.value) == (
        f"{export}: the export was replaced while training read it (a new 'export florence'?); stopped before any "
        "of the new export was trained on. Train a new run on the new export"
    )
    code, _, err = run(["train", *(f"--set={item}" for item in sets), "--resume"], capsys)
    assert code == 1 and "the export changed since this run started" in err, err


@pytest.mark.slow
def test_a_file_size_limit_is_a_clear_error_not_a_hang(
    exports: dict[str, Path], tiny_model_dir: Path, tmp_path: Path
) -> None:
    """RLIMIT_FSIZE (ulimit -f) of 300 kB in a child process with DataLoader workers: a batch that cannot be handed
    over is refused before training; a checkpoint too large to write is one line naming it and the OS error, and
    leaves nothing partial. Neither hangs."""
    script = (
        "import resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000)); "
        "from fabricdata.cli.main import main; main(sys.argv[1:])"
    )
    common = ["train", "--set", f"model={tiny_model_dir}", "--set", f"data={exports['seen']}", "--set", "epochs=1",
              "--set", "num_workers=2"]  # fmt: skip
    outcomes = []
    for batch in (4, 1):  # 4 x 3 x 128 x 128 float32 = 786 kB per batch; 1: 197 kB, but a 512 kB trainer state
        out = tmp_path / f"b{batch}"
        cmd = [sys.executable, "-c", script, *common, "--set", f"batch_size={batch}", "--set", f"out={out}"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=400, cwd=Path(__file__).parents[1])
        outcomes.append((done.returncode, " ".join(done.stderr.split())))
        assert not list(out.glob("checkpoints/*.tmp"))
    assert (
        outcomes[0][0] == 1
        and "/dev/shm: DataLoader workers hand each batch over in shared-memory files of up "
        "to 786432 bytes, more than this process's file size limit (ulimit -f: 300000 bytes)"
        in outcomes[0][1]
    )
    last = tmp_path / "b1" / "checkpoints" / "last"
    assert outcomes[1][0] == 1 and f"{last}: checkpoint not saved (File too large [EFBIG])" in outcomes[1][1]
