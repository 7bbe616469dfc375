"""What the operators read from the App's execution context, in one small adapter: whether the dataset is one of
ours, which samples a target names, where the runs are, which saved views belong to which run, and progress.

FiftyOne passes an ``ExecutionContext`` (``ctx``): the dataset, the current view, the selected samples and labels,
the form's values (``ctx.params``), and ``ctx.set_progress``. Nothing here imports fiftyone at module level.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fabricdata.app.plugins import RUNS_ENV
from fabricdata.core.contracts import RunFolder
from fabricdata.core.errors import DatasetError
from fabricdata.store.dataset import F_ANNOTATION_PATH, F_LABELS_HASH

#: fields every dataset fabricdata made has (import, prelabel)
OUR_FIELDS = (F_ANNOTATION_PATH, F_LABELS_HASH)
#: the saved views a run's review and prelabel make, by suffix (``R-missed`` ...)
RUN_VIEW_KINDS = (
    "false-positives",
    "missed",
    "mislocated",
    "confused",
    "possible-missing",
    "possible-spurious",
    "regressions",
    "fixed",
    "to-verify",
)
#: the label audit's views (``audit-missing`` ...) form one group of their own
AUDIT = "audit"


def refusal(dataset: Any) -> str | None:
    """Why an operator cannot work on ``dataset`` (None: it can): no dataset open, or one fabricdata never
    imported into (no label files to write back, no drafts)."""
    if dataset is None:
        return "open a dataset first"
    schema = dataset.get_field_schema()
    missing = [name for name in OUR_FIELDS if name not in schema]
    if not missing:
        return None
    return (
        f"dataset {dataset.name!r} has no fabricdata fields yet ({', '.join(missing)}): bring its label files in "
        f"with 'fabricdata import FOLDER --dataset {dataset.name}' first"
    )


def require_ours(ctx: Any) -> str:
    """The dataset's name, or DatasetError saying why the operator refuses it.

    Raises:
        DatasetError: no dataset, or one without fabricdata's fields.
    """
    problem = refusal(ctx.dataset)
    if problem is not None:
        raise DatasetError(problem)
    return str(ctx.dataset.name)


def target_ids(ctx: Any) -> list[str] | None:
    """The sample ids the form's target names (FiftyOne's view target: dataset, current view, selection); None
    for the whole dataset. Ids, never the view's labels: a filtered view shows only some boxes of a sample."""
    import fiftyone as fo

    target = ctx.target_view()
    if isinstance(target, fo.Dataset):
        return None
    return [str(i) for i in target.values("id")]


def progress(ctx: Any, label: str) -> tuple[Callable[[int], None], Callable[[int], None]]:
    """``(advance, on_total)`` callbacks for a library function's progress, reported through
    ``ctx.set_progress`` at most twice a second (a delegated run shows it in the App's runs list)."""
    state = {"total": 0, "done": 0, "shown": 0.0}

    def on_total(total: int) -> None:
        state["total"] = total

    def advance(step: int) -> None:
        state["done"] += step
        now = time.monotonic()
        if state["total"] and (now - state["shown"] >= 0.5 or state["done"] >= state["total"]):
            state["shown"] = now
            share = min(1.0, state["done"] / state["total"])
            ctx.set_progress(progress=share, label=f"{label}: {int(state['done'])} of {int(state['total'])}")

    return advance, on_total


def runs_root() -> Path:
    """Where the runs are: ``fabricdata app --runs`` (``FABRICDATA_RUNS``), else ``runs`` here."""
    return Path(os.environ.get(RUNS_ENV) or "runs").resolve()


@dataclass(frozen=True, slots=True)
class RunChoice:
    """A run folder below the runs root, by its name there (``sweep/r8``) and its absolute folder."""

    name: str
    folder: Path

    @property
    def review(self) -> dict[str, Any] | None:
        """The run's ``review.json`` (None: never reviewed, or unreadable)."""
        path = RunFolder(self.folder).review
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None


def run_choices(root: Path | None = None, need: str | None = None, given: Sequence[str | None] = ()) -> list[RunChoice]:
    """Run folders (``config.yaml`` or ``predictions.jsonl``) below the runs root, by name; ``need``: only those
    holding that file (``predictions.jsonl``, ``review.json``). ``given``: folders a form already chose (absolute),
    kept as choices wherever they are, so a delegated run validates in an executor started elsewhere."""
    root = root or runs_root()
    found = set()
    if root.is_dir():
        found = {
            path.parent
            for pattern in (RunFolder.CONFIG, RunFolder.PREDICTIONS)
            for path in root.rglob(pattern)
            if not RunFolder.inside_checkpoints(path.relative_to(root)) and len(path.relative_to(root).parts) <= 4
        }
    runs = [RunChoice(folder.relative_to(root).as_posix(), folder) for folder in sorted(found) if folder != root]
    for folder in (Path(text) for text in given if text):
        if folder.is_absolute() and RunFolder(folder).is_run() and folder not in found:
            runs.append(RunChoice(folder.as_posix(), folder))
    return [run for run in runs if need is None or (run.folder / need).is_file()]


def run_views(saved_views: list[str]) -> dict[str, list[str]]:
    """The dataset's saved views grouped by run (``r1-missed`` under ``r1``), the audit's under ``audit``;
    views that belong to no run (``validate-*``, a user's own) are left out."""
    groups: dict[str, list[str]] = {}
    for name in sorted(saved_views):
        if name.startswith(f"{AUDIT}-"):
            groups.setdefault(AUDIT, []).append(name)
            continue
        for kind in RUN_VIEW_KINDS:
            if name.endswith(f"-{kind}") and len(name) > len(kind) + 1:
                groups.setdefault(name[: -len(kind) - 1], []).append(name)
                break
    return groups
