"""`fabricdata demo`: the whole loop on the built-in synthetic fabric dataset."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from fabricdata.cli.common import (
    app,
    console,
    error_table,
    tracked,
    workers_default,
)
from fabricdata.cli.model import predict, review_, train
from fabricdata.cli.prepare import augment, balance, export_florence_, split, validate
from fabricdata.cli.store import show_import_report, show_stats
from fabricdata.core.florence import MAX_TEXT_TOKENS


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Working folder of the demo.")] = Path("demo"),
    images: Annotated[int, typer.Option(min=8, help="Synthetic images to generate.")] = 120,
    seed: Annotated[int, typer.Option(help="Seed of the whole demo.")] = 0,
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Dataset the demo (re)creates.")] = "fabric-demo",
) -> None:
    """Run the loop end to end on the built-in synthetic fabric dataset.

    Generates synthetic fabric as a LabelImg folder, imports it into a FiftyOne dataset (recreated on every
    run) and prints its statistics.

    Example:

      fabricdata demo --out demo --images 120
    """
    console.rule("1. synthetic fabric (LabelImg folder)")
    data = _synthesize(out, images, seed)
    console.rule(f"2. import into the FiftyOne dataset {dataset!r}")
    _import(data, dataset, images)
    console.rule("3. leak-free split, flipped copies, class balance, validation")
    _prepare(dataset, seed)
    console.rule("4. Florence-2 JSONL export")
    from finetune.predict import PHRASES_FILE

    export_florence_(
        out=out / "export",
        dataset=dataset,
        view=None,
        tasks="od,dense,grounding",
        order="sequential",
        phrases=PHRASES_FILE,
        negatives=True,
        seed=seed,
        max_label_tokens=MAX_TEXT_TOKENS,
    )
    console.rule("5. fine-tune the tiny offline Florence-2 (LoRA) and predict the test split")
    tiny, run = _fine_tune(out, seed)
    console.rule("6. review: zero-shot baseline (run 0), then the fine-tune against it")
    base = out / "runs" / "base"
    predict(
        run=str(base), model=str(tiny), data=out / "export", split="test", batch_size=8, num_beams=3, max_new_tokens=128
    )
    review_(run=str(base), dataset=dataset, compare=None, iou=0.5)
    review_(run=str(run), dataset=dataset, compare=str(base), iou=0.5)
    console.print(
        f"[green]demo done.[/] Open a view: fabricdata app --dataset {dataset} --view demo-missed  "
        "(fix labels in the Annotate tab, then: fabricdata writeback)"
    )


def _synthesize(out: Path, images: int, seed: int) -> Path:
    from fabricdata.prepare.synth import SynthConfig, contact_sheet, generate

    config = SynthConfig(images=images, seed=seed, width=768, height=576)
    data = out / "labelimg"
    with tracked("synth", images) as advance:
        generate(config, data, workers=max(1, os.cpu_count() or 1), progress=advance)
    contact_sheet(data, out / "contact_sheet.png")
    console.print(f"LabelImg folder {data}, contact sheet {out / 'contact_sheet.png'}")
    return data


def _import(data: Path, dataset: str, images: int) -> None:
    """A fresh dataset of the folder (recreated on every run), and its statistics."""
    from fabricdata.prepare.stats import dataset_stats
    from fabricdata.store.dataset import dataset_exists, fiftyone
    from fabricdata.store.importer import import_folder

    if dataset_exists(dataset):
        fiftyone().delete_dataset(dataset)
    with tracked("import", images) as advance:
        report = import_folder(data, dataset, progress=advance)
    show_import_report(report, dataset)
    if report.errors:
        error_table("synthetic files not imported", report.errors)
        raise typer.Exit(1)
    show_stats(dataset_stats(dataset))


def _prepare(dataset: str, seed: int) -> None:
    split(dataset=dataset, ratios="0.7,0.15,0.15", seed=seed, reshuffle=False)
    augment(recipe="flip", dataset=dataset, copies=1, seed=seed, split="train", workers=workers_default())
    balance(
        dataset=dataset,
        target=None,
        ratio=1.0,
        recipe="fabric-default",
        split="train",
        seed=seed,
        workers=workers_default(),
        max_copies=20,
    )
    validate(dataset=dataset, json_out=False, strict=True, min_instances=10, imbalance=10.0)


def _fine_tune(out: Path, seed: int) -> tuple[Path, Path]:
    """The tiny offline Florence-2, fine-tuned on the export, and its predictions of the test split."""
    from finetune.tiny import build_tiny_florence

    tiny = build_tiny_florence(out / "models" / "tiny", seed=seed)
    run = out / "runs" / "demo"
    sets = [
        f"model={tiny}",
        f"data={out / 'export'}",
        f"out={run}",
        "epochs=3",
        "lr=5e-3",
        "batch_size=8",
        "schedule=cosine",
        "lora.r=32",
        "lora.alpha=64",
        "lora.targets=all",
        f"seed={seed}",
    ]
    train(config=None, set_=sets, resume=False)
    predict(run=str(run), model=None, data=None, split="test", batch_size=8, num_beams=3, max_new_tokens=128)
    return tiny, run
