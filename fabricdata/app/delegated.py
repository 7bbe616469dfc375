"""The long operators: *Prelabel a folder* (runs the model) and *Review a run* (evaluates every prediction).

Both are always delegated (FiftyOne's delegated operations): the App queues them, and a ``fiftyone delegated
launch`` started with the same plugins folder runs them (``fabricdata app`` prints that command), reporting progress
to the App's runs list. Their forms take the options of ``fabricdata prelabel`` and ``fabricdata review``, with the
same defaults (the library's constants); runs are picked from the runs folder by name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fiftyone.operators as foo
import fiftyone.operators.types as types

from fabricdata.app.context import progress, refusal, require_ours, run_choices, runs_root
from fabricdata.app.forms import operator_config, refuse, result_outputs, run_picker
from fabricdata.assist.prelabel import DEFAULT_MIN_CONFIDENCE, PrelabelReport, prelabel
from fabricdata.core.contracts import RunFolder
from fabricdata.core.errors import ConfigError
from fabricdata.core.wording import plural
from fabricdata.review.review import MIN_CONFIDENCE, ReviewSummary, review

#: the CLI's defaults of options that have no library constant
PRELABEL_BATCH = 8
REVIEW_IOU = 0.5


def prelabel_message(report: PrelabelReport, dataset: str) -> str:
    """What ``fabricdata prelabel`` prints, in one line."""
    parts = [f"{plural(report.added, 'image')} prelabeled with {plural(report.boxes, 'draft box', 'draft boxes')}"]
    if report.known:
        parts.append(f"{report.known} already in {dataset!r}")
    if report.labeled:
        parts.append(f"{report.labeled} with a label file (use 'fabricdata import')")
    if report.unreadable:
        parts.append(f"{plural(len(report.unreadable), 'unreadable image')}")
    return "; ".join(parts) + f"; verify them in the view {report.view}"


class Prelabel(foo.Operator):  # type: ignore[misc]
    """``fabricdata prelabel FOLDER --run R``: new photos in, with a run's boxes as drafts (delegated)."""

    @property
    def config(self) -> Any:
        return operator_config(
            "prelabel",
            "Prelabel a folder",
            "Add a folder's new photos with a run's boxes as drafts to verify (runs the model)",
            "auto_fix_high",
            delegated=True,
        )

    def resolve_delegation(self, ctx: Any) -> bool:
        return True

    def resolve_input(self, ctx: Any) -> Any:
        inputs = types.Object()
        why = refusal(ctx.dataset)
        runs = run_choices(given=[ctx.params.get("run")])
        if why is None and not runs:
            why = f"no runs in {runs_root()} ('fabricdata app --runs DIR' names the folder that holds them)"
        if why is not None:
            return refuse(inputs, why)
        inputs.str("folder", required=True, label="Folder", description="Folder of new photos (any depth).")
        run_picker(inputs, "run", runs, "Run", "Run whose model drafts the boxes.")
        inputs.str("model", label="Model", description="Draft with this model (merged or base) instead.")
        inputs.float("min_confidence", default=DEFAULT_MIN_CONFIDENCE, min=0.0, max=1.0, label="Minimum confidence",
                      description="Boxes below this confidence are not drafted.")  # fmt: skip
        inputs.int("batch_size", default=PRELABEL_BATCH, min=1, label="Batch size", description="Images per call.")
        inputs.int("max_new_tokens", label="Max new tokens", description="Default: the run's label budget.")
        return types.Property(inputs, view=types.View(label="Prelabel a folder"))

    def execute(self, ctx: Any) -> dict[str, Any]:
        name = require_ours(ctx)
        folder = Path(ctx.params["folder"]).expanduser()
        if not folder.is_dir():
            raise ConfigError(f"{folder}: not a folder")
        advance, on_total = progress(ctx, "prelabel")
        report = prelabel(
            folder,
            name,
            Path(ctx.params["run"]),
            model=ctx.params.get("model") or None,
            min_confidence=float(ctx.params.get("min_confidence", DEFAULT_MIN_CONFIDENCE)),
            batch_size=int(ctx.params.get("batch_size") or PRELABEL_BATCH),
            progress=advance,
            on_total=on_total,
            max_new_tokens=ctx.params.get("max_new_tokens") or None,
        )
        return {"message": prelabel_message(report, name), "view": report.view, "unreadable": report.unreadable}

    def resolve_output(self, ctx: Any) -> Any:
        return result_outputs(ctx, (("unreadable", "Unreadable images"),))


def review_message(summary: ReviewSummary) -> str:
    """The review's figures in one line, and its views."""
    return (
        f"reviewed {summary.run} on {plural(summary.images, 'image')}: mAP {summary.map:.3f}, AP50 {summary.ap50:.3f}; "
        f"F1 {summary.f1:.3f} (precision {summary.precision:.3f}, recall {summary.recall:.3f}) at confidence "
        f"{summary.best_f1_threshold:.3f}; views: {', '.join(summary.views)}"
    )


class ReviewRun(foo.Operator):  # type: ignore[misc]
    """``fabricdata review --run R``: a run's predictions evaluated, its mistakes as saved views (delegated)."""

    @property
    def config(self) -> Any:
        return operator_config(
            "review_run",
            "Review a run",
            "Evaluate a run's predictions and save its mistakes as views",
            "rule",
            delegated=True,
        )

    def resolve_delegation(self, ctx: Any) -> bool:
        return True

    def resolve_input(self, ctx: Any) -> Any:
        inputs = types.Object()
        why = refusal(ctx.dataset)
        runs = run_choices(need=RunFolder.PREDICTIONS, given=[ctx.params.get("run")])
        if why is None and not runs:
            why = f"no run with {RunFolder.PREDICTIONS} in {runs_root()}: run 'fabricdata predict' first"
        if why is not None:
            return refuse(inputs, why)
        run_picker(inputs, "run", runs, "Run", "Run with predictions.jsonl.")
        reviewed = run_choices(need="review.json", given=[ctx.params.get("compare")])
        run_picker(inputs, "compare", reviewed, "Compare with", "An earlier, reviewed run.", required=False)
        inputs.float("iou", default=REVIEW_IOU, min=0.05, max=0.95, label="IoU", description="IoU of a match.")
        inputs.float("min_confidence", default=MIN_CONFIDENCE, min=0.0, max=1.0, label="Minimum confidence",
                      description="Predictions below this confidence are not stored.")  # fmt: skip
        return types.Property(inputs, view=types.View(label="Review a run"))

    def execute(self, ctx: Any) -> dict[str, Any]:
        name = require_ours(ctx)
        compare = ctx.params.get("compare") or None
        summary = review(
            name,
            Path(ctx.params["run"]),
            Path(compare) if compare else None,
            float(ctx.params.get("iou", REVIEW_IOU)),
            progress=lambda text: ctx.set_progress(label=text),
            min_confidence=float(ctx.params.get("min_confidence", MIN_CONFIDENCE)),
        )
        message = review_message(summary)
        if summary.unmatched_images:
            message += f"; {plural(len(summary.unmatched_images), 'image')} of its predictions not in {name!r}"
        return {"message": message, "views": list(summary.views)}

    def resolve_output(self, ctx: Any) -> Any:
        return result_outputs(ctx, (("views", "Views"),))
