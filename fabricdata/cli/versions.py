"""Commands for label versions: snapshot, versions, diff, restore."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from fabricdata.cli.common import DatasetOption, app, console, err_console, run_dir
from fabricdata.core.errors import ConfigError, DatasetError
from fabricdata.core.wording import plural

if TYPE_CHECKING:
    from fabricdata.core.contracts import LabelDiff, LabelVersion
    from fabricdata.store.labeldiff import Side

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


@app.command()
def snapshot(
    dataset: DatasetOption = "fabric",
    name: Annotated[str | None, typer.Option("--name", help="Version name (default: v1, v2, ...).")] = None,
    message: Annotated[str, typer.Option("--message", "-m", help="Why, for people.")] = "",
) -> None:
    """Freeze the labels of the original images as a version: boxes with their attributes, classes, split
    tags, the label files' hashes. Content-addressed: the same labels give the same id (and no new version);
    stored with the dataset as one compressed file proportional to the labels. Every export records its
    version too (taking one when the labels changed).

    Examples:

      fabricdata snapshot

      fabricdata snapshot --name before-review -m "as delivered by the vendor"
    """
    from fabricdata.store.versions import snapshot as take

    with err_console.status("reading the labels"):
        version, new = take(dataset, name, message)
    if not new:
        console.print(f"unchanged: the labels are version {version.name} ({version.id[:12]})", highlight=False)
        return
    console.print(
        f"version {version.name} ({version.id[:12]}): {plural(version.samples, 'image')}, "
        f"{plural(version.boxes, 'box', 'boxes')}, {version.stored_bytes / 1024:.1f} KiB stored",
        highlight=False,
    )


@app.command("versions")
def versions_(dataset: DatasetOption = "fabric", json_out: JsonOption = False) -> None:
    """The label versions of a dataset, oldest first: name, id, when, by which command, images, boxes.

    Examples:

      fabricdata versions

      fabricdata versions --json
    """
    from fabricdata.store.versions import VersionStore

    versions = VersionStore(dataset).versions()
    if json_out:
        console.print_json(data=[version.model_dump() for version in versions])
        return
    header = ["name", "id", "created (UTC)", "taken by", "images", "boxes", "stored", "message"]
    rows = [
        [v.name, v.id[:12], v.created[:16].replace("T", " "), v.taken_by, str(v.samples), str(v.boxes),
         f"{v.stored_bytes / 1024:.1f} KiB", v.message]
        for v in versions
    ]  # fmt: skip
    _table(f"label versions of {dataset}", header, rows)
    if not versions:
        console.print("no versions yet: 'fabricdata snapshot' takes one (every export does too)")


@app.command()
def diff(
    a: Annotated[str, typer.Argument(help="A version (name or id), a run (its export's version) or 'now'.")],
    b: Annotated[str, typer.Argument(help="The same kinds; default: the labels now.")] = "now",
    dataset: DatasetOption = "fabric",
    iou: Annotated[
        float, typer.Option(min=0.05, max=1.0, help="IoU at which a removed and an added box are one moved box.")
    ] = 0.5,
    view: Annotated[bool, typer.Option(help="Save the view diff-A-B with the other version as a field.")] = True,
    json_out: JsonOption = False,
) -> None:
    """Box-level changes from A to B, per class and in total: added, removed, moved, relabelled, other
    attributes; images added, removed, moved to another split. Boxes pair by id (App edits keep it), then by
    IoU. The saved view diff-A-B holds the changed images; a side that is not 'now' is written to the field
    version_<name>, so the App shows before and after together.

    Examples:

      fabricdata diff v1                  (v1 against the labels now)

      fabricdata diff v1 v2 --json

      fabricdata diff r3 r4               (the versions runs r3 and r4 trained on)
    """
    from fabricdata.store.labeldiff import diff_tables, save_diff_view

    with err_console.status("comparing the labels"):
        side_a, side_b = _side(dataset, a), _side(dataset, b)
        result = diff_tables(dataset, side_a, side_b, iou)
        if view:
            result = save_diff_view(dataset, result, side_a, side_b)
    if json_out:
        console.print_json(result.model_dump_json())
        return
    show_diff(result)


def _version(dataset: str, ref: str) -> LabelVersion:
    """A version by name or id; else the version a run trained on (its copy of the export manifest names it)."""
    from fabricdata.store.versions import find_version, run_version

    try:
        return find_version(dataset, ref)
    except DatasetError as not_a_version:
        try:
            folder = run_dir(ref)
        except ConfigError:
            raise not_a_version from None
    version = run_version(folder)
    if version is None:
        raise DatasetError(f"run {ref}: no label version recorded (its export was made before versions)")
    return version


def _side(dataset: str, ref: str) -> Side:
    """``now``, a version or a run's version, with its labels."""
    from fabricdata.store.labeldiff import Side, load_side
    from fabricdata.store.versions import NOW, VersionStore

    if ref == NOW:
        return load_side(dataset, NOW)
    version = _version(dataset, ref)
    return Side(version.name, version.id, VersionStore(version.dataset).read_labels(version))


