"""The ``fabricdata`` command line (typer + rich). Commands stay thin; heavy imports happen inside them."""

from __future__ import annotations

import json
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, cast

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fabricdata.annotation import DEFAULT_CLASSES, parse_class_list
from fabricdata.errors import AnnotationError, ConfigError, FabricDataError

if TYPE_CHECKING:
    from fabricdata.importer import ImportReport

app = typer.Typer(
    name="fabricdata",
    help="The data-centric loop around Florence-2 for fabric-defect detection.\n\n"
    "Examples:\n\n"
    "  fabricdata synth data/fabric --images 200 --seed 0\n\n"
    "  fabricdata tiny-model models/tiny\n\n"
    "  fabricdata demo",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
console = Console()
err_console = Console(stderr=True)


def setup_environment() -> None:
    """Environment the project's tools run with (never done at import time of library modules)."""
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
    os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    # known, harmless library noise (tests check the behaviour behind each: merging with tied weights works)
    warnings.filterwarnings("ignore", message=".*tie_word_embeddings=True.*ensure_weight_tying.*")
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*deprecated.*")
    warnings.filterwarnings("ignore", message="Setting `save_embedding_layers` to `True`.*")


def progress_bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=False,
    )


@contextmanager
def tracked(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A rich progress bar; yields a callable ``advance(n)``."""
    with progress_bar() as bar:
        task = bar.add_task(description, total=total)

        def advance(n: int = 1) -> None:
            bar.advance(task, n)

        yield advance


def parse_size(text: str) -> tuple[int, int]:
    """``1024x768`` -> (1024, 768)."""
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--size: expected WIDTHxHEIGHT such as 1024x768, got {text!r}") from None
    if width < 32 or height < 32:
        raise ConfigError(f"--size: images must be at least 32x32, got {text!r}")
    return width, height


def classes_option(text: str | None) -> tuple[str, ...]:
    if text is None:
        return DEFAULT_CLASSES
    classes = parse_class_list(text)
    if not classes:
        raise ConfigError(f"--classes: no class names in {text!r}")
    for name in classes:
        if "<" in name or ">" in name:
            raise ConfigError(f"--classes: class name {name!r} may not contain '<' or '>'")
    return classes


@app.command()
def synth(
    out: Annotated[Path, typer.Argument(help="Folder to write the LabelImg dataset to.")],
    images: Annotated[int, typer.Option(min=1, help="Number of images.")] = 200,
    seed: Annotated[int, typer.Option(help="Seed; the same seed gives byte-identical files.")] = 0,
    size: Annotated[str, typer.Option(help="Image size WIDTHxHEIGHT.")] = "1024x768",
    classes: Annotated[
        str | None, typer.Option(help="Comma-separated class names (default wrinkle,drop,broken).")
    ] = None,
    workers: Annotated[int, typer.Option(min=1, help="Processes.")] = max(1, os.cpu_count() or 1),
    sheet: Annotated[Path | None, typer.Option(help="Also write a contact sheet PNG here.")] = None,
) -> None:
    """Generate synthetic woven fabric with wrinkle/drop/broken defects as a LabelImg folder.

    Examples:

      fabricdata synth data/fabric --images 200 --seed 0

      fabricdata synth data/weft --classes wrinkle,broken-weft --size 640x480 --sheet sheet.png
    """
    from fabricdata.synth import SynthConfig, contact_sheet, generate, summarize

    width, height = parse_size(size)
    config = SynthConfig(images=images, seed=seed, width=width, height=height, classes=classes_option(classes))
    with tracked("synth", images) as advance:
        target = generate(config, out, workers=workers, progress=advance)
    if sheet is not None:
        contact_sheet(target, sheet)
    print_counts("Synthetic dataset", summarize(target, config.classes))
    console.print(f"wrote {images} images to [bold]{target}[/]")


def print_counts(title: str, counts: dict[str, int]) -> None:
    table = Table(title=title)
    table.add_column("what")
    table.add_column("count", justify="right")
    for name, value in counts.items():
        table.add_row(name, str(value))
    console.print(table)


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
    from fabricdata.importer import import_folder
    from fabricdata.stats import dataset_stats
    from fabricdata.store import dataset_exists, fiftyone
    from fabricdata.synth import SynthConfig, contact_sheet, generate

    config = SynthConfig(images=images, seed=seed, width=768, height=576)
    data = out / "labelimg"
    console.rule("1. synthetic fabric (LabelImg folder)")
    with tracked("synth", images) as advance:
        generate(config, data, workers=max(1, os.cpu_count() or 1), progress=advance)
    contact_sheet(data, out / "contact_sheet.png")
    console.print(f"LabelImg folder {data}, contact sheet {out / 'contact_sheet.png'}")

    console.rule(f"2. import into the FiftyOne dataset {dataset!r}")
    if dataset_exists(dataset):
        fiftyone().delete_dataset(dataset)
    with tracked("import", images) as advance:
        report = import_folder(data, dataset, progress=advance)
    show_import_report(report, dataset)
    if report.errors:
        error_table("synthetic files not imported", report.errors)
        raise typer.Exit(1)
    show_stats(dataset_stats(dataset))

    console.rule("3. leak-free split, flipped copies, class balance, validation")
    split(dataset=dataset, ratios="0.7,0.15,0.15", seed=seed, reshuffle=False)
    augment(recipe="flip", dataset=dataset, copies=1, seed=seed, split="train", workers=_workers_default())
    balance(
        dataset=dataset,
        target=None,
        ratio=1.0,
        recipe="fabric-default",
        split="train",
        seed=seed,
        workers=_workers_default(),
        max_copies=20,
    )
    validate(dataset=dataset, json_out=False, strict=True, min_instances=10, imbalance=10.0)

    console.rule("4. Florence-2 JSONL export")
    from fabricdata.augment import RECIPE_DIR

    export_florence_(
        out=out / "export",
        dataset=dataset,
        view=None,
        tasks="od,dense,grounding",
        order="sequential",
        phrases=RECIPE_DIR.parent / "phrases.yaml",
        negatives=True,
        seed=seed,
        max_label_tokens=1023,
    )

    console.rule("5. fine-tune the tiny offline Florence-2 (LoRA) and predict the test split")
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


DatasetOption = Annotated[str, typer.Option("--dataset", "-d", help="FiftyOne dataset name.")]
export_app = typer.Typer(help="Export a dataset: LabelImg folders, Florence-2 JSONL.", no_args_is_help=True)
app.add_typer(export_app, name="export")


def error_table(title: str, errors: Sequence[AnnotationError]) -> None:
    """One table at the end (file, element, problem, value); one plain line per error off a terminal."""
    if not err_console.is_terminal:
        err_console.print(f"{title}:", highlight=False)
        for exc in errors:
            err_console.print(f"error: {exc}", highlight=False, soft_wrap=True)
        return
    table = Table(title=title, title_style="bold red", show_lines=False)
    for column in ("file", "element", "problem", "value"):
        table.add_column(column, overflow="fold")
    for exc in errors:
        value = "" if exc.value is None else repr(exc.value)[:60]
        table.add_row(exc.path, exc.element, exc.problem, value)
    err_console.print(table)


@app.command("import")
def import_(
    folder: Annotated[Path, typer.Argument(help="LabelImg folder (images with VOC XML, YOLO txt or CreateML JSON).")],
    dataset: DatasetOption = "fabric",
    format: Annotated[str, typer.Option("--format", help="auto, voc, yolo or createml.")] = "auto",
    classes: Annotated[str | None, typer.Option(help="Comma-separated class list; other labels are errors.")] = None,
    prune: Annotated[bool, typer.Option(help="Remove samples whose files disappeared from the folder.")] = False,
    force: Annotated[bool, typer.Option(help="Let changed files overwrite App edits not yet written back.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Import a LabelImg folder into a persistent FiftyOne dataset (idempotent; bulk inserts).

    Real image sizes are checked against the annotations; bad files are listed in one table at the end while
    all good files are imported (exit code 1 when any file failed). Re-importing adds nothing; changed files
    update their samples; removed files are reported and removed only with --prune.

    Examples:

      fabricdata import data/fabric

      fabricdata import data/weft --dataset weft --classes wrinkle,broken-weft --format yolo
    """
    from fabricdata.formats import FORMATS, FormatName
    from fabricdata.importer import import_folder

    if format not in ("auto", *FORMATS):
        raise ConfigError(f"--format: expected auto, voc, yolo or createml, got {format!r}")
    if not folder.is_dir():
        raise ConfigError(f"{folder}: not a folder")
    from fabricdata.images import is_image

    total = sum(1 for path in folder.iterdir() if is_image(path))
    with tracked("import", total) as advance:
        chosen = cast(FormatName | Literal["auto"], format)
        wanted = parse_class_list(classes) if classes else None
        report = import_folder(folder, dataset, chosen, wanted, prune, force, advance)
    if json_out:
        console.print_json(data=report.as_dict())
    else:
        show_import_report(report, dataset)
    if report.errors:
        error_table(f"{len(report.errors)} file(s) not imported", report.errors)
        raise typer.Exit(1)


def show_import_report(report: ImportReport, dataset: str) -> None:
    table = Table(title=f"import {report.folder} ({report.format}) -> dataset {dataset!r}")
    for column in ("added", "updated", "unchanged", "missing", "removed", "unlabeled", "errors"):
        table.add_column(column, justify="right")
    counts = (report.added, report.updated, report.unchanged, len(report.missing), len(report.removed))
    table.add_row(*(str(v) for v in (*counts, len(report.unlabeled), len(report.errors))))
    console.print(table)
    for path in report.missing:
        console.print(f"[yellow]missing[/] {path} (still in the dataset; use --prune to remove)")
    for path in report.exif_rotated:
        console.print(
            f"[yellow]EXIF-rotated[/] {path}: boxes are in stored pixels (as LabelImg draws them); "
            "browsers and the App show this image rotated"
        )


@app.command()
def stats(
    dataset: DatasetOption = "fabric",
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Instances and images per class and split, defect-free images, box sizes per class.

    Examples:

      fabricdata stats

      fabricdata stats --dataset weft --json
    """
    from fabricdata.stats import dataset_stats

    data = dataset_stats(dataset)
    if json_out:
        console.print_json(data=data)
    else:
        show_stats(data)


def show_stats(data: dict[str, Any]) -> None:
    splits = data["splits"]
    table = Table(title=f"{data['dataset']}: {data['samples']} images")
    table.add_column("class")
    for split in splits:
        table.add_column(f"{split} boxes", justify="right")
        table.add_column(f"{split} images", justify="right")
    for name in data["classes"]:
        cells = []
        for split in splits:
            cells += [str(data["instances"][name][split]), str(data["images"][name][split])]
        table.add_row(name, *cells)
    cells = []
    for split in splits:
        cells += ["", f"{data['defect_free'][split]} of {data['images_per_split'][split]}"]
    table.add_row("[dim]defect-free[/]", *cells)
    console.print(table)
    sizes = Table(title="box sizes (pixels)")
    columns = (
        "class",
        "boxes",
        "width mean",
        "height mean",
        "width median",
        "height median",
        "area min",
        "area max",
    )
    for column in columns:
        sizes.add_column(column, justify="right")
    for name, row in data["box_sizes"].items():
        sizes.add_row(name, *(str(v) for v in row.values()))
    console.print(sizes)


@app.command("app")
def app_(
    dataset: DatasetOption = "fabric",
    view: Annotated[str | None, typer.Option(help="Open this saved view.")] = None,
    port: Annotated[int, typer.Option(help="Port of the App server.")] = 5151,
    address: Annotated[str, typer.Option(help="Address to serve on (0.0.0.0 for remote annotators).")] = "127.0.0.1",
) -> None:
    """Launch the FiftyOne App on the dataset (or a saved view) to browse and fix labels; Ctrl-C stops it.

    Fix boxes in the App's Annotate tab, then run 'fabricdata writeback'.

    Examples:

      fabricdata app

      fabricdata app --view run1-missed --port 5152 --address 0.0.0.0
    """
    from fabricdata.store import fiftyone, load_view

    fo = fiftyone()
    _, target = load_view(dataset, view)
    url = f"http://{address}:{port}/datasets/{dataset}" + (f"?view={_slug(view)}" if view is not None else "")
    session = fo.launch_app(target, port=port, address=address, remote=True, auto=False)
    console.print(f"FiftyOne App: [bold]{url}[/]  (Ctrl-C to stop)")
    try:
        session.wait(-1)
    except KeyboardInterrupt:
        pass
    finally:
        session.close()
        console.print("App stopped")


def _slug(name: str) -> str:
    import fiftyone.core.utils as fou

    return str(fou.to_slug(name))


@app.command("writeback")
def writeback_(
    dataset: DatasetOption = "fabric",
    force: Annotated[bool, typer.Option(help="Overwrite files that changed on disk since import.")] = False,
) -> None:
    """Write labels fixed in the App back to the original LabelImg files (atomic; never loses an edit).

    Only files whose labels changed are written, in their own format (VOC, YOLO, CreateML). A file that
    changed on disk since it was imported is refused unless --force.

    Examples:

      fabricdata writeback

      fabricdata writeback --dataset weft --force
    """
    from fabricdata.store import load_dataset
    from fabricdata.writeback import writeback

    total = len(load_dataset(dataset))
    with tracked("writeback", total) as advance:
        report = writeback(dataset, force=force, progress=advance)
    for path in report.written:
        console.print(f"[green]wrote[/] {path}")
    console.print(f"{len(report.written)} file(s) written, {report.unchanged} unchanged")
    if report.errors:
        error_table(f"{len(report.errors)} file(s) not written", report.errors)
        raise typer.Exit(1)


@export_app.command("labelimg")
def export_labelimg_(
    out: Annotated[Path, typer.Argument(help="Folder to write.")],
    dataset: DatasetOption = "fabric",
    view: Annotated[str | None, typer.Option(help="A saved view to export.")] = None,
    tag: Annotated[str | None, typer.Option(help="Only samples with this tag.")] = None,
) -> None:
    """Write a LabelImg folder (images linked or copied, VOC XML, classes.txt) for a view or tag.

    Annotators who prefer LabelImg fix the selection there; 'fabricdata import OUT' then updates the same
    samples, and 'fabricdata writeback' brings the fixes to the original files.

    Examples:

      fabricdata export labelimg fixes/ --view run1-missed

      fabricdata export labelimg fixes/ --tag recheck
    """
    from fabricdata.store import load_dataset
    from fabricdata.writeback import export_labelimg

    total = len(load_dataset(dataset))
    with tracked("export labelimg", total) as advance:
        count = export_labelimg(dataset, out, view, tag, advance)
    console.print(f"exported {count} image(s) to [bold]{out}[/]")


@export_app.command("florence")
def export_florence_(
    out: Annotated[Path, typer.Argument(help="Export folder (train/, valid/, test/, manifest.json).")],
    dataset: DatasetOption = "fabric",
    view: Annotated[str | None, typer.Option(help="Export this saved view only.")] = None,
    tasks: Annotated[str, typer.Option(help="Comma-separated: od, dense, grounding.")] = "od,dense,grounding",
    order: Annotated[
        str, typer.Option(help="sequential (all OD, then dense, then grounding), interleave, shuffle.")
    ] = "sequential",
    phrases: Annotated[Path | None, typer.Option(help="YAML/JSON class -> phrase table for captions.")] = None,
    negatives: Annotated[bool, typer.Option(help="Export defect-free images with an empty suffix.")] = True,
    seed: Annotated[int, typer.Option(help="Seed of --order shuffle.")] = 0,
    max_label_tokens: Annotated[int, typer.Option(help="Label budget per record (Florence-2: 1023).")] = 1023,
) -> None:
    """Export Florence-2 JSONL (maestro layout): <OD>, <DENSE_REGION_CAPTION>, <CAPTION_TO_PHRASE_GROUNDING>.

    Boxes are quantized exactly as Florence-2's processor does and ordered top-to-bottom, left-to-right.
    Samples are exported by their split tag (train -> train/, val -> valid/, test -> test/); images are hard
    linked where possible. Records that could exceed the label budget are reported, never truncated.

    Examples:

      fabricdata export florence exports/v1

      fabricdata export florence exports/od --tasks od --order shuffle --seed 3 --phrases phrases.yaml
    """
    from fabricdata.export import ExportOptions, export_florence, load_phrases, parse_tasks
    from fabricdata.store import load_dataset

    options = ExportOptions(
        tasks=parse_tasks(tasks),
        order=cast(Literal["sequential", "interleave", "shuffle"], order),
        phrases=load_phrases(phrases),
        negatives=negatives,
        seed=seed,
        max_label_tokens=max_label_tokens,
    )
    total = len(load_dataset(dataset))
    with tracked("export florence", total) as advance:
        manifest = export_florence(dataset, out, view, options, advance)
    table = Table(title=f"Florence-2 export {out} ({manifest.order})")
    table.add_column("split")
    table.add_column("images", justify="right")
    for task in manifest.tasks:
        table.add_column(task, justify="right")
    for folder, count in manifest.images.items():
        table.add_row(folder, str(count), *(str(manifest.records[folder][t]) for t in manifest.tasks))
    console.print(table)
    console.print(f"manifest {Path(out) / 'manifest.json'} (content hash {manifest.content_hash[:16]})")
    if manifest.unassigned:
        console.print(f"[yellow]{manifest.unassigned} sample(s) without a split tag not exported[/] (fabricdata split)")
    for item in manifest.over_budget:
        console.print(f"[yellow]over the label budget, not exported:[/] {item}")


def _workers_default() -> int:
    return max(1, os.cpu_count() or 1)


@app.command()
def augment(
    recipe: Annotated[str, typer.Option(help="albumentations YAML file, or a shipped recipe name (flip, ...).")],
    dataset: DatasetOption = "fabric",
    copies: Annotated[int, typer.Option(min=1, help="Variants per source image.")] = 1,
    seed: Annotated[int, typer.Option(help="Base seed; results do not depend on --workers.")] = 0,
    split: Annotated[str, typer.Option(help="Augment the originals of this split ('all' for every one).")] = "train",
    workers: Annotated[int, typer.Option(min=1, help="Processes.")] = _workers_default(),
) -> None:
    """Make box-aware augmented variants (new samples with lineage) with an albumentations recipe.

    Shipped recipes (pipelines/augment/): flip, flip-vertical, photometric, geometric, fabric-default.
    Boxes that leave the frame are dropped with their labels and counted. Running twice adds nothing.

    Examples:

      fabricdata augment --recipe flip

      fabricdata augment --recipe pipelines/augment/photometric.yaml --copies 3 --seed 7 --workers 2
    """
    from fabricdata.augment import augment as run_augment

    with progress_bar() as bar:
        task = bar.add_task("augment", total=None)
        report = run_augment(
            dataset,
            recipe,
            copies,
            seed,
            split,
            workers,
            progress=lambda n: bar.advance(task, n),
            total=lambda n: bar.update(task, total=n),
        )
    console.print(
        f"recipe {report.recipe}: {report.created} variant(s) created, {report.existing} already there, "
        f"{report.dropped_boxes} box(es) dropped (left the frame), from {report.sources} source image(s)"
    )


@app.command()
def split(
    dataset: DatasetOption = "fabric",
    ratios: Annotated[str, typer.Option(help="train,val,test ratios.")] = "0.8,0.1,0.1",
    seed: Annotated[int, typer.Option(help="Seed of the assignment.")] = 0,
    reshuffle: Annotated[bool, typer.Option(help="Reassign every image (the test set changes!).")] = False,
) -> None:
    """Tag train/val/test per source group, stratified by class; stable as new images arrive.

    A source image and all its variants always share one split. Existing assignments are kept; only new
    images are assigned, so the test set does not churn between fine-tunes (--reshuffle to start over).

    Examples:

      fabricdata split

      fabricdata split --ratios 0.7,0.15,0.15 --seed 3
    """
    from fabricdata.split import parse_ratios, split_dataset

    report = split_dataset(dataset, parse_ratios(ratios), seed, reshuffle)
    labels = sorted({label for row in report.images.values() for label in row if label != "(images)"})
    table = Table(title=f"{dataset}: {report.assigned} group(s) assigned, {report.kept} kept (original images)")
    table.add_column("split")
    for column in ("(images)", *labels):
        table.add_column(column, justify="right")
    for name, row in report.images.items():
        table.add_row(name, *(str(row.get(c, 0)) for c in ("(images)", *labels)))
    console.print(table)
    if report.variants_retagged:
        console.print(f"{report.variants_retagged} variant(s) moved to their source's split")


@app.command()
def balance(
    dataset: DatasetOption = "fabric",
    target: Annotated[int | None, typer.Option(help="Instances every class should reach.")] = None,
    ratio: Annotated[float | None, typer.Option(help="Reach R times the largest class's instances.")] = None,
    recipe: Annotated[str, typer.Option(help="Recipe of the variants.")] = "fabric-default",
    split: Annotated[str, typer.Option(help="Split to balance ('all' for the whole dataset).")] = "train",
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    workers: Annotated[int, typer.Option(min=1, help="Processes.")] = _workers_default(),
    max_copies: Annotated[int, typer.Option(min=1, help="At most this many variants of one image.")] = 20,
) -> None:
    """Add augmented variants of images with under-represented classes until every class reaches the target.

    Prefers source images whose other boxes are not of the majority class. Deterministic and idempotent.

    Examples:

      fabricdata balance --ratio 1.0

      fabricdata balance --target 200 --recipe photometric --split train
    """
    from fabricdata.balance import balance as run_balance

    with progress_bar() as bar:
        task = bar.add_task("balance", total=None)
        report = run_balance(
            dataset, target, ratio, recipe, split, seed, workers, max_copies, lambda n: bar.advance(task, n)
        )
    table = Table(title=escape(f"{dataset} [{split}]: goal {report.goal} instances per class"))
    for column in ("class", "before", "after"):
        table.add_column(column, justify="right")
    for name, count in report.before.items():
        table.add_row(name, str(count), str(report.after.get(name, count)))
    console.print(table)
    console.print(f"{report.created} variant(s) created, {report.dropped_boxes} box(es) dropped")
    for name in report.unreachable:
        console.print(f"[yellow]{name}[/] stays below the goal (too few source images; raise --max-copies)")


@app.command()
def validate(
    dataset: DatasetOption = "fabric",
    json_out: Annotated[
        bool, typer.Option("--json", help="JSON output (schemas/validation-report.schema.json).")
    ] = False,
    strict: Annotated[bool, typer.Option(help="Exit 1 when any error is found.")] = False,
    min_instances: Annotated[int, typer.Option(help="Warn for classes with fewer boxes.")] = 10,
    imbalance: Annotated[float, typer.Option(help="Warn when largest/smallest class exceeds this.")] = 10.0,
) -> None:
    """Check the dataset: labels, boxes, duplicates, leakage across splits, variant lineage.

    Each finding with samples gets a saved view 'validate-<check>' to open in the App.

    Examples:

      fabricdata validate

      fabricdata validate --json --strict
    """
    from fabricdata.store import load_dataset
    from fabricdata.validate import validate as run_validate

    total = len(load_dataset(dataset))
    with tracked("validate", total) as advance:
        report = run_validate(dataset, min_instances, imbalance, progress=advance)
    if json_out:
        console.print_json(report.model_dump_json())
    else:
        table = Table(title=f"validate {dataset}: {report.samples} samples")
        for column in ("severity", "check", "count", "message", "open in the App"):
            table.add_column(column)
        colours = {"error": "red", "warning": "yellow", "info": "blue"}
        for f in report.findings:
            where = f"fabricdata app --view {f.view}" if f.view else ""
            table.add_row(f"[{colours[f.severity]}]{f.severity}[/]", f.check, str(f.count), f.message, where)
        console.print(table)
    if strict and report.errors:
        raise typer.Exit(1)


def _train_epilog() -> str:
    from finetune.config import defaults_table

    rows = "\n\n".join(f"  {key} = {default}: {help_}" for key, default, help_ in defaults_table())
    return "Config keys and defaults (the seed project's findings):\n\n" + rows


def run_dir(run: str) -> Path:
    """``--run NAME`` is runs/NAME; a path (with a slash, or an existing folder) is used as is."""
    path = Path(run)
    return path if ("/" in run or path.is_dir()) else Path("runs") / run


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
    val = f", best val loss {summary.val_loss:.4f}" if summary.val_loss is not None else ""
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
    batch_size: Annotated[int, typer.Option(min=1, help="Images per generate call.")] = 8,
    num_beams: Annotated[int, typer.Option(min=1, help="Beam width.")] = 3,
    max_new_tokens: Annotated[int | None, typer.Option(help="Default: the export's label budget.")] = None,
) -> None:
    """Batched prediction with a real confidence per box; writes runs/NAME/predictions.jsonl.

    Examples:

      fabricdata predict --run r1

      fabricdata predict --run base --model florence-community/Florence-2-base --data exports/v1
    """
    import yaml

    from finetune.model import load_for_inference
    from finetune.predict import DEFAULT_MAX_NEW_TOKENS, PredictOptions, export_images
    from finetune.predict import predict as run_predict

    folder = run_dir(run)
    if data is None:
        if not (folder / "config.yaml").is_file():
            raise ConfigError(f"--data: {folder} has no config.yaml to take the export folder from; give --data")
        data = Path(yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8"))["data"])
    budget = max_new_tokens
    if budget is None:
        manifest = data / "manifest.json"
        budget = json.loads(manifest.read_text())["max_label_tokens"] if manifest.is_file() else DEFAULT_MAX_NEW_TOKENS
    images = export_images(data, split)
    source = model or str(folder)
    loaded, processor = load_for_inference(source)
    folder.mkdir(parents=True, exist_ok=True)
    options = PredictOptions(batch_size=batch_size, num_beams=num_beams, max_new_tokens=budget)
    with tracked("predict", len(images)) as advance:
        count = run_predict(loaded, processor, images, folder / "predictions.jsonl", options, advance)
    console.print(f"{count} prediction(s) of {source} on {data}/{split} -> {folder / 'predictions.jsonl'}")


@app.command("review")
def review_(
    run: Annotated[str, typer.Option(help="Run name (runs/NAME) or folder with predictions.jsonl.")],
    dataset: DatasetOption = "fabric",
    compare: Annotated[str | None, typer.Option(help="An earlier, reviewed run: adds regressions and fixed.")] = None,
    iou: Annotated[float, typer.Option(min=0.05, max=0.95, help="IoU threshold of a match.")] = 0.5,
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
    from fabricdata.review import review as run_review

    folder = run_dir(run)
    previous = run_dir(compare) if compare is not None else None
    with err_console.status("reviewing") as status:
        summary = run_review(dataset, folder, previous, iou, progress=lambda text: status.update(text))
    table = Table(title=f"review of {summary.run}: {summary.images} images, {summary.ground_truth} boxes")
    for column in ("mAP@[.5:.95]", "AP50", "AP75", "precision", "recall", "F1", "at confidence"):
        table.add_column(column, justify="right")
    values = (summary.map, summary.ap50, summary.ap75, summary.precision, summary.recall, summary.f1)
    table.add_row(*(f"{v:.3f}" for v in values), f"{summary.best_f1_threshold:.3f}")
    console.print(table)
    per_class = Table(title="AP@[.5:.95] per class")
    per_class.add_column("class")
    per_class.add_column("AP", justify="right")
    for name, value in sorted(summary.per_class_ap.items()):
        per_class.add_row(name, f"{value:.3f}")
    console.print(per_class)
    views = Table(title="views for the annotators")
    for column in ("view", "samples", "open in the App"):
        views.add_column(column)
    for name, count in summary.views.items():
        views.add_row(name, str(count), f"fabricdata app --dataset {dataset} --view {name}")
    console.print(views)
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


@app.command()
def version() -> None:
    """Print the fabricdata version."""
    from fabricdata import __version__

    console.print(__version__)


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point: one line and exit code 1 for expected errors, never a bare traceback."""
    setup_environment()
    try:
        app(args=list(argv) if argv is not None else None, prog_name="fabricdata")
    except FabricDataError as exc:
        err_console.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        sys.exit(130)
    except Exception as exc:
        if os.environ.get("FABRICDATA_DEBUG"):
            raise
        err_console.print(
            f"[red]internal error:[/] {exc.__class__.__name__}: {exc} "
            "(a bug in fabricdata; FABRICDATA_DEBUG=1 shows the traceback)",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(2)


if __name__ == "__main__":
    main()
