"""The runs panel: ``fabricdata runs`` in the App, a run's views a click away, and a confidence slider.

The table is :func:`fabricdata.review.runs.table` (differing config keys, losses, mAP, AP per class). Opening a row
lists the run's saved views as buttons. The slider sets a confidence threshold: precision, recall and F1 per class
at that threshold come from the run's stored evaluation (:mod:`fabricdata.review.threshold`, one aggregation, no
new evaluation), and the grid shows only the run's predictions at or above it. It starts at the run's best-F1
confidence, where its figures are those of ``review.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fiftyone.operators as foo
import fiftyone.operators.types as types

from fabricdata.app.context import RunChoice, refusal, run_choices, run_views, runs_root
from fabricdata.core.errors import ConfigError
from fabricdata.review.runs import load_run, sort_runs, table
from fabricdata.review.threshold import ALL, figures_at, read_evaluation

_FIGURES = ("label", "truths", "predicted", "hits", "precision", "recall", "f1")
_HEADERS = ("class", "boxes", "predicted", "hits", "precision", "recall", "F1")


def runs_table(root: Path) -> tuple[list[str], list[dict[str, str]], list[str]]:
    """Header, rows (``c0``.. keys) and run names of the runs below ``root``: trained runs and runs that only
    predicted (a zero-shot baseline); an unreadable config leaves its run out."""
    rows = []
    for run in run_choices(root):
        try:
            rows.append(load_run(run.folder, root))
        except ConfigError:
            continue
    if not rows:
        return [], [], []
    rows = sort_runs(rows, "name")
    header, cells = table(rows)
    return header, [{f"c{i}": cell for i, cell in enumerate(line)} for line in cells], [row.name for row in rows]


def evaluated_run(run: RunChoice, dataset: Any) -> dict[str, Any] | None:
    """The run's review.json when it reviewed ``dataset`` and the evaluation is still stored (None otherwise)."""
    review = run.review
    if not review or review.get("dataset") != dataset.name or not dataset.has_evaluation(review.get("eval_key")):
        return None
    return review


def threshold_rows(dataset: Any, review: dict[str, Any], threshold: float) -> list[dict[str, Any]]:
    """Per class and in all, the figures at ``threshold`` from the stored evaluation, rounded for display."""
    evaluation = read_evaluation(dataset, review["pred_field"], review["eval_key"])
    rows = []
    for figures in figures_at(evaluation, threshold, list(dataset.default_classes or [])):
        values = [getattr(figures, key) for key in _FIGURES]
        rows.append({key: (f"{v:.3f}" if isinstance(v, float) else v) for key, v in zip(_FIGURES, values, strict=True)})
    return rows


