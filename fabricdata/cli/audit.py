"""The label audit: ``fabricdata audit`` (out-of-fold runs, scores, views for the annotators)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from fabricdata.cli.common import DatasetOption, app, console, counted, err_console

if TYPE_CHECKING:
    from fabricdata.loop.audit import AuditRequest
    from fabricdata.review.audit import AuditSummary


@app.command()
def audit(
    config: Annotated[Path | None, typer.Argument(help="YAML training config shared by every fold (optional).")] = None,
    folds: Annotated[int, typer.Option("--folds", help="K: runs trained on K-1 folds each, predicting the K-th.")] = 5,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Training override for every fold: key=value (as for train).")
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="Audit name: runs go to ROOT/audit-NAME/fold-K/ (default: dataset).")
    ] = None,
    predictions: Annotated[
        list[Path] | None,
        typer.Option("--predictions", help="Out-of-fold predictions.jsonl made elsewhere, one per fold (no training)."),
    ] = None,
    rescore: Annotated[
        bool, typer.Option("--rescore", help="Score the stored predictions again against the edited labels.")
    ] = False,
    sure: Annotated[
        float, typer.Option(help="Measured precision from which a prediction may call a box missing or swapped.")
    ] = 0.8,
    located: Annotated[
        float, typer.Option(help="Measured precision from which a prediction may say where a box belongs.")
    ] = 0.1,
    seed: Annotated[int, typer.Option(help="Seed of the folds.")] = 0,
    dataset: DatasetOption = "fabric",
    root: Annotated[Path, typer.Option("--root", help="Folder that holds the runs.")] = Path("runs"),
) -> None:
    """Find the wrong labels: every image scored by a model that never saw it.

    The labelled originals are cut into K folds (a variant goes with its source, near-identical images stay
    together, class-stratified); per fold an ordinary run is trained on the other folds and predicts the fold.
    Each label is scored with cleanlab's object-detection scores on the real, calibrated confidences (FiftyOne
    Brain's rule for spurious boxes), and the views audit-missing, audit-swapped, audit-mislocated,
    audit-spurious and audit-worst open the suspects worst first. A rerun skips finished folds and resumes an
    interrupted one. runs/audit-NAME/audit.md says what each fold's model knew and lists the commands.

    Examples:

      fabricdata audit --folds 5 --set model=florence-community/Florence-2-base --set epochs=10 -d fabric

      fabricdata audit --predictions gpu/fold-0.jsonl --predictions gpu/fold-1.jsonl -d fabric

      fabricdata audit --rescore -d fabric
    """
    from fabricdata.loop.audit import AuditRequest, audit_predictions, rescore_audit
    from fabricdata.review.audit_scores import AuditOptions

    request = AuditRequest(
        dataset=dataset,
        name=name or dataset,
        folds=len(predictions) if predictions else folds,
        config=config,
        sets=tuple(set_ or ()),
        root=root,
        seed=seed,
        options=AuditOptions(sure=sure, located=located),
    )
    if rescore:
        with err_console.status("scoring again") as status:
            summary = rescore_audit(request, status.update)
    elif predictions:
        with err_console.status("scoring the predictions"):
            summary = audit_predictions(request, predictions, log=_say)
    else:
        summary = _train_and_score(request)
    show(summary, request.folder.report)


def _say(text: str) -> None:
    console.print(text, highlight=False, soft_wrap=True)


def _train_and_score(request: AuditRequest) -> AuditSummary:
    from fabricdata.cli.experiments import _train_one
    from fabricdata.loop.audit import run_audit
    from finetune.predict import predict_run

    def predict(folder: Path) -> None:
        with counted(f"{folder.name}: predicting") as bar:
            predict_run(folder, split="test", progress=bar.advance, on_total=bar.total)

    return run_audit(request, _train_one, predict, log=_say)


def show(summary: AuditSummary, report: Path) -> None:
    """The folds, the warnings, the issues and the views with their commands."""
    for fold in summary.folds:
        trained = f"trained on {fold.train_images} images, " if fold.train_images is not None else ""
        loss = f"best val loss {fold.best_val_loss:.4f}, " if fold.best_val_loss is not None else ""
        ap = f"AP50 {fold.ap50:.3f}" if fold.ap50 is not None else "no images"
        _say(f"fold {fold.fold} ({fold.source}): {trained}{loss}{fold.held_out} held-out images, {ap}")
    for line in summary.warnings:
        err_console.print(f"[yellow]warning:[/] {line}", highlight=False, soft_wrap=True)
    totals = {issue: sum(per_class.values()) for issue, per_class in summary.counts.items()}
    _say(
        f"audit {summary.name}: {summary.images} images, {summary.boxes} boxes; "
        + ", ".join(f"{count} {issue}" for issue, count in totals.items())
    )
    for view, count in summary.views.items():
        _say(f"  {view}: {count} images   fabricdata app --dataset {summary.dataset} --view {view}")
    _say(f"report: {report}")
