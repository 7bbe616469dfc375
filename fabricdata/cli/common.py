"""Shared pieces of the command line: the typer app, consoles, progress bars and small option parsers."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TextIO

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from typer.core import TyperGroup

from fabricdata.core.annotation import DEFAULT_CLASSES, class_name_problem, parse_class_list
from fabricdata.core.contracts import RunFolder, Tiling
from fabricdata.core.errors import AnnotationError, ConfigError

#: `fabricdata --help` lists the commands in the order of the loop (tests/test_cli.py checks every command is here)
ORDER = (
    "synth", "import", "stats", "app", "writeback", "split", "augment", "balance", "validate", "snapshot",
    "versions", "diff", "restore", "export", "tiny-model", "train", "predict", "export-model", "review", "audit",
    "prelabel", "serve", "sweep", "runs", "demo",
    "version",
)  # fmt: skip


class LoopOrder(TyperGroup):
    """The command group that lists its commands (and the ``export`` group) in :data:`ORDER`."""

    def list_commands(self, ctx: Any) -> list[str]:
        names = super().list_commands(ctx)
        return sorted(names, key=lambda name: ORDER.index(name) if name in ORDER else len(ORDER))


app = typer.Typer(
    name="fabricdata",
    cls=LoopOrder,
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
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")  # libtiff's TIFF_Warning lines through OpenCV
    if os.environ.get("FIFTYONE_DATABASE_URI"):  # a database that is down: one line after seconds, not 30 s
        os.environ["FIFTYONE_DATABASE_URI"] = with_connect_timeout(os.environ["FIFTYONE_DATABASE_URI"])
    if not os.environ.get("FABRICDATA_DEBUG"):
        warnings.showwarning = _quiet_third_party_warning
        # FiftyOne's "Evaluating detections..." lines on stdout, one per pass: review shows its own status
        logging.getLogger("fiftyone.utils.eval").setLevel(logging.WARNING)


#: how long a command looks for the database before it says it cannot reach it (MongoDB's default is 30 s)
CONNECT_TIMEOUT_MS = 5000


def with_connect_timeout(uri: str, milliseconds: int = CONNECT_TIMEOUT_MS) -> str:
    """``uri`` with MongoDB's ``serverSelectionTimeoutMS`` option (the time a command waits for an unreachable
    server), unless it sets one itself: ``mongodb://host:27017`` -> ``mongodb://host:27017/?serverSelectionTimeoutMS=5000``."""
    if "serverselectiontimeoutms=" in uri.lower():
        return uri
    option = f"serverSelectionTimeoutMS={milliseconds}"
    if "?" in uri:
        return f"{uri}{'' if uri.endswith(('?', '&')) else '&'}{option}"
    rest = uri.partition("://")[2]
    return f"{uri}{'' if '/' in rest else '/'}?{option}" if rest else uri


#: the folders of fabricdata's and finetune's modules (side by side, in a checkout or in site-packages)
_OWN_CODE = tuple(str(Path(__file__).resolve().parents[2] / package) + os.sep for package in ("fabricdata", "finetune"))


def _quiet_third_party_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """fabricdata's own warnings reach the terminal; other libraries' (matplotlib glyphs, tight layout,
    transformers and peft notices) go to the log, shown with FABRICDATA_DEBUG=1."""
    if filename.startswith(_OWN_CODE):
        err_console.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)
    else:
        logging.getLogger("fabricdata.third_party").debug("%s:%s: %s: %s", filename, lineno, category.__name__, message)


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


@dataclass(frozen=True, slots=True)
class Bar:
    """The two callbacks a library function reports progress through: ``advance(n)`` and ``total(n)``."""

    advance: Callable[[int], None]
    total: Callable[[int], None]