class RunsPanel(foo.Panel):  # type: ignore[misc]
    """The runs side by side, each run's views, and precision / recall / F1 at a confidence threshold."""

    @property
    def config(self) -> Any:
        return foo.PanelConfig(
            name="fabricdata_runs",
            label="fabricdata runs",
            icon="leaderboard",
            help_markdown="Fine-tune runs (`fabricdata runs`), their views, and a confidence threshold.",
        )

    def on_load(self, ctx: Any) -> None:
        header, rows, names = runs_table(runs_root()) if refusal(ctx.dataset) is None else ([], [], [])
        ctx.panel.state.header = header
        ctx.panel.state.rows = rows
        ctx.panel.state.names = names
        reviewed = [name for name in names if evaluated_run(self._run(name), ctx.dataset)]
        first = (reviewed or names)[:1]
        self._select(ctx, first[0] if first else None)

    def on_change_dataset(self, ctx: Any) -> None:
        self.on_load(ctx)

    @staticmethod
    def _run(name: str) -> RunChoice:
        return RunChoice(name, runs_root() / name)

    def _select(self, ctx: Any, name: str | None) -> None:
        ctx.panel.state.run = name
        ctx.panel.state.view = None
        review = evaluated_run(self._run(name), ctx.dataset) if name else None
        ctx.panel.state.review = review
        if review is not None:
            self._at(ctx, float(review["best_f1_threshold"]))

    def _at(self, ctx: Any, threshold: float) -> None:
        ctx.panel.state.threshold = threshold
        ctx.panel.state.figures = threshold_rows(ctx.dataset, ctx.panel.state.review, threshold)

    def pick_run(self, ctx: Any) -> None:
        """Row action: the run of the clicked row becomes the panel's run."""
        names = ctx.panel.state.names or []
        row = int(ctx.params.get("row", -1))
        if 0 <= row < len(names):
            self._select(ctx, names[row])

    def open_view(self, ctx: Any) -> None:
        name = ctx.params.get("view")
        if name and ctx.dataset.has_saved_view(name):
            ctx.panel.state.view = name
            ctx.ops.set_view(name=name)

    def change_threshold(self, ctx: Any) -> None:
        """Slider: figures at the new threshold, and the grid shows the run's predictions at or above it."""
        review = ctx.panel.state.review
        value = ctx.params.get("value")
        if review is None or value is None:
            return
        self._at(ctx, float(value))
        self._filter_grid(ctx, review, float(value))

    def reset_threshold(self, ctx: Any) -> None:
        review = ctx.panel.state.review
        if review is not None:
            self._at(ctx, float(review["best_f1_threshold"]))
            self._filter_grid(ctx, review, float(review["best_f1_threshold"]))

    @staticmethod
    def _filter_grid(ctx: Any, review: dict[str, Any], threshold: float) -> None:
        import fiftyone as fo

        view_name = ctx.panel.state.view
        base = ctx.dataset.load_saved_view(view_name) if view_name else ctx.dataset.exists(review["pred_field"])
        confident = fo.ViewField("confidence") >= threshold - 1e-9
        ctx.ops.set_view(base.filter_labels(review["pred_field"], confident, only_matches=False))

    def render(self, ctx: Any) -> Any:
        panel = types.Object()
        why = refusal(ctx.dataset)
        if why is not None:
            panel.md(f"**fabricdata runs**: {why}", name="refused")
            return types.Property(panel, view=types.GridView(orientation="vertical"))
        self._render_table(ctx, panel)
        self._render_run(ctx, panel)
        return types.Property(panel, view=types.GridView(orientation="vertical", gap=2))

    def _render_table(self, ctx: Any, panel: Any) -> None:
        header = ctx.panel.state.header or []
        if not header:
            panel.md(f"No runs in `{runs_root()}` (`fabricdata app --runs DIR` names the folder).", name="no_runs")
            return
        view = types.TableView()
        for i, title in enumerate(header):
            view.add_column(f"c{i}", label=title)
        view.add_row_action("open", self.pick_run, label="Open", icon="open_in_new", tooltip="This run's views")
        panel.list("rows", types.Object(), view=view, label=f"Runs in {runs_root()}")

    def _render_run(self, ctx: Any, panel: Any) -> None:
        name = ctx.panel.state.run
        if not name:
            return
        review = ctx.panel.state.review
        run_name = (review or {}).get("run") or name.rsplit("/", 1)[-1]
        views = run_views(ctx.dataset.list_saved_views()).get(run_name, [])
        opened = f"**Run {name}**: " + ("open one of its views" if views else "no saved views in this dataset")
        panel.md(opened, name="run_heading")  # not "run": that is the state key of the run's name
        buttons = panel.h_stack("views", align_x="left", gap=1)
        for view in views:
            buttons.btn(f"view_{view}", label=view[len(run_name) + 1 :], on_click=self.open_view, params={"view": view})
        if review is None:
            panel.md("Not reviewed on this dataset: no confidence threshold (review it first).", name="unreviewed")
            return
        self._render_threshold(ctx, panel, review)

    def _render_threshold(self, ctx: Any, panel: Any, review: dict[str, Any]) -> None:
        threshold = float(ctx.panel.state.threshold)
        figures = ctx.panel.state.figures or []
        overall = next((row for row in figures if row["label"] == ALL), None)
        slider = types.SliderView(label="Confidence", view_multiple_of=0.01, value_precision=2)
        panel.float("threshold", default=threshold, min=0.0, max=1.0, view=slider, on_change=self.change_threshold)
        best = float(review["best_f1_threshold"])
        if overall is not None:
            panel.md(
                f"At confidence **{threshold:.2f}**: precision {overall['precision']}, recall {overall['recall']}, "
                f"F1 **{overall['f1']}** (all classes). Best F1 {float(review['f1']):.3f} at {best:.3f} "
                "(review.json).",
                name="summary",
            )
        panel.btn("reset", label=f"Back to the best-F1 confidence ({best:.3f})", on_click=self.reset_threshold)
        table_view = types.TableView()
        for key, title in zip(_FIGURES, _HEADERS, strict=True):
            table_view.add_column(key, label=title)
        panel.list("figures", types.Object(), view=table_view, label="Per class at this confidence")
