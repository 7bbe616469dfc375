"""Commands that prepare training data: augment, split, balance, validate, export florence."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, cast

import typer
from rich.markup import escape
from rich.table import Table

from fabricdata.cli.common import (
    DatasetOption,
    app,
    console,
    counted,
    export_app,
    workers_default,
)
from fabricdata.core.florence import MAX_TEXT_TOKENS
from fabricdata.core.wording import plural

if TYPE_CHECKING:
    from fabricdata.core.contracts import ExportTiling, ValidationReport
    from fabricdata.prepare.split import SplitReport


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
    max_label_tokens: Annotated[
        int, typer.Option(help="Label budget per record (Florence-2: 1023).")
    ] = MAX_TEXT_TOKENS,
    allow_empty_split: Annotated[
        bool, typer.Option(help="Write splits with no images (maestro and similar trainers refuse them).")
    ] = False,
    tile: Annotated[
        str, typer.Option(help="Cut every frame into tiles of SIZE or WIDTHxHEIGHT px ('fabricdata validate' advises).")
    ] = "none",
    overlap: Annotated[
        float, typer.Option(help="--tile: overlap of neighbouring tiles, a share of the tile side.")
    ] = 0.2,
    min_visibility: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="--tile: keep a cut box where this share of its area is inside.")
    ] = 0.5,
    tile_negatives: Annotated[
        float, typer.Option(min=0.0, help="--tile: tiles without defects kept per tile with defects (seeded).")
    ] = 1.0,
) -> None:
    """Export Florence-2 JSONL (maestro layout): <OD>, <DENSE_REGION_CAPTION>, <CAPTION_TO_PHRASE_GROUNDING>.

    Boxes are quantized exactly as Florence-2's processor does and ordered top-to-bottom, left-to-right.
    Samples are exported by their split tag (train -> train/, val -> valid/, test -> test/); images are hard
    linked where possible. Records that could exceed the label budget are reported, never truncated.

    With --tile, every frame is cut into tiles (the last row and column aligned to the frame's edge), each box
    clipped into each tile it overlaps; a tile never leaves its frame's split. The frames are linked under
    SPLIT/frames/ for 'fabricdata predict', which slices them the same way and merges the boxes back.

    Examples:

      fabricdata export florence exports/v1

      fabricdata export florence exports/od --tasks od --order shuffle --seed 3 --phrases phrases.yaml

      fabricdata export florence exports/strips --tile 256 --overlap 0.2 --tile-negatives 0.5
    """
    from fabricdata.core.contracts import Tiling
    from fabricdata.prepare.export import ExportOptions, export_florence, load_phrases, parse_tasks
    from fabricdata.prepare.tiling import TileOptions

    tiling = Tiling.parse(tile, overlap)

    options = ExportOptions(
        tasks=parse_tasks(tasks),
        order=cast(Literal["sequential", "interleave", "shuffle"], order),
        phrases=load_phrases(phrases),
        negatives=negatives,
        seed=seed,
        max_label_tokens=max_label_tokens,
        allow_empty_split=allow_empty_split,
        tiles=TileOptions(tiling, min_visibility, tile_negatives) if tiling is not None else None,
    )
    with counted("export florence") as bar:
        manifest = export_florence(
            dataset,
            out,
            view,
            options,
            progress=bar.advance,
            on_total=bar.total,
        )
    table = Table(title=f"Florence-2 export {out} ({manifest.order})")
    table.add_column("split", overflow="fold")
    table.add_column("images", justify="right", overflow="fold")
    for task in manifest.tasks:
        table.add_column(task, justify="right", overflow="fold")
    for folder, count in manifest.images.items():
        table.add_row(folder, str(count), *(str(manifest.records[folder][t]) for t in manifest.tasks))
    console.print(table)
    console.print(f"manifest {Path(out) / 'manifest.json'} (content hash {manifest.content_hash[:16]})")
    if manifest.tiling is not None:
        show_tiling(manifest.tiling)
    console.print(f"labels: version {manifest.labels_version_name} ({(manifest.labels_version or '')[:12]})")
    if manifest.unassigned:
        console.print(f"[yellow]{manifest.unassigned} sample(s) without a split tag not exported[/] (fabricdata split)")
    for item in manifest.over_budget:
        console.print(f"[yellow]over the label budget, not exported:[/] {item}")


def show_tiling(tiling: ExportTiling) -> None:
    """What a tiled export made of its frames: tiles per split and kind, box pieces clipped and dropped."""
    table = Table(title=f"tiles {tiling.describe()}, min visibility {tiling.min_visibility:g}")
    kinds = ("boxes", "negatives", "negatives_left", "partial")
    for column in ("split", "frames", *kinds):
        table.add_column(column, justify="right", overflow="fold")
    for folder, count in tiling.frames.items():
        table.add_row(folder, str(count), *(str(tiling.tiles.get(folder, {}).get(kind, 0)) for kind in kinds))
    console.print(table)
    pieces = tiling.pieces
    console.print(
        f"box pieces: {pieces.get('whole', 0)} whole, {pieces.get('clipped', 0)} clipped by a tile border, "
        f"{pieces.get('dropped', 0)} dropped (under {tiling.min_visibility:g} of their box)"
    )


@app.command()
def augment(
    recipe: Annotated[str, typer.Option(help="albumentations YAML file, or a shipped recipe name (flip, ...).")],
    dataset: DatasetOption = "fabric",
    copies: Annotated[int, typer.Option(min=1, help="Variants per source image.")] = 1,
    seed: Annotated[int, typer.Option(help="Base seed; results do not depend on --workers.")] = 0,
    split: Annotated[str, typer.Option(help="Augment the originals of this split ('all' for every one).")] = "train",
    workers: Annotated[int, typer.Option(min=1, help="Processes.")] = workers_default(),
) -> None:
    """Make box-aware augmented variants (new samples with lineage) with an albumentations recipe.

    Shipped recipes (pipelines/augment/): flip, flip-vertical, photometric, geometric, fabric-default.
    Boxes that leave the frame are dropped with their labels and counted. Running twice adds nothing.

    Examples:

      fabricdata augment --recipe flip

      fabricdata augment --recipe pipelines/augment/photometric.yaml --copies 3 --seed 7 --workers 2
    """
    from fabricdata.prepare.augment import augment as run_augment

    with counted("augment") as bar:
        report = run_augment(
            dataset,
            recipe,
            copies,
            seed,
            split,
            workers,
            progress=bar.advance,
            total=bar.total,
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
    min_per_split: Annotated[
        int, typer.Option(min=0, help="Each split with a positive ratio gets at least this many images.")
    ] = 1,
) -> None:
    """Tag train/val/test per source group, stratified by class; stable as new images arrive.

    A source image and all its variants always share one split, and so do near-identical photos (copies
    flipped, rotated, cropped, rescaled or re-encoded: the groups 'validate' would report as leakage). Existing
    assignments are kept (also the
    authors' splits that import read from folder names, list files or data.yaml); only new images are assigned,
    so the test set does not churn between fine-tunes (--reshuffle to start over). 'fabricdata stats' shows
    where each split came from.

    Examples:

      fabricdata split

      fabricdata split --ratios 0.7,0.15,0.15 --seed 3
    """
    from fabricdata.prepare.split import parse_ratios, split_dataset

    shares = parse_ratios(ratios)
    with counted("fingerprints") as bar:
        report = split_dataset(
            dataset, shares, seed, reshuffle, min_per_split, progress=bar.advance, on_total=bar.total
        )
    labels = sorted({label for row in report.images.values() for label in row if label != "(images)"})
    table = Table(title=f"{dataset}: {report.assigned} group(s) assigned, {report.kept} kept (original images)")
    table.add_column("split", overflow="fold")
    for column in ("(images)", *labels):
        table.add_column(column, justify="right", overflow="fold")
    for name, row in report.images.items():
        table.add_row(name, *(str(row.get(c, 0)) for c in ("(images)", *labels)))
    console.print(table)
    if report.variants_retagged:
        console.print(f"{plural(report.variants_retagged, 'variant')} moved to their source's split")
    _say_near_duplicates(report, dataset)
    for line in report.warnings:
        console.print(f"[yellow]warning:[/] {escape(line)}", soft_wrap=True)


def _say_near_duplicates(report: SplitReport, dataset: str) -> None:
    """One statement of what happened to the near-duplicate groups, then the groups left across splits."""
    groups, across = report.near_duplicate_groups, report.groups_across
    if not groups:
        return
    if not across:
        console.print(f"{plural(groups, 'group')} of near-identical images: each kept in one split")
        return
    together = groups - len(across)
    console.print(
        f"[yellow]{plural(groups, 'group')} of near-identical images: {together} kept in one split, {len(across)} "
        f"left across the splits they were given[/] (leakage; 'fabricdata split --dataset {dataset} --reshuffle' "
        "puts each group in one split):",
        soft_wrap=True,
    )
    for members in across[:_GROUPS_SHOWN]:
        console.print("  " + ", ".join(f"{path} ({split})" for path, split in members), highlight=False, soft_wrap=True)
    if len(across) > _GROUPS_SHOWN:
        console.print(f"  and {len(across) - _GROUPS_SHOWN} more (fabricdata validate names them all)")


_GROUPS_SHOWN = 5


@app.command()
def balance(
    dataset: DatasetOption = "fabric",
    target: Annotated[int | None, typer.Option(help="Instances every class should reach.")] = None,
    ratio: Annotated[float | None, typer.Option(help="Reach R times the largest class's instances.")] = None,
    recipe: Annotated[str, typer.Option(help="Recipe of the variants.")] = "fabric-default",
    split: Annotated[str, typer.Option(help="Split to balance ('all' for the whole dataset).")] = "train",
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    workers: Annotated[int, typer.Option(min=1, help="Processes.")] = workers_default(),
    max_copies: Annotated[int, typer.Option(min=1, help="At most this many variants of one image.")] = 20,
) -> None:
    """Add augmented variants of images with under-represented classes until every class reaches the target.

    Prefers source images whose other boxes are not of the majority class. Deterministic and idempotent.

    Examples:

      fabricdata balance --ratio 1.0

      fabricdata balance --target 200 --recipe photometric --split train
    """
    from fabricdata.prepare.balance import balance as run_balance

    with counted("balance") as bar:
        report = run_balance(dataset, target, ratio, recipe, split, seed, workers, max_copies, bar.advance)
    table = Table(title=escape(f"{dataset} [{split}]: goal {report.goal} instances per class"))
    for column in ("class", "before", "after"):
        table.add_column(column, justify="right", overflow="fold")
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
    from fabricdata.prepare.validate import validate as run_validate

    with counted("validate") as bar:
        report = run_validate(dataset, min_instances, imbalance, progress=bar.advance, on_total=bar.total)
    if json_out:
        console.print_json(report.model_dump_json())
    else:
        show_findings(report, dataset)
    if strict and report.errors:
        raise typer.Exit(1)


_FILES_SHOWN = 3


def show_findings(report: ValidationReport, dataset: str) -> None:
    """The findings table, then for each finding its first files and the App command, as whole lines."""
    from fabricdata.store.dataset import load_dataset

    table = Table(title=f"validate {dataset}: {report.samples} samples")
    for column in ("severity", "check", "count", "message"):
        table.add_column(column, overflow="fold")
    colours = {"error": "red", "warning": "yellow", "info": "blue"}
    for f in report.findings:
        table.add_row(f"[{colours[f.severity]}]{f.severity}[/]", f.check, str(f.count), f.message)
    console.print(table)
    samples = load_dataset(dataset)
    for f in report.findings:
        if not f.view:
            continue
        paths = samples.select(f.samples[:_FILES_SHOWN], ordered=True).values("filepath")
        more = f" and {len(f.samples) - len(paths)} more" if len(f.samples) > len(paths) else ""
        console.print(f"{f.check}: {', '.join(paths)}{more}", highlight=False, soft_wrap=True)
        console.print(f"  fabricdata app --dataset {dataset} --view {f.view}", highlight=False, soft_wrap=True)
