"""The ``fabricdata`` command line (typer + rich). Commands stay thin; heavy imports happen inside them."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fabricdata.annotation import DEFAULT_CLASSES, parse_class_list
from fabricdata.errors import ConfigError, FabricDataError

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
    config = SynthConfig(
        images=images, seed=seed, width=width, height=height, classes=classes_option(classes)
    )
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
) -> None:
    """Run the loop end to end on the built-in synthetic fabric dataset.

    Example:

      fabricdata demo --out demo --images 120
    """
    from fabricdata.synth import SynthConfig, contact_sheet, generate, summarize

    config = SynthConfig(images=images, seed=seed, width=768, height=576)
    data = out / "labelimg"
    with tracked("synth", images) as advance:
        generate(config, data, workers=max(1, os.cpu_count() or 1), progress=advance)
    contact_sheet(data, out / "contact_sheet.png")
    print_counts("Synthetic fabric", summarize(data, config.classes))
    console.print(f"[green]demo:[/] LabelImg folder {data}, contact sheet {out / 'contact_sheet.png'}")


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


if __name__ == "__main__":
    main()
