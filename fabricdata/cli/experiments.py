"""Commands for experiments: sweep (a grid of fine-tunes) and runs (runs side by side)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer
from rich.table import Table

from fabricdata.cli.common import DatasetOption, app, console, err_console, progress_bar
from fabricdata.core.contracts import RunFolder
from fabricdata.core.errors import ConfigError

if TYPE_CHECKING:
    from fabricdata.review.runs import RunRow, SortKey
    from finetune.config import TrainConfig
    from finetune.sweep import PlannedRun

RunsRoot = Annotated[Path, typer.Option("--root", help="Folder that holds the runs.")]


@app.command()
def sweep(
    name: Annotated[str, typer.Option("--name", help="Sweep name: its runs go to ROOT/NAME/<combination>/.")],
    grid: Annotated[
        list[str], typer.Option("--grid", help="key=v1,v2,... to sweep (repeatable), e.g. --grid lora.r=8,16,32.")
    ],
    config: Annotated[Path | None, typer.Argument(help="YAML config shared by every run (optional).")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Fixed override for every run: key=value.")] = None,
    zip_: Annotated[bool, typer.Option("--zip", help="Pair the grids' values instead of their product.")] = False,
    review: Annotated[
        bool, typer.Option(help="Predict the validation split and review each run into the dataset (mAP).")
    ] = False,
    dataset: DatasetOption = "fabric",
    split: Annotated[str, typer.Option(help="Export split --review predicts.")] = "valid",
    root: RunsRoot = Path("runs"),
) -> None:
    """Train a grid of configs, each an ordinary run under ROOT/NAME/<combination>/, then compare them.

    Every combination is checked against the config model before anything trains; runs are named by the
    values that vary (r8-lr3e-6). A rerun skips finished runs and resumes an interrupted one. When only
    lora.r is swept, lora.alpha follows 2 x r unless the config or --set gives it. Any key can be swept:
    the LoRA targets (frozen or trained vision tower), the export (task order), the learning rate...

    Examples:

      fabricdata sweep --name rank --set model=models/tiny --set data=exports/v1 --grid lora.r=8,16,32

      fabricdata sweep --name lr base.yaml --grid lr=1e-6,3e-6,5e-6 --grid lora.targets=language,language+vision

      fabricdata sweep --name order base.yaml --grid data=exports/od-first,exports/mixed --review -d fabric
    """
    from finetune.sweep import parse_axis, plan, run_sweep

    planned = plan([parse_axis(spec) for spec in grid], root / name, config, set_ or (), zip_)
    console.print(f"sweep {name}: {len(planned)} run(s) under {root / name}")
    after = _reviewer(name, dataset, split) if review else None
    run_sweep(planned, _train_one, log=lambda text: console.print(text, highlight=False), after_run=after)
    show_runs(_load(root / name, "val_loss" if not review else "map"), f"sweep {name}")


def _train_one(config: TrainConfig, resume: bool, run_id: str) -> Any:
    from finetune.train import train as run_train

    with progress_bar() as bar:
        task = bar.add_task(Path(config.out).name, total=None)
        return run_train(
            config,
            resume=resume,
            log=bar.console.print,
            on_step=lambda done, total: bar.update(task, completed=done, total=total),
            run_id=run_id,
        )


def _reviewer(sweep_name: str, dataset: str, split: str) -> Any:
    def predict_and_review(run: PlannedRun) -> None:
        from fabricdata.review.review import review as run_review
        from finetune.predict import predict_run

        folder = Path(run.config.out)
        if RunFolder(folder).review.is_file():
            return
        with err_console.status(f"{run.name}: predicting {split}"):
            predict_run(folder, split=split)
        with err_console.status(f"{run.name}: reviewing") as status:
            summary = run_review(dataset, folder, progress=status.update, name=f"{sweep_name}-{run.name}")
        console.print(f"{run.name}: mAP {summary.map:.3f}, AP50 {summary.ap50:.3f} (views {summary.run}-*)")

    return predict_and_review


@app.command("runs")
def runs_(
    sweep: Annotated[str | None, typer.Option(help="Only the runs of this sweep (ROOT/SWEEP).")] = None,
    sort: Annotated[str, typer.Option(help="map, val_loss or name.")] = "map",
    plot: Annotated[Path | None, typer.Option(help="Write the overlaid loss curves (PNG) here.")] = None,
    md: Annotated[Path | None, typer.Option(help="Write the table as a Markdown report here.")] = None,
    root: RunsRoot = Path("runs"),
) -> None:
    """Runs side by side: the config keys that differ, best validation loss and its epoch, mAP / AP50 / AP per
    class where reviewed, training time and speed.

    Examples:

      fabricdata runs

      fabricdata runs --sweep rank --sort val_loss --plot rank.png --md rank.md
    """
    if sort not in ("map", "val_loss", "name"):
        raise ConfigError(f"--sort: expected map, val_loss or name, got {sort!r}")
    folder = root / sweep if sweep else root
    rows = _load(folder, cast("SortKey", sort))
    show_runs(rows, f"runs in {folder}")
    if plot is not None:
        from fabricdata.review.runs import plot_runs

        plot_runs(rows, plot)
        console.print(f"loss curves: {plot}")
    if md is not None:
        from fabricdata.core.fileio import atomic_write_text
        from fabricdata.review.runs import markdown

        atomic_write_text(md, markdown(rows, f"Runs in {folder}"))
        console.print(f"report: {md}")


def _load(folder: Path, sort: SortKey) -> list[RunRow]:
    from fabricdata.review.runs import load_runs, sort_runs

    return sort_runs(load_runs(folder), sort)


def show_runs(rows: list[RunRow], title: str) -> None:
    """The comparison table; cells fold, never ellipsize, so names and numbers stay whole. Off a terminal (a
    pipe, a log) it is printed as a Markdown table, one line per run."""
    from fabricdata.review.runs import markdown, table

    if not console.is_terminal:
        console.print(markdown(rows, title), highlight=False, soft_wrap=True, markup=False)
        return
    header, cells = table(rows)
    view = Table(title=title)
    for index, column in enumerate(header):
        view.add_column(column, overflow="fold", justify="left" if index == 0 else "right")
    for row in cells:
        view.add_row(*row)
    console.print(view)
