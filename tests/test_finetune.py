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
from tests.helpers import new_name, prediction_records, run

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