def _table(title: str, header: list[str], rows: list[list[str]]) -> None:
    """A rich table on a terminal (cells fold, a ``total`` row in bold); elsewhere a Markdown table."""
    if not console.is_terminal:
        lines = [title, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
        console.print("\n".join(lines), highlight=False, markup=False, soft_wrap=True)
        return
    table = Table(title=title)
    for index, column in enumerate(header):
        table.add_column(column, overflow="fold", justify="left" if index == 0 else "right")
    for row in rows:
        table.add_row(*row, style="bold" if row[0] == "total" else None)
    console.print(table)


def show_diff(result: LabelDiff) -> None:
    """The per-class table, then relabels, images, and the view to open. Off a terminal, a Markdown table."""
    from fabricdata.store.labeldiff import statement

    header = ["class", "added", "removed", "moved", "relabelled", "attributes"]
    rows = [[name, *(str(v) for v in change.model_dump().values())] for name, change in result.per_class.items()]
    rows.append(["total", *(str(v) for v in result.total.model_dump().values())])
    _table(f"{result.a} ({result.a_id[:8]}) -> {result.b} ({result.b_id[:8]})", header, rows)
    console.print(statement(result), highlight=False)
    for pair, count in result.relabelled.items():
        console.print(f"relabelled {pair}: {count}", highlight=False)
    counts = (
        (result.samples_added, "added"),
        (result.samples_removed, "removed"),
        (result.split_changed, "in another split"),
        (result.tags_changed, "with other tags"),
    )
    images = [plural(n, f"image {what}", f"images {what}") for n, what in counts if n]
    if images:
        console.print(", ".join(images), highlight=False)
    if result.view:
        shown = ", ".join(
            f"{side}: {field}" for side, field in (("before", result.fields["a"]), ("after", result.fields["b"]))
        )
        console.print(f"view {result.view} ({shown}):", highlight=False)
        console.print(
            f"  fabricdata app --dataset {result.dataset} --view {result.view}", highlight=False, soft_wrap=True
        )


@app.command()
def restore(
    version: Annotated[str, typer.Argument(help="The version to restore (name or id), or a run (its version).")],
    new: Annotated[str, typer.Option("--as", help="Name of the new dataset.")],
    dataset: DatasetOption = "fabric",
) -> None:
    """Make a new dataset that holds exactly the labels of a version (same images, sample and box ids, classes,
    split tags), to retrain exactly what an old run saw: its export is byte-identical to one made from that
    version (the manifest differs in the dataset's name). No label file is read or written.

    Examples:

      fabricdata restore v3 --as fabric-v3

      fabricdata restore r4 --as fabric-r4        (the version run r4 trained on)
    """
    from fabricdata.store.versions import restore as make

    chosen = _version(dataset, version)
    with err_console.status(f"restoring {chosen.name}"):
        restored, made = make(chosen.dataset, chosen.id, new)
    console.print(
        f"dataset {new}: version {restored.name} ({restored.id[:12]}) of {restored.dataset}, "
        f"{plural(len(made), 'image')}, {plural(restored.boxes, 'box', 'boxes')}",
        highlight=False,
    )
