"""Commands that bring data in and out: synth, import, stats, app, writeback, export labelimg."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from fabricdata.cli.common import (
    DatasetOption,
    app,
    classes_option,
    console,
    counted,
    err_console,
    error_table,
    export_app,
    parse_size,
    tracked,
)
from fabricdata.core.annotation import parse_class_list
from fabricdata.core.errors import ConfigError
from fabricdata.core.images import DEFAULT_MAX_PIXELS
from fabricdata.core.wording import plural
from fabricdata.formats.registry import help_list as format_names

if TYPE_CHECKING:
    from fabricdata.store.importer import ImportReport


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
    from fabricdata.prepare.synth import SynthConfig, contact_sheet, generate, summarize

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
    table.add_column("what", overflow="fold")
    table.add_column("count", justify="right", overflow="fold")
    for name, value in counts.items():
        table.add_row(name, str(value))
    console.print(table)


@app.command("import")
def import_(
    folder: Annotated[
        Path, typer.Argument(help="Folder (any depth): LabelImg, YOLO/Roboflow/Ultralytics, darknet or CreateML.")
    ],
    dataset: DatasetOption = "fabric",
    format: Annotated[str, typer.Option("--format", help=f"auto, {format_names()}.")] = "auto",
    classes: Annotated[
        str | None,
        typer.Option(help="Comma-separated classes: YOLO names where the folder has none; other labels are errors."),
    ] = None,
    names: Annotated[
        Path | None,
        typer.Option(
            "--names",
            help="The class-name file (data.yaml, obj.data, classes.txt, *.names) of every YOLO label, where "
            "several could apply.",
        ),
    ] = None,
    prune: Annotated[bool, typer.Option(help="Remove samples whose files disappeared from the folder.")] = False,
    force: Annotated[bool, typer.Option(help="Let changed files overwrite App edits not yet written back.")] = False,
    strict: Annotated[bool, typer.Option(help="Exit 1 on warnings too (unlabeled images, orphan labels).")] = False,
    show_all: Annotated[bool, typer.Option("--show-all", help="Name every warning and ignored file.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report (with its ledger) as JSON.")] = False,
    ledger: Annotated[
        Path | None,
        typer.Option(
            "--ledger", help="Write what became of every file (imported, refused, ignored, with reasons) as JSONL."
        ),
    ] = None,
    follow_links: Annotated[
        bool,
        typer.Option("--follow-links", help="Read symbolic links to files outside the folder (refused by default)."),
    ] = False,
    max_pixels: Annotated[
        int, typer.Option("--max-pixels", min=1, help="Refuse images with more pixels (decompression bombs).")
    ] = DEFAULT_MAX_PIXELS,
) -> None:
    """Import an annotation folder, as published, into a persistent FiftyOne dataset (idempotent; bulk inserts).

    The tree is searched at any depth. Labels are paired with images by stem (exact first, then ignoring case
    when unambiguous; a VOC <filename> chooses between same-stem images): beside the image (LabelImg
    VOC/YOLO/CreateML), or in sibling folders whose names say labels/annotations and images, any case, any
    prefix (images/ + labels/, Annotations/ + JPEGImages/, Validation_Annotations/ + Validation_Images/,
    FiftyOne's labels/ + data/), darknet obj.data + list files. YOLO class names come from the file proven to
    describe the labels; where several could, --names chooses. The authors' splits (folder names train,
    valid/val, test; list files; data.yaml) become the train/val/test tags; category folders become the
    'category' field. Images browsers cannot show (TIFF, 16-bit, CMYK, huge) get a viewable proxy for the App.

    Real image sizes are checked against the annotations. Bad files (malformed, truncated images, FIFOs,
    links leaving the folder, images over --max-pixels) are listed at the end while all good files are
    imported (exit 1); README files, licences and notes are ignored; unlabeled images and labels without an
    image are warnings (exit 1 only with --strict), but annotation files of which fewer than half pair with an
    image, or none imported, are an error. Every file is in the ledger (--json, --ledger FILE). Re-importing
    adds nothing; changed files update their samples; removed files are reported and removed only with --prune.

    Examples:

      fabricdata import data/fabric

      fabricdata import roboflow-export/ --dataset holes          (data.yaml, train/valid/test)

      fabricdata import darknet/ --dataset stains --show-all       (data/obj.data + list files)

      fabricdata import data/weft --dataset weft --classes wrinkle,broken-weft --format yolo

      fabricdata import steel/ --dataset steel --names steel/data.yaml --ledger steel-ledger.jsonl
    """
    from fabricdata.formats import FORMATS
    from fabricdata.store.importer import import_folder

    if format not in ("auto", *FORMATS):
        raise ConfigError(f"--format: expected auto, {format_names()}, got {format!r}")
    if not folder.is_dir():
        raise ConfigError(f"{folder}: not a folder")
    wanted = parse_class_list(classes) if classes else None
    with counted("import") as bar:
        report = import_folder(
            folder,
            dataset,
            format,
            wanted,
            prune,
            force,
            progress=bar.advance,
            on_total=bar.total,
            follow_links=follow_links,
            max_pixels=max_pixels,
            names=names,
        )
    if ledger is not None:
        report.write_ledger(ledger)
    if json_out:
        console.print_json(data=report.as_dict())
    else:
        show_import_report(report, dataset, show_all)
    if report.errors:
        error_table(f"{len(report.errors)} file(s) not imported", report.errors)
    if not json_out:
        console.print(f"import: {report.summary()}", highlight=False, soft_wrap=True)
    if report.errors or (strict and report.warning_count):
        raise typer.Exit(1)


_SHOWN = 5


def _listing(kind: str, lines: Sequence[str], show_all: bool, hint: str = "") -> None:
    """Up to five lines of one kind (all with --show-all), then how many more there are."""
    shown = lines if show_all else lines[:_SHOWN]
    for line in shown:
        console.print(f"[yellow]{kind}[/] {escape(line)}{hint}", soft_wrap=True)
    if len(lines) > len(shown):
        console.print(f"[yellow]{kind}[/] ... and {len(lines) - len(shown)} more (--show-all lists them)")


def show_import_report(report: ImportReport, dataset: str, show_all: bool = False) -> None:
    console.print(f"import {escape(report.folder)} ({report.format}) -> dataset {dataset!r}", soft_wrap=True)
    for path in report.layout_files:
        console.print(f"[dim]layout[/] {escape(path)}", soft_wrap=True)
    _listing("warning", report.warnings, show_all)
    _listing("unlabeled", report.unlabeled, show_all, " (image without labels: not imported)")
    _listing("missing", report.missing, show_all, " (still in the dataset; use --prune to remove)")
    if show_all:
        reasons = {entry.path: entry.reason for entry in report.ledger}
        ignored = [f"{path} ({reasons.get(path) or 'not an image or annotation'})" for path in report.ignored]
        _listing("ignored", ignored, True)
    elif report.ignored:
        console.print(f"[dim]ignored {len(report.ignored)} file(s) that are not images or annotations[/]")
    for path in report.exif_rotated:
        console.print(
            f"[yellow]EXIF-rotated[/] {escape(path)}: boxes are in stored pixels (as LabelImg draws them); "
            "browsers and the App show this image rotated",
            soft_wrap=True,
        )
    if report.proxies:
        console.print(f"{report.proxies} image(s) browsers cannot show got a viewable proxy for the App")
    if report.polygons:
        console.print(f"{plural(report.polygons, 'YOLO segmentation polygon')} read as bounding boxes")
    if report.unused_classes:
        unused = ", ".join(report.unused_classes)
        console.print(f"[dim]declared classes no label uses:[/] {escape(unused)}", soft_wrap=True)


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
    from fabricdata.prepare.stats import dataset_stats

    data = dataset_stats(dataset)
    if json_out:
        console.print_json(data=data)
    else:
        show_stats(data)


def show_stats(data: dict[str, Any]) -> None:
    splits = data["splits"]
    table = Table(title=f"{data['dataset']}: {data['samples']} images")
    table.add_column("class", overflow="fold")
    for split in splits:
        table.add_column(f"{split} boxes", justify="right", overflow="fold")
        table.add_column(f"{split} images", justify="right", overflow="fold")
    for name in data["classes"]:
        cells = []
        for split in splits:
            cells += [str(data["instances"][name][split]), str(data["images"][name][split])]
        table.add_row(name, *cells)
    cells = []
    for split in splits:
        cells += ["", f"{data['defect_free'][split]} of {data['images_per_split'][split]}"]
    table.add_row("[dim]defect-free[/]", *cells)
    for name in data.get("unused_classes", []):
        table.add_row(f"{escape(name)} [dim](declared, unused)[/]", *(["0"] * (2 * len(splits))))
    console.print(table)
    sources = ", ".join(f"{name} {count}" for name, count in data["split_sources"].items())
    console.print(f"splits from: {escape(sources)}", soft_wrap=True)
    if data.get("drafts_to_verify"):
        console.print(
            f"[yellow]{plural(data['drafts_to_verify'], 'prelabeled image')} wait for verification[/] (not counted "
            "above; tag them 'verified' in the App, then 'fabricdata writeback')"
        )
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
        sizes.add_column(column, justify="right", overflow="fold")
    for name, row in data["box_sizes"].items():
        sizes.add_row(name, *(str(v) for v in row.values()))
    console.print(sizes)


@app.command("app")
def app_(
    dataset: DatasetOption = "fabric",
    view: Annotated[str | None, typer.Option(help="Open this saved view.")] = None,
    port: Annotated[int, typer.Option(help="Port of the App server.")] = 5151,
    address: Annotated[
        str,
        typer.Option(
            help="Address to serve on. Careful: 0.0.0.0 lets every machine that can reach this one use the App, "
            "and the App serves any file this user can read (its media route); only on a trusted network."
        ),
    ] = "127.0.0.1",
    runs: Annotated[Path, typer.Option(help="Folder that holds the runs (the runs panel, the run pickers).")] = Path(
        "runs"
    ),
) -> None:
    """Launch the FiftyOne App on the dataset (or a saved view) to browse and fix labels; Ctrl-C stops it.

    Fix boxes in the App's Annotate tab, then run 'Write back to label files' from the App's operator browser
    (the ` key) or 'fabricdata writeback'. fabricdata's operators (write back, verify drafts, prelabel a folder,
    review a run, open a run's view) and its runs panel are there without any plugin step; your own FiftyOne
    plugins stay available. Prelabel and review run as FiftyOne delegated operations: start the command it prints
    ('fiftyone delegated launch' with this plugins folder) in a second terminal to run them.

    On 127.0.0.1 (the default) the App answers only requests addressed to localhost or 127.0.0.1 (a web page
    elsewhere cannot reach it by DNS rebinding). --address 0.0.0.0 serves the whole network, and with it every
    file this user can read: use it only on a trusted network.

    Examples:

      fabricdata app

      fabricdata app --view run1-missed --port 5152
    """
    from fabricdata.app import server as appserver
    from fabricdata.app.plugins import enable
    from fabricdata.assist.serve import allowed_hosts
    from fabricdata.store.dataset import fiftyone, load_view

    fo = fiftyone()
    _, target = load_view(dataset, view)
    plugins = enable(runs)  # before the server starts: it inherits the plugins folder
    if allowed_hosts(address) == ["*"]:
        err_console.print(
            f"[yellow]warning:[/] the App on {address} serves every file this user can read to every machine that "
            "can reach this one",
            highlight=False,
            soft_wrap=True,
        )
    url = f"http://{address}:{port}/datasets/{dataset}" + (f"?view={_slug(view)}" if view is not None else "")
    server = appserver.start(port, address)
    try:
        session = fo.launch_app(target, port=port, address=address, remote=True, auto=False)
        console.print(f"FiftyOne App: [bold]{url}[/]  (Ctrl-C to stop)")
        console.print(
            f"delegated operations (prelabel, review): FIFTYONE_PLUGINS_DIR={plugins} fiftyone delegated launch",
            highlight=False,
            soft_wrap=True,
        )
        try:
            session.wait(-1)
        except KeyboardInterrupt:
            pass
        finally:
            session.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
        console.print("App stopped")


def _slug(name: str) -> str:
    import fiftyone.core.utils as fou

    return str(fou.to_slug(name))


@app.command("writeback")
def writeback_(
    dataset: DatasetOption = "fabric",
    force: Annotated[bool, typer.Option(help="Overwrite files that changed on disk since import.")] = False,
) -> None:
    """Write labels fixed in the App back to the original label files (atomic; never loses an edit).

    Only files whose labels changed are written, in their own format, each atomically and under a lock (a second
    write-back waits); in a file only what was edited changes (untouched boxes and lines keep their exact bytes,
    edited values the file's own number style), and the dataset then holds what the file says. A file that
    changed on disk since it was imported, or that another program saves during the write-back, is left as it is
    and reported (--force overwrites the former); a file the system refuses (full or read-only disk, no access, a
    FIFO in its place) is listed, and the others are written. A rerun after a crash (of the command or of the
    database) finishes the interrupted writes from the journal. Images drafted by 'fabricdata prelabel' get a new
    label file beside them once an annotator tags them 'verified' in the App (never before, and never over an
    existing file).

    Examples:

      fabricdata writeback

      fabricdata writeback --dataset weft --force
    """
    from fabricdata.store.writeback import writeback

    with counted("writeback") as bar:
        report = writeback(
            dataset,
            force=force,
            progress=bar.advance,
            on_total=bar.total,
        )
    if report.recovered:
        console.print(f"recorded {report.recovered} file(s) an interrupted write-back had written")
    for path in report.written:
        console.print(f"[green]wrote[/] {path}")
    rounded = f", {report.rounded} edit(s) rounded to the file's own numbers" if report.rounded else ""
    console.print(f"{len(report.written)} file(s) written, {report.unchanged} unchanged{rounded}")
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
    from fabricdata.store.writeback import export_labelimg

    with counted("export labelimg") as bar:
        count = export_labelimg(
            dataset,
            out,
            view,
            tag,
            progress=bar.advance,
            on_total=bar.total,
        )
    console.print(f"exported {count} image(s) to [bold]{out}[/]")
