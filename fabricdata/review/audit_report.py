"""The written side of an audit: ``audit.json`` (the summary, read again by ``--rescore`` for the folds) and
``audit.md`` for the annotators: what each fold's model knew, the warnings, the issues per class, and the
commands to open each view, write the fixes back and score again."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from fabricdata.core.contracts import AuditFolder
from fabricdata.core.errors import ConfigError
from fabricdata.core.fileio import atomic_write_text
from fabricdata.review.audit import VIEW_PREFIX, AuditSummary, FoldInfo
from fabricdata.review.audit_scores import ISSUES

#: what each view holds, for the report
VIEW_MEANING = {
    "missing": "a sure prediction where no box is: a defect the annotator may have missed",
    "swapped": "a box a sure prediction of another class sits on: the class may be wrong",
    "mislocated": "a box whose best prediction of its class overlaps it poorly: it may be drawn in the wrong place",
    "spurious": "a box no prediction comes near: it may not be a defect",
    "worst": "every audited image, lowest label quality first",
}


def write_audit(folder: AuditFolder, summary: AuditSummary) -> None:
    """``audit.json`` and ``audit.md`` into the audit folder."""
    folder.root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder.summary, json.dumps(asdict(summary), indent=2) + "\n")
    atomic_write_text(folder.report, markdown(summary))


def read_folds(folder: AuditFolder) -> list[FoldInfo]:
    """The folds of an earlier audit (for ``--rescore``).

    Raises:
        ConfigError: the folder holds no audit.
    """
    path = folder.summary
    if not path.is_file():
        raise ConfigError(f"{folder.root}: no audit there ({path.name} missing); run 'fabricdata audit' first")
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
        return [FoldInfo(**row) for row in data["folds"]]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: not an audit summary ({exc.__class__.__name__}: {exc})") from None


def _number(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown(summary: AuditSummary) -> str:
    """The report (see the module docstring)."""
    d = summary.dataset
    lines = [
        f"# Label audit {summary.name} (dataset {d})",
        "",
        f"{summary.images} images audited: {summary.boxes} boxes scored against {summary.predictions} out-of-fold "
        f"predictions, each image predicted by a model that never saw it. AP50 of all predictions against the "
        f"labels: {summary.ap50:.3f}.",
        "",
        "## The models behind the scores",
        "",
        "| fold | predicted by | images trained on | validation images | held-out images | best val loss | AP50 |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in summary.folds:
        trained = "-" if f.train_images is None else str(f.train_images)
        valid = "-" if f.valid_images is None else str(f.valid_images)
        lines.append(
            f"| {f.fold} | {f.source} | {trained} | {valid} | {f.held_out} | {_number(f.best_val_loss, 4)} "
            f"| {_number(f.ap50)} |"
        )
    sure = summary.sure_confidence
    lines += [
        "",
        f"Confidences are calibrated against the labels (isotonic regression of 'matches a box' on confidence). "
        f"A prediction counts as sure at a measured precision of {summary.options['sure']:g} or more"
        + (f" (confidence {sure:.3f} and up)." if sure is not None else ": none reached it."),
        "",
    ]
    lines += [f"**Warning:** {line}" for line in summary.warnings] + ([""] if summary.warnings else [])
    lines += _issues_table(summary) + _views(summary)
    lines += [
        "## After fixing",
        "",
        "```bash",
        f"fabricdata writeback --dataset {d}",
        f"fabricdata audit --name {summary.name} --rescore --dataset {d}",
        "```",
        "",
    ]
    return "\n".join(lines)


def _issues_table(summary: AuditSummary) -> list[str]:
    classes = sorted({name for per_class in summary.counts.values() for name in per_class})
    lines = ["## Issues per class", "", "| class | " + " | ".join(ISSUES) + " |", "|---|" + "---|" * len(ISSUES)]
    for name in classes:
        lines.append(f"| {name} | " + " | ".join(str(summary.counts[i].get(name, 0)) for i in ISSUES) + " |")
    totals = [str(sum(summary.counts[i].values())) for i in ISSUES]
    lines += ["| all | " + " | ".join(totals) + " |", ""]
    return lines


def _views(summary: AuditSummary) -> list[str]:
    lines = ["## Views, worst first", ""]
    for view, count in summary.views.items():
        meaning = VIEW_MEANING.get(view.removeprefix(VIEW_PREFIX), "")
        lines += [f"- `{view}` ({count} images): {meaning}", "", "  ```bash"]
        lines += [f"  fabricdata app --dataset {summary.dataset} --view {view}", "  ```", ""]
    return lines
