"""Fine-tune figures: our training loop versus a loop written the way the popular Florence-2 fine-tuning tutorial
does it, and batched prediction versus one image at a time. Same model, data and batch size, in one run; each
variant runs in its own process so peak memory is its own.

    python -m benchmarks.bench_finetune                        # CPU, tiny model (part of `make bench`)
    python -m benchmarks.bench_finetune --size base --device cuda --results benchmarks/RESULTS.md   # gpu.sh

Needs no FiftyOne: the data is written straight from the synthetic generator and the Florence-2 codec.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import Figure, best_rate, render


def write_export(folder: Path, images: int, width: int, height: int) -> Path:
    """A Florence-2 export (train split only) of synthetic fabric, written without FiftyOne."""
    from PIL import Image

    from fabricdata.core.boxes import ImageSize
    from fabricdata.core.florence import encode_objects
    from fabricdata.prepare.synth import SynthConfig
    from fabricdata.prepare.synth import render as render_fabric

    config = SynthConfig(images=images, seed=21, width=width, height=height, clean_share=0.0)
    for split in ("train", "valid", "test"):
        (folder / split).mkdir(parents=True, exist_ok=True)
        (folder / split / "annotations.jsonl").write_text("")
    lines = []
    for index in range(images):
        pixels, objects = render_fabric(config, index)
        name = f"img_{index:04d}.jpg"
        Image.fromarray(pixels).save(folder / "train" / name, quality=90)
        suffix = encode_objects(objects, ImageSize(width, height))
        lines.append(json.dumps({"image": name, "prefix": "<OD>", "suffix": suffix}))
    (folder / "train" / "annotations.jsonl").write_text("\n".join(lines) + "\n")
    return folder


# --- the variants, each run in a child process -----------------------------------------------------------


def _peak(device: str) -> float:
    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def train_ours(model: str, data: str, batch: int, epochs: int, device: str) -> dict[str, float]:
    from finetune.config import load_config
    from finetune.train import train

    out = tempfile.mkdtemp()
    sets = [f"model={model}", f"data={data}", f"out={out}", f"epochs={epochs}", f"batch_size={batch}",
            "num_workers=2", "lr=1e-4", "lora.targets=language+vision"]  # fmt: skip
    summary = train(load_config(None, sets), log=lambda *_: None)
    return {"samples_per_s": summary.samples_per_s, "peak_mib": _peak(device)}


def _plain_decode(path: str | Path) -> Any:
    """How images were decoded before the one decode (issue #21): PIL's ``convert("RGB")``, which clips 16-bit."""
    from PIL import Image

    with Image.open(path) as image:
        return image.convert("RGB")


def train_plain_decode(model: str, data: str, batch: int, epochs: int, device: str) -> dict[str, float]:
    """Our loop with the training records decoded the pre-#21 way: the baseline of the one decode's cost."""
    import finetune.data

    finetune.data.load_image = lambda path, max_pixels=None: _plain_decode(path)  # type: ignore[assignment]
    return train_ours(model, data, batch, epochs, device)


def decode_figures(repeats: int = 30) -> list[Figure]:
    """Decode cost of one 2048x1536 8-bit JPEG: the one decode (for a model and for augment) versus PIL's plain
    convert and OpenCV's imread (what training and augment used before it)."""
    import cv2
    import numpy as np
    from PIL import Image

    from fabricdata.core.images import load_rgb
    from fabricdata.prepare.synth import SynthConfig
    from fabricdata.prepare.synth import render as render_fabric

    path = Path(tempfile.mkdtemp(prefix="bench-decode-")) / "frame.jpg"
    pixels, _ = render_fabric(SynthConfig(images=1, seed=3, width=2048, height=1536), 0)
    Image.fromarray(pixels).save(path, quality=92)

    def rate(decode: Any) -> float:
        def work() -> int:
            for _ in range(repeats):
                decode(path)
            return repeats

        return best_rate(work)

    def opencv(source: Path) -> Any:
        image = cv2.imread(str(source), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

    section = "Decode (one 2048x1536 8-bit JPEG)"
    return [
        Figure(section, "load_rgb (the one decode: training, predict, prelabel, serve)", rate(load_rgb),
               "PIL open + convert('RGB') (the decode before it)", rate(_plain_decode), unit="images/s"),
        Figure(section, "numpy array of load_rgb (augment)", rate(lambda p: np.asarray(load_rgb(p))),
               "cv2.imread + BGR->RGB (augment's decode before it)", rate(opencv), unit="images/s"),
    ]  # fmt: skip


def train_tutorial(model: str, data: str, batch: int, epochs: int, device: str) -> dict[str, float]:
    """The tutorial's way: fp32, processor in the main process, batch moved to the device inside collate,
    no DataLoader workers, labels not masked."""
    import torch
    from peft import LoraConfig, get_peft_model
    from torch.utils.data import DataLoader

    from finetune.config import TARGET_PRESETS
    from finetune.data import load_image, read_records
    from finetune.model import load_base

    base, processor = load_base(model)
    base.to(device)
    records = read_records(Path(data) / "train")
    items = [(r.prefix, r.suffix, r.image) for r in records]

    def collate_fn(batch_items: list[tuple[str, str, Path]]) -> tuple[Any, list[str]]:
        prefixes, answers, paths = zip(*batch_items, strict=True)
        images = [load_image(p) for p in paths]
        inputs = processor(text=list(prefixes), images=images, return_tensors="pt", padding=True).to(device)
        return inputs, list(answers)

    config = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules=TARGET_PRESETS["language+vision"])
    peft_model = get_peft_model(base, config)
    optimizer = torch.optim.AdamW(peft_model.parameters(), lr=1e-4)
    loader = DataLoader(items, batch_size=batch, collate_fn=collate_fn, shuffle=True, num_workers=0)  # type: ignore[arg-type]
    seen, start = 0, time.perf_counter()
    for _ in range(epochs):
        for inputs, answers in loader:
            labels = processor.tokenizer(text=answers, return_tensors="pt", padding=True).input_ids.to(device)
            loss = peft_model(input_ids=inputs["input_ids"], pixel_values=inputs["pixel_values"], labels=labels).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            seen += len(answers)
    if device == "cuda":
        torch.cuda.synchronize()
    return {"samples_per_s": seen / (time.perf_counter() - start), "peak_mib": _peak(device)}


def predict_images(model: str, data: str, batch: int, device: str) -> dict[str, float]:
    import torch

    from finetune.data import load_image
    from finetune.model import load_base
    from finetune.predict import PredictOptions, export_images, generate

    loaded, processor = load_base(model, dtype=torch.bfloat16 if device == "cuda" else None, device=device)
    loaded.eval()
    images = [load_image(ref.path) for ref in export_images(data, "train")]
    options = PredictOptions(batch_size=batch, num_beams=3, max_new_tokens=48)
    generate(loaded, processor, images[:batch], options)  # warm up
    start = time.perf_counter()
    for i in range(0, len(images), batch):
        generate(loaded, processor, images[i : i + batch], options)
    if device == "cuda":
        torch.cuda.synchronize()
    return {"images_per_s": len(images) / (time.perf_counter() - start), "peak_mib": _peak(device)}


def _child(variant: str, model: str, data: str, batch: int, epochs: int, device: str) -> dict[str, float]:
    cmd = [sys.executable, "-m", "benchmarks.bench_finetune", "--worker", variant, "--model", model, "--data", data,
           "--batch", str(batch), "--epochs", str(epochs), "--device", device]  # fmt: skip
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=Path(__file__).parents[1], check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{variant} failed: {done.stderr[-2000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def compare(size: str = "tiny", device: str = "cpu", images: int = 32, batch: int = 8, epochs: int = 3) -> list[Figure]:
    from finetune.tiny import build_tiny_florence

    root = Path(tempfile.mkdtemp(prefix="bench-finetune-"))
    model = str(build_tiny_florence(root / "model", size=size))
    data = str(write_export(root / "export", images, 512 if size == "tiny" else 768, 384 if size == "tiny" else 768))
    ours = _child("train-ours", model, data, batch, epochs, device)
    plain = _child("train-plain-decode", model, data, batch, epochs, device)
    tutorial = _child("train-tutorial", model, data, batch, epochs, device)
    batched = _child("predict", model, data, batch, epochs, device)
    single = _child("predict", model, data, 1, epochs, device)
    where = f"{size} Florence-2 on {device}"
    section = f"Fine-tune ({where})"
    return [
        Figure(section, f"our loop ({images} images, batch {batch}, LoRA language+vision, workers, "
               f"{'bf16' if device == 'cuda' else 'fp32'})", ours["samples_per_s"],
               "tutorial-style loop (fp32, processor in main process, no workers)", tutorial["samples_per_s"],
               unit="samples/s", note="goal on a GPU: >= 2x"),
        Figure(section, "our loop, images by the one decode (load_rgb)", ours["samples_per_s"],
               "our loop, images by PIL's plain convert (before #21)", plain["samples_per_s"], unit="samples/s",
               note="goal: >= 0.95x (the one decode costs training nothing)"),
        Figure(section, "peak memory, our loop", ours["peak_mib"], "peak memory, tutorial-style loop",
               tutorial["peak_mib"], unit="MiB", higher_is_better=False),
        Figure(section, f"prediction, batches of {batch} (beam 3)", batched["images_per_s"],
               "prediction, one image at a time (beam 3)", single["images_per_s"], unit="images/s",
               note="goal on a GPU: >= 5x"),
    ]  # fmt: skip


def run() -> list[Figure]:
    return [*decode_figures(), *compare()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", choices=["train-ours", "train-plain-decode", "train-tutorial", "predict"])
    parser.add_argument("--model")
    parser.add_argument("--data")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", default="tiny", choices=["tiny", "base"])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--results", type=Path, help="append the figures to this Markdown file")
    args = parser.parse_args()
    if args.worker == "train-ours":
        result = train_ours(args.model, args.data, args.batch, args.epochs, args.device)
    elif args.worker == "train-plain-decode":
        result = train_plain_decode(args.model, args.data, args.batch, args.epochs, args.device)
    elif args.worker == "train-tutorial":
        result = train_tutorial(args.model, args.data, args.batch, args.epochs, args.device)
    elif args.worker == "predict":
        result = predict_images(args.model, args.data, args.batch, args.device)
    else:
        figures = compare(args.size, args.device, args.images, args.batch, args.epochs)
        text = render(figures)
        if args.results:
            with args.results.open("a", encoding="utf-8") as handle:
                handle.write("\n" + text.split("\n", 2)[2])  # append without the page title
        print(text)
        return 0
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
