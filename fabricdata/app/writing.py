"""The operators that change label files: *Write back to label files* and *Verify drafts*.

Both run immediately (seconds), or as a delegated operation where the annotator chooses to schedule them. Each calls
one library function (:func:`fabricdata.store.writeback.writeback`, :mod:`fabricdata.assist.verify`); what the App
selected becomes sample or label ids in :mod:`fabricdata.app.context`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import fiftyone.operators as foo
import fiftyone.operators.types as types

from fabricdata.app.context import progress, refusal, require_ours, target_ids
from fabricdata.app.forms import operator_config, refuse, result_outputs
from fabricdata.assist.verify import Verdict, accept_drafts, reject_proposals
from fabricdata.core.wording import plural
from fabricdata.store.dataset import GT_FIELD
from fabricdata.store.writeback import WriteBackReport, writeback

_LISTS = (("written", "Files written"), ("conflicts", "Not written (left as they are)"))


def write_back(ctx: Any, dataset_name: str, samples: Sequence[str] | None) -> dict[str, Any]:
    """Write back ``samples`` (ids; None: every sample) with progress; the result the App shows."""
    advance, on_total = progress(ctx, "write-back")
    report = writeback(dataset_name, progress=advance, on_total=on_total, samples=samples)
    return writeback_result(report)


def writeback_result(report: WriteBackReport) -> dict[str, Any]:
    """``message`` (what happened, in one line), ``written`` (files) and ``conflicts`` (``FILE: problem``)."""
    conflicts = [exc.message for exc in report.errors]
    parts = []
    if report.written:
        parts.append(f"wrote {plural(len(report.written), 'label file')}")
    if conflicts:
        parts.append(f"{plural(len(conflicts), 'file')} not written (conflicts, left as they are)")
    if report.recovered:
        parts.append(f"recorded {plural(report.recovered, 'file')} an interrupted write-back had written")
    if report.rounded:
        parts.append(f"{plural(report.rounded, 'edit')} rounded to the file's own numbers")
    if not parts:
        parts.append("nothing to write")
    parts.append(f"{report.unchanged} unchanged")
    message = "; ".join(parts)
    return {"message": message[0].upper() + message[1:], "written": list(report.written), "conflicts": conflicts}


class WriteBack(foo.Operator):  # type: ignore[misc]
    """Write the labels fixed in the App back to their LabelImg files: the dataset, the current view or the
    selected samples (``fabricdata writeback``; files changed on disk are listed, never overwritten)."""

    @property
    def config(self) -> Any:
        return operator_config(
            "writeback",
            "Write back to label files",
            "Write App edits back to the LabelImg files (VOC, YOLO, CreateML), atomically",
            "save",
        )

    def resolve_input(self, ctx: Any) -> Any:
        inputs = types.Object()
        why = refusal(ctx.dataset)
        if why is not None:
            return refuse(inputs, why)
        inputs.view_target(ctx, action_description="Write back", default_target="CURRENT_VIEW")
        inputs.md(
            "Only files whose labels changed are written, in their own format. A file changed on disk since it "
            "was imported (or saved by LabelImg meanwhile) is listed and left as it is: re-import it, or use "
            "`fabricdata writeback --force`.",
            name="about",
        )
        return types.Property(inputs, view=types.View(label="Write back to label files"))

    def execute(self, ctx: Any) -> dict[str, Any]:
        name = require_ours(ctx)
        result = write_back(ctx, name, target_ids(ctx))
        ctx.ops.reload_samples()
        return result

    def resolve_output(self, ctx: Any) -> Any:
        return result_outputs(ctx, _LISTS)


ACCEPT, REJECT = "accept", "reject"


def verdict_message(decision: str, verdict: Verdict) -> str:
    if decision == ACCEPT:
        text = f"accepted {plural(len(verdict.samples), 'draft')} (tagged verified)"
        skipped = f"{plural(verdict.skipped, 'selected sample')} not an unverified draft"
    else:
        text = f"rejected {plural(verdict.boxes_removed, 'drafted box', 'drafted boxes')}"
        skipped = f"{plural(verdict.skipped, 'selected box', 'selected boxes')} not a draft (kept)"
    return text + (f"; {skipped}" if verdict.skipped else "")


class VerifyDrafts(foo.Operator):  # type: ignore[misc]
    """Accept the selected prelabeled samples (tag ``verified``) or reject the selected drafted boxes (delete the
    proposals), then optionally write back their label files."""

    @property
    def config(self) -> Any:
        return operator_config(
            "verify_drafts",
            "Verify drafts",
            "Accept prelabeled images (tag verified) or reject drafted boxes, then write back",
            "fact_check",
        )

    def resolve_input(self, ctx: Any) -> Any:
        inputs = types.Object()
        why = refusal(ctx.dataset)
        if why is not None:
            return refuse(inputs, why)
        choices = types.RadioGroup()
        choices.add_choice(ACCEPT, label="Accept the selected drafts", description="tag the images 'verified'")
        choices.add_choice(REJECT, label="Reject the selected drafted boxes", description="delete those proposals")
        decision = ctx.params.get("decision") or (REJECT if ctx.selected_labels and not ctx.selected else ACCEPT)
        inputs.enum("decision", choices.values(), default=decision, required=True, label="Decision", view=choices)
        chosen = self._selection(ctx, decision)
        if not chosen:
            what = "samples (or open one)" if decision == ACCEPT else "boxes of ground_truth"
            return refuse(inputs, f"select the {what} to {decision} first", name="nothing")
        inputs.bool("writeback", default=True, label="Then write back their label files", view=types.CheckboxView())
        return types.Property(inputs, view=types.View(label="Verify drafts"))

    @staticmethod
    def _selection(ctx: Any, decision: str) -> list[str]:
        """Sample ids (accept: the selection, else the sample open in the modal) or label ids (reject)."""
        if decision == ACCEPT:
            return list(ctx.selected) or ([ctx.current_sample] if ctx.current_sample else [])
        return [label["label_id"] for label in ctx.selected_labels if label.get("field") == GT_FIELD]

    def execute(self, ctx: Any) -> dict[str, Any]:
        name = require_ours(ctx)
        decision = ctx.params.get("decision", ACCEPT)
        chosen = self._selection(ctx, decision)
        verdict = accept_drafts(name, chosen) if decision == ACCEPT else reject_proposals(name, chosen)
        result: dict[str, Any] = {"written": [], "conflicts": []}
        message = verdict_message(decision, verdict)
        if ctx.params.get("writeback", True) and verdict.samples:
            result = write_back(ctx, name, verdict.samples)
            message += "; write-back: " + result["message"][0].lower() + result["message"][1:]
        ctx.ops.reload_samples()
        return {**result, "message": message[0].upper() + message[1:]}

    def resolve_output(self, ctx: Any) -> Any:
        return result_outputs(ctx, _LISTS)
