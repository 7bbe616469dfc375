"""Commands of the model side: tiny-model, train, predict, export-model, review."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from fabricdata.cli.common import (
    DatasetOption,
    OverlapOption,
    TileAndFullOption,
    TileOption,
    app,
    classes_option,
    console,
    counted,
    err_console,
    progress_bar,
    run_dir,
    tiling_choice,
)
from fabricdata.core.errors import ConfigError
from fabricdata.core.wording import plural


@app.command("tiny-model")
def tiny_model(
    out: Annotated[Path, typer.Argument(help="Folder to save the tiny model and processor to.")],
    classes: Annotated[str | None, typer.Option(help="Class names the tokenizer should know well.")] = None,
    image_size: Annotated[int, typer.Option(help="Square input resolution of the tiny model.")] = 128,
    seed: Annotated[int, typer.Option(help="Seed of the random weights.")] = 0,
) -> None:
    """Build a tiny random Florence-2 offline (real architecture and processor, ~0.5 M parameters).

    Tests and the demo use it where real weights cannot be downloaded; it loads through the same path as
    florence-community/Florence-2-base.

    Example:

      fabricdata tiny-model models/tiny
    """
    from finetune.tiny import build_tiny_florence

    path = build_tiny_florence(out, classes=classes_option(classes), image_size=image_size, seed=seed)
    console.print(f"tiny Florence-2 saved to [bold]{path}[/]")


def _train_epilog() -> str:
    from finetune.config import defaults_table

    rows = "\n\n".join(f"  {key} = {default}: {help_}" for key, default, help_ in defaults_table())
    return "Config keys and defaults (the seed project's findings):\n\n" + rows


@app.command(epilog=_train_epilog())
def train(
    config: Annotated[
        Path | None, typer.Argument(help="YAML config (optional when --set gives model, data, out).")
    ] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a key: --set lora.r=16 (repeatable).")
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue from the run's checkpoints/last.")] = False,
) -> None:
    """Fine-tune Florence-2 with LoRA/DoRA on a Florence-2 export (one process; several: accelerate launch).

    Writes the run folder: config.yaml, checkpoints/last and checkpoints/best (adapter + processor + config),
    metrics.csv and loss_curve.png. For several GPUs or nodes: accelerate launch -m finetune.train CONFIG.

    Examples:

      fabricdata train --set model=models/tiny --set data=exports/v1 --set out=runs/r1 --set epochs=3

      fabricdata train configs/base.yaml --set lora.use_dora=true --set lr=2e-5

      fabricdata train configs/base.yaml --resume
    """
    from finetune.config import load_config
    from finetune.train import train as run_train

    with progress_bar() as bar:
        task = bar.add_task("train", total=None)
        summary = run_train(
            load_config(config, set_ or ()),
            resume=resume,
            log=bar.console.print,
            on_step=lambda done, total: bar.update(task, completed=done, total=total),
        )
    state = "stopped early (continue with --resume)" if summary.stopped_early else "done"
    val = f", best val loss {summary.best_val_loss:.4f}" if summary.best_val_loss is not None else ""
    console.print(
        f"[green]{state}:[/] {summary.global_step} steps, {summary.epochs_done} epoch(s), "
        f"train loss {summary.train_loss:.4f}{val}, {summary.samples_per_s:.1f} samples/s -> {summary.out}"
    )


@app.command()
def predict(
    run: Annotated[str, typer.Option(help="Run name (runs/NAME) or folder; predictions.jsonl is written there.")],
    model: Annotated[
        str | None,
        typer.Option(
            help="Predict with this model instead of the run's adapter: a merged "
            "model folder or a base model (the zero-shot baseline)."
        ),
    ] = None,
    data: Annotated[Path | None, typer.Option(help="Export folder (default: the run's training data).")] = None,
    split: Annotated[str, typer.Option(help="Split folder of the export: train, valid or test.")] = "test",
    images: Annotated[
        Path | None, typer.Option(help="Predict every image below this folder (any depth) instead of an export split.")
    ] = None,
    task: Annotated[str, typer.Option(help="od, dense (region captions), grounding or caption.")] = "od",
    phrase: Annotated[
        list[str] | None,
        typer.Option(help="Grounding: the phrase to find (repeatable). Default: every class phrase of the export."),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Generations per generate call.")] = 8,
    num_beams: Annotated[int, typer.Option(min=1, help="Beam width.")] = 3,
    max_new_tokens: Annotated[int | None, typer.Option(help="Default: the export's label budget.")] = None,
    tile: TileOption = None,
    overlap: OverlapOption = None,
    tile_and_full: TileAndFullOption = False,
) -> None:
    """Batched prediction with a real confidence per box; writes runs/NAME/predictions.jsonl.

    Every box task (od, dense, grounding) gives each box the same confidence: the geometric mean probability of
    its tokens. Grounding boxes are labelled with the class their phrase stands for (or the phrase given).
    Runs in bf16 on a CUDA GPU, float32 on the CPU.

    A run trained on a tiled export predicts tile by tile (--tile to choose another tiling, --tile none for whole
    frames): every frame is sliced as the export was, the tiles batched through the model, their boxes mapped
    back, boxes cut by tile borders joined and duplicates merged; one record per whole frame, which 'fabricdata
    review' evaluates against the frame's boxes.

    Examples:

      fabricdata predict --run r1

      fabricdata predict --run r1 --images incoming/2026-11-28

      fabricdata predict --run r1 --images incoming --task grounding --phrase "broken weft"

      fabricdata predict --run r1 --images incoming --task caption

      fabricdata predict --run base --model florence-community/Florence-2-base --data exports/v1

      fabricdata predict --run strips --tile 256 --overlap 0.25 --tile-and-full
    """
    from finetune.predict import PredictOptions, predict_run, predict_task

    tiling = tiling_choice(tile, overlap, tile_and_full)
    options = PredictOptions(
        batch_size=batch_size,
        num_beams=num_beams,
        max_new_tokens=max_new_tokens,
        task=predict_task(task),
        tile_and_full=tile_and_full,
    )
    with counted("predict") as bar:
        done = predict_run(
            run_dir(run, must_exist=model is None),
            data,
            split,
            model,
            options,
            progress=bar.advance,
            on_total=bar.total,
            images_dir=images,
            phrases=phrase or (),
            tiling=tiling,
        )
    for line in done.unreadable:
        err_console.print(f"[red]error:[/] {line}", highlight=False, soft_wrap=True)
    sliced = f", sliced {done.tiling.describe()}" if done.tiling is not None else ""
    console.print(
        f"{plural(done.records, 'prediction')} ({options.task}{sliced}) of {model or run} on "
        f"{plural(done.images - len(done.unreadable), 'image')} of {done.source} -> {done.target}",
        highlight=False,
        soft_wrap=True,
    )
    if done.unreadable:
        raise typer.Exit(1)


@app.command()
def prelabel(
    folder: Annotated[Path, typer.Argument(help="Folder of new photos (any depth).")],
    run: Annotated[str, typer.Option(help="Run name (runs/NAME) or folder whose model drafts the boxes.")],
    dataset: DatasetOption = "fabric",
    model: Annotated[
        str | None, typer.Option(help="Draft with this model (merged or base) instead of the run's adapter.")
    ] = None,
    min_confidence: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Boxes below this confidence are not drafted.")
    ] = 0.25,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per generate call.")] = 8,
    max_new_tokens: Annotated[int | None, typer.Option(help="Default: the run's label budget.")] = None,
    tile: TileOption = None,
    overlap: OverlapOption = None,
    tile_and_full: TileAndFullOption = False,
) -> None:
    """Import new, unlabeled photos with the model's boxes as drafts for the annotators to verify.

    Every image of FOLDER that the dataset does not hold and that has no label file is added, tagged
    'prelabeled', with the model's boxes (proposal=True, with their confidences) in ground_truth. The saved view
    RUN-to-verify lists them most uncertain first. Fix the boxes in the App, tag the sample 'verified', then
    'fabricdata writeback' writes its label file. Until verified, drafts stay out of stats, split, augment,
    validate and export. Running it again adds only new images and never touches an edit. A run trained on a
    tiled export drafts tile by tile and merges the boxes onto each whole photo (as 'fabricdata predict' does).

    Examples:

      fabricdata prelabel incoming/2026-11-28 --run r1

      fabricdata prelabel incoming/line-scan --run strips --tile 256 --overlap 0.2

      fabricdata app --view r1-to-verify

      fabricdata writeback
    """
    from fabricdata.assist.prelabel import prelabel as run_prelabel

    folder_run = run_dir(run, must_exist=model is None)
    with counted("prelabel") as bar:
        report = run_prelabel(
            folder,
            dataset,
            folder_run,
            model=model,
            min_confidence=min_confidence,
            batch_size=batch_size,
            progress=bar.advance,
            on_total=bar.total,
            max_new_tokens=max_new_tokens,
            tiling=tiling_choice(tile, overlap, tile_and_full),
            tile_and_full=tile_and_full,
        )
    for line in report.unreadable:
        err_console.print(f"[red]error:[/] {line}", highlight=False, soft_wrap=True)
    parts = [f"{plural(report.added, 'image')} prelabeled with {plural(report.boxes, 'draft box', 'draft boxes')}"]
    if report.known:
        parts.append(f"{report.known} already in {dataset!r}")
    if report.labeled:
        parts.append(f"{report.labeled} with a label file (use 'fabricdata import')")
    console.print(", ".join(parts), highlight=False, soft_wrap=True)
    if report.below_confidence:
        console.print(
            f"{plural(report.below_confidence, 'box', 'boxes')} below confidence {min_confidence:g} not drafted"
        )
    for label, count in sorted(report.other_labels.items()):
        console.print(
            f"[yellow]{plural(count, 'box', 'boxes')} labelled {label!r}[/], not a class of {dataset!r}: not drafted",
            highlight=False,
            soft_wrap=True,
        )
    console.print("verify them in the App, most uncertain first:")
    console.print(f"  fabricdata app --dataset {dataset} --view {report.view}", highlight=False, soft_wrap=True)
    if report.unreadable:
        raise typer.Exit(1)


@app.command()
def serve(
    run: Annotated[str | None, typer.Option(help="Run name (runs/NAME) or folder whose adapter to serve.")] = None,
    model: Annotated[str | None, typer.Option(help="A merged model folder or a base model, instead of a run.")] = None,
    images: Annotated[Path | None, typer.Option(help="A folder whose images the page offers to pick from.")] = None,
    host: Annotated[
        str,
        typer.Option(
            help="Address to listen on. 0.0.0.0: every machine that can reach this one may use the page and upload "
            "to it; only on a trusted network."
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port of the page.")] = 7860,
    batch_size: Annotated[int, typer.Option(min=1, help="Generations per generate call.")] = 8,
    num_beams: Annotated[int, typer.Option(min=1, help="Beam width.")] = 3,
    max_new_tokens: Annotated[int | None, typer.Option(help="Default: the run's label budget.")] = None,
    tile: TileOption = None,
    overlap: OverlapOption = None,
    tile_and_full: TileAndFullOption = False,
    max_pixels: Annotated[
        int, typer.Option(min=1, help="Images with more pixels are refused (checked before decoding).")
    ] = 64_000_000,
    max_upload_mb: Annotated[int, typer.Option(min=1, help="Larger uploads are refused.")] = 64,
) -> None:
    """Serve the model in a web page: upload photos, pick a task, see the defects boxed with their confidences.

    Tasks: od (defects), dense (region captions), grounding (type a phrase such as 'broken weft'; without one,
    every class phrase of the run's export) and caption. The confidence slider filters boxes without running
    the model again. The model is loaded once, in bf16 on a CUDA GPU. A run trained on a tiled export finds the
    boxes tile by tile, merged onto each whole photo (--tile to choose another tiling, --tile none). Uploads stay
    in a folder only you can read; on 127.0.0.1 the page answers only requests addressed to localhost or 127.0.0.1.

    Examples:

      fabricdata serve --run r1

      fabricdata serve --run r1 --images incoming --port 8080

      fabricdata serve --run strips --tile-and-full

      fabricdata serve --model models/fabric-r1
    """
    import os

    from fabricdata.assist.serve import allowed_hosts
    from fabricdata.assist.serve import serve as run_server
    from finetune.predict import label_budget, run_export, run_phrases
    from finetune.tiles import chosen_tiling

    if (run is None) == (model is None):
        raise ConfigError("give exactly one of --run and --model")
    folder = run_dir(run) if run is not None else None
    data = run_export(folder)
    max_new_tokens = max_new_tokens or label_budget(data)
    tiling = chosen_tiling(tiling_choice(tile, overlap, tile_and_full), folder, data, tile_and_full)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    source = str(folder) if folder is not None else str(model)
    if allowed_hosts(host) == ["*"]:
        err_console.print(f"[yellow]warning:[/] the page on {host} takes uploads from every machine that can reach "
                          "this one", highlight=False, soft_wrap=True)  # fmt: skip
    console.print(f"serving {source} on http://{host}:{port} (Ctrl-C to stop)", highlight=False, soft_wrap=True)
    run_server(
        source, host, port, images, run_phrases(data), batch_size, max_new_tokens, num_beams, max_pixels,
        max_upload_mb, tiling, tile_and_full,
    )  # fmt: skip
    console.print("stopped")


@app.command("review")
def review_(
    run: Annotated[str, typer.Option(help="Run name (runs/NAME) or folder with predictions.jsonl.")],
    dataset: DatasetOption = "fabric",
    compare: Annotated[str | None, typer.Option(help="An earlier, reviewed run: adds regressions and fixed.")] = None,
    iou: Annotated[float, typer.Option(min=0.05, max=0.95, help="IoU threshold of a match.")] = 0.5,
    min_confidence: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Predictions below this confidence are not stored.")
    ] = 0.05,
) -> None:
    """Load a run's predictions into FiftyOne, evaluate them, and save its mistakes as views for the App.

    Views: RUN-false-positives, RUN-missed, RUN-mislocated, RUN-confused, RUN-possible-missing and
    RUN-possible-spurious (label suspects from FiftyOne Brain's mistakenness, using the real confidences), and
    with --compare, RUN-regressions and RUN-fixed. Writes runs/RUN/report.md with PR curves and confusions.
    Reviewing a run again replaces its fields and views.

    Examples:

      fabricdata review --run r1

      fabricdata review --run r2 --compare r1

      fabricdata predict --run base --model florence-community/Florence-2-base --data exports/v1

      fabricdata review --run base
    """
    from fabricdata.review.review import review as run_review

    folder = run_dir(run)
    previous = run_dir(compare) if compare is not None else None
    with err_console.status("reviewing") as status:
        summary = run_review(
            dataset, folder, previous, iou, progress=lambda text: status.update(text), min_confidence=min_confidence
        )
    table = Table(
        title=f"review of {summary.run}: {summary.images} images, {summary.ground_truth} boxes "
        f"(predicted on {summary.tiling})"
    )
    for column in ("mAP@[.5:.95]", "AP50", "AP75", "precision", "recall", "F1", "at confidence"):
        table.add_column(column, justify="right", overflow="fold")
    values = (summary.map, summary.ap50, summary.ap75, summary.precision, summary.recall, summary.f1)
    table.add_row(*(f"{v:.3f}" for v in values), f"{summary.best_f1_threshold:.3f}")
    console.print(table)
    if summary.label_change:
        console.print(f"labels: {summary.label_change}", highlight=False, soft_wrap=True)
    if summary.below_min_confidence:
        console.print(
            f"{plural(summary.below_min_confidence, 'prediction')} below confidence {min_confidence:g} not stored"
        )
    if summary.outside_classes:
        console.print(
            f"[yellow]{plural(summary.outside_classes, 'prediction')} with labels outside the dataset's classes[/] "
            "(the '(other)' column of the confusion matrix)"
        )
    per_class = Table(title="AP@[.5:.95] per class")
    per_class.add_column("class", overflow="fold")
    per_class.add_column("AP", justify="right", overflow="fold")
    for name, value in sorted(summary.per_class_ap.items()):
        per_class.add_row(name, f"{value:.3f}")
    console.print(per_class)
    views = Table(title="views for the annotators")
    for column in ("view", "samples"):
        views.add_column(column, overflow="fold")
    for name, count in summary.views.items():
        views.add_row(name, str(count))
    console.print(views)
    if not summary.predictions:
        console.print(
            "[yellow]the run predicted nothing[/] (no box above --min-confidence): every box is missed, and there "
            "are no label suspects (possible-missing, possible-spurious)"
        )
    console.print("open a view in the App:")
    for name in summary.views:  # plain lines, whole, to copy
        console.print(f"  fabricdata app --dataset {dataset} --view {name}", highlight=False, soft_wrap=True)
    console.print(f"report: {folder / 'report.md'}")
    for image in summary.unmatched_images:
        err_console.print(f"[red]error:[/] {folder / 'predictions.jsonl'}: image {image} is not in dataset {dataset!r}")
    if summary.unmatched_images:
        raise typer.Exit(1)


@app.command("export-model")
def export_model(
    out: Annotated[Path, typer.Argument(help="Folder for the standalone merged model.")],
    run: Annotated[str, typer.Option(help="Run name (runs/NAME) or folder whose adapter to merge.")],
) -> None:
    """Merge a run's adapter into a standalone model (AutoModelForImageTextToText / AutoProcessor load it).

    Example:

      fabricdata export-model --run r1 models/fabric-r1
    """
    from finetune.model import merge_adapter

    path = merge_adapter(run_dir(run), out)
    console.print(f"merged model saved to [bold]{path}[/]")
