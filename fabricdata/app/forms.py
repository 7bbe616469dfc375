"""Pieces every operator form and result shares: the refusal notice, a run picker, the result message.

A form that cannot be run shows why as an error notice marked invalid: the App disables its Execute button, and
FiftyOne's execution API refuses it with the same sentence (``ExecutionError: ... Reason: <why>``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import fiftyone.operators.types as types

from fabricdata.app.context import RunChoice


def operator_config(name: str, label: str, description: str, icon: str, *, delegated: bool = False) -> Any:
    """An operator's config: ``delegated`` ones (they train or predict) always run through ``fiftyone delegated
    launch``; the others run at once (or delegated where the user asks) and build their form dynamically."""
    import fiftyone.operators as foo

    if delegated:
        return foo.OperatorConfig(
            name=name, label=label, description=description, icon=icon, allow_delegated_execution=True,
            allow_immediate_execution=False, default_choice_to_delegated=True,
        )  # fmt: skip
    return foo.OperatorConfig(
        name=name, label=label, description=description, icon=icon, dynamic=True, allow_immediate_execution=True,
        allow_delegated_execution=True,
    )  # fmt: skip


def refuse(inputs: Any, why: str, name: str = "refused") -> Any:
    """Add an error notice that makes the form invalid; returns the form's property."""
    notice = inputs.str(name, label=why, view=types.Error(label=why))
    notice.invalid = True
    notice.error_message = why
    return types.Property(inputs)


def run_picker(
    inputs: Any, name: str, runs: Sequence[RunChoice], label: str, description: str, required: bool = True
) -> None:
    """An autocomplete of runs by name (the value is the run's absolute folder, so a delegated run finds it
    wherever its executor starts)."""
    choices = types.AutocompleteView(label=label, description=description)
    for run in runs:
        choices.add_choice(str(run.folder), label=run.name, description=str(run.folder))
    inputs.enum(name, choices.values(), required=required, label=label, description=description, view=choices)


def result_outputs(ctx: Any, lists: Sequence[tuple[str, str]] = ()) -> Any:
    """The output form: the message (Markdown), then one list per ``(key, label)`` (files written, conflicts) that
    the result fills (all of them before there is a result)."""
    outputs = types.Object()
    outputs.str("message", label="Result", view=types.MarkdownView())
    results = ctx.results or {}
    for key, label in lists:
        if not results or results.get(key):
            outputs.list(key, types.String(), label=label)
    return types.Property(outputs, view=types.View(label="fabricdata"))