@contextmanager
def counted(description: str) -> Iterator[Bar]:
    """A rich progress bar whose total the library reports once it knows it (``on_total=bar.total``)."""
    with progress_bar() as bar:
        task = bar.add_task(description, total=None)

        def advance(n: int = 1) -> None:
            bar.advance(task, n)

        def total(count: int) -> None:
            bar.update(task, total=count)

        yield Bar(advance, total)


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
        problem = class_name_problem(name)
        if problem is not None:
            raise ConfigError(f"--classes: {name!r}: {problem}")
    return classes


DatasetOption = Annotated[str, typer.Option("--dataset", "-d", help="FiftyOne dataset name.")]
export_app = typer.Typer(help="Export a dataset: LabelImg folders, Florence-2 JSONL.", no_args_is_help=True)
app.add_typer(export_app, name="export")


def error_table(title: str, errors: Sequence[AnnotationError]) -> None:
    """One table at the end (file, element, problem, value); one plain line per error off a terminal."""
    if not err_console.is_terminal:
        err_console.print(f"{title}:", highlight=False)
        for exc in errors:
            err_console.print(f"error: {exc}", highlight=False, soft_wrap=True, markup=False)
        return
    table = Table(title=title, title_style="bold red", show_lines=False)
    for column in ("file", "element", "problem", "value"):
        table.add_column(column, overflow="fold")
    for exc in errors:
        value = "" if exc.value is None else repr(exc.value)[:60]
        table.add_row(*(escape(cell) for cell in (exc.path, exc.element, exc.problem, value)))
    err_console.print(table)


RUNS_ROOT = Path("runs")


def is_run(folder: Path) -> bool:
    """A run folder holds the config it trained with, or the predictions of a model (a zero-shot run)."""
    return RunFolder(folder).is_run()


def run_dir(run: str, must_exist: bool = True) -> Path:
    """``--run NAME``: ``runs/NAME`` first; another path only when it is a run folder (see :func:`is_run`), so a
    data folder that shares a run's name is never taken for it. With ``must_exist=False`` (a new zero-shot run)
    a name that is no run yet becomes ``runs/NAME`` (a path with a slash stays as given)."""
    named, path = RUNS_ROOT / run, Path(run)
    for candidate in (named, path):
        if is_run(candidate):
            return candidate
    if not must_exist:
        return path if "/" in run else named
    known = (
        sorted(
            folder.relative_to(RUNS_ROOT).as_posix()
            for folder in RUNS_ROOT.glob("**/")
            if folder != RUNS_ROOT and is_run(folder) and not RunFolder.inside_checkpoints(folder)
        )
        if RUNS_ROOT.is_dir()
        else []
    )
    listed = ", ".join(known[:20]) + (f" and {len(known) - 20} more" if len(known) > 20 else "") or "none"
    raise ConfigError(f"--run {run}: no such run (runs in {RUNS_ROOT}/: {listed})")


def workers_default() -> int:
    return max(1, os.cpu_count() or 1)


# --- tiles: the options of predict, prelabel and serve ------------------------------------------------------------

TileOption = Annotated[
    str | None,
    typer.Option(
        help="Slice each image into tiles of SIZE or WIDTHxHEIGHT px and merge their boxes back ('none': whole "
        "images). Default: the tiling of the run's export."
    ),
]
OverlapOption = Annotated[
    float | None, typer.Option(help="--tile: overlap of neighbouring tiles, a share of the tile side (default 0.2).")
]
TileAndFullOption = Annotated[
    bool, typer.Option(help="With a tiling: also predict each whole image and merge its boxes in.")
]


def tiling_choice(tile: str | None, overlap: float | None, tile_and_full: bool) -> Tiling | Literal["export"] | None:
    """``--tile``/``--overlap`` as asked: a tiling, None (whole images) or "export" (the run's export's tiling)."""
    if tile is None:
        if overlap is not None:
            raise ConfigError("--overlap needs --tile (the tile size); without it the run's export tiling is used")
        return "export"
    tiling = Tiling.parse(tile, 0.2 if overlap is None else overlap)
    if tiling is None and tile_and_full:
        raise ConfigError("--tile-and-full needs a tiling (--tile SIZE)")
    return tiling
