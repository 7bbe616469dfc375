"""*Open a run's view*: a picker of the runs that have saved views in the dataset (review's mistakes, prelabel's
drafts to verify, the audit's views), then of that run's views; the App switches to the chosen one."""

from __future__ import annotations

from typing import Any

import fiftyone.operators as foo
import fiftyone.operators.types as types

from fabricdata.app.context import refusal, require_ours, run_views
from fabricdata.app.forms import refuse
from fabricdata.core.errors import DatasetError


class OpenRunView(foo.Operator):  # type: ignore[misc]
    """Open one of a run's saved views (``fabricdata app --view R-missed``, from inside the App)."""

    @property
    def config(self) -> Any:
        return foo.OperatorConfig(
            name="open_run_view",
            label="Open a run's view",
            description="Missed, confused, to-verify, audit ... views of a run",
            dynamic=True,
            icon="travel_explore",
        )

    def resolve_input(self, ctx: Any) -> Any:
        inputs = types.Object()
        why = refusal(ctx.dataset)
        groups = run_views(ctx.dataset.list_saved_views()) if why is None else {}
        if why is None and not groups:
            why = "no run has views in this dataset yet: review a run ('Review a run') or prelabel a folder"
        if why is not None:
            return refuse(inputs, why)
        runs = types.DropdownView(label="Run")
        for run in groups:
            runs.add_choice(run, label=run)
        chosen = ctx.params.get("run") or next(iter(groups))
        inputs.enum("run", runs.values(), default=chosen, required=True, label="Run", view=runs)
        views = types.RadioGroup(label="View")
        for name in groups.get(chosen, []):
            views.add_choice(name, label=name)
        default = views.values()[0] if views.values() else None
        inputs.enum("view", views.values(), default=default, required=True, label="View", view=views)
        return types.Property(inputs, view=types.View(label="Open a run's view"))

    def execute(self, ctx: Any) -> dict[str, Any]:
        require_ours(ctx)
        name = ctx.params["view"]
        if not ctx.dataset.has_saved_view(name):
            raise DatasetError(f"dataset {ctx.dataset.name!r} has no saved view {name!r}")
        ctx.ops.set_view(name=name)
        return {"view": name}
