"""The out-of-fold label audit, stage by stage (``fabricdata audit``).

1. Every fold's training config is validated before anything else happens (the sweep's rule).
2. The labelled originals are cut into K folds (``prepare.folds``); the plan is kept in ``folds.json``, so a rerun
   trains and predicts exactly the same images.
3. Per fold an export (train and valid from the other folds, test = the fold) and an ordinary run trained on it,
   through ``finetune.sweep.run_sweep``: finished runs are skipped, an interrupted one resumes from ``last``.
4. After each run, its model predicts its held-out fold (``finetune.predict.predict_run``), once.
5. The predictions go into the dataset and every label is scored (``review.audit``), under the dataset's lock;
   ``audit.json`` and ``audit.md`` are written.

``--predictions FILE`` (one file per fold, made elsewhere, e.g. on a GPU box) replaces steps 1-4; ``--rescore``
repeats step 5 on the stored predictions against the labels as they are now.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fabricdata.core.contracts import AuditFolder, ExportFolder, PredictionRecord, RunFolder
from fabricdata.core.errors import ConfigError
from fabricdata.core.fileio import atomic_write_text
from fabricdata.core.florence import TASK_OD
from fabricdata.prepare.folds import HELD_OUT, FoldPlan, fold_view, plan_folds
from fabricdata.review.audit import AuditSummary, FoldInfo, rescore, store_predictions
from fabricdata.review.audit_report import read_folds, write_audit
from fabricdata.review.audit_scores import AuditOptions
from fabricdata.review.predictions import load_predictions, match_samples
from fabricdata.review.review import MIN_CONFIDENCE
from fabricdata.store.dataset import F_SOURCE_ID, labeled, load_dataset, scope
from fabricdata.store.locks import dataset_lock
from finetune.config import TrainConfig, load_config
from finetune.sweep import PlannedRun, read_summary, run_sweep

Log = Callable[[str], None]
Train = Callable[[TrainConfig, bool, str], Any]
Predict = Callable[[Path], Any]


@dataclass(frozen=True, slots=True)
class AuditRequest:
    """What ``fabricdata audit`` was asked (the training keys as for ``train`` and ``sweep``)."""

    dataset: str
    name: str
    folds: int = 5
    config: Path | None = None
    sets: tuple[str, ...] = ()
    root: Path = Path("runs")
    seed: int = 0
    options: AuditOptions = field(default_factory=AuditOptions)

    @property
    def folder(self) -> AuditFolder:
        return AuditFolder.named(self.root, self.name)


def plan_runs(request: AuditRequest) -> list[PlannedRun]:
    """One validated config per fold, trained on the fold's export into its run folder.

    Raises:
        ConfigError: a bad key or value (named), or ``data``/``out`` given (the audit sets them).
    """
    given = {item.partition("=")[0].strip() for item in request.sets}
    if given & {"data", "out"}:
        raise ConfigError(f"--set {sorted(given & {'data', 'out'})[0]}: the audit sets this key itself, per fold")
    planned = []
    for k in range(request.folds):
        overrides = (f"data={request.folder.export(k)}", f"out={request.folder.run(k)}")
        try:
            config = load_config(request.config, [*request.sets, *overrides])
        except ConfigError as exc:
            raise ConfigError(f"audit fold {k}: {exc}") from None
        planned.append(PlannedRun(f"fold-{k}", {"fold": k}, overrides, config))
    return planned


def run_audit(request: AuditRequest, train: Train, predict: Predict, log: Log = print) -> AuditSummary:
    """Train, predict and score (see the module docstring); returns what the scores say."""
    planned = plan_runs(request)
    plan = fold_plan(request, log)
    for k in range(request.folds):
        _export(request, plan, k, log)

    def predict_held_out(run: PlannedRun) -> None:
        if not RunFolder(Path(run.config.out)).predictions.is_file():
            log(f"{run.name}: predicting its held-out images")
            predict(Path(run.config.out))

    run_sweep(planned, train, log=log, after_run=predict_held_out)
    unfinished = [run.name for run in planned if not RunFolder(Path(run.config.out)).predictions.is_file()]
    if unfinished:
        raise ConfigError(f"audit {request.name}: {', '.join(unfinished)} did not finish; rerun to continue")
    folds = [_fold_info(request.folder, k) for k in range(request.folds)]
    files = [RunFolder(request.folder.run(k)).predictions for k in range(request.folds)]
    return _score(request, _matched(request.dataset, files, folds, plan, log), folds, log)


def fold_plan(request: AuditRequest, log: Log = print) -> FoldPlan:
    """The folds of this audit: made once and kept in ``folds.json``; a rerun checks they still fit the dataset.

    Raises:
        ConfigError: the kept plan has another number of folds or seed, or the labelled originals changed.
    """
    path = request.folder.plan
    if path.is_file():
        plan = FoldPlan.from_json(json.loads(path.read_text(encoding="utf-8")))
        if (plan.folds, plan.seed) != (request.folds, request.seed):
            raise ConfigError(
                f"{path}: this audit was started with --folds {plan.folds} --seed {plan.seed}; use another --name"
            )
        _check_unchanged(request.dataset, plan, path)
        return plan
    plan = plan_folds(request.dataset, request.folds, request.seed)
    kept = f"{plan.near_duplicates} near-identical pair(s) kept together"
    log(f"{len(plan.fold_of)} original images in {plan.folds} folds ({kept})")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(plan.to_json()) + "\n")
    return plan


def _check_unchanged(dataset_name: str, plan: FoldPlan, path: Path) -> None:
    ids, sources = labeled(load_dataset(dataset_name)).values(["id", F_SOURCE_ID])
    now = {sid for sid, source in zip(ids, sources, strict=True) if not source}
    if now != set(plan.fold_of):
        added, gone = len(now - set(plan.fold_of)), len(set(plan.fold_of) - now)
        raise ConfigError(
            f"{path}: the dataset's labelled images changed since this audit started ({added} added, {gone} gone); "
            "start a new audit with another --name (or --rescore to score the stored predictions again)"
        )


def _export(request: AuditRequest, plan: FoldPlan, fold: int, log: Log) -> None:
    """Fold ``fold``'s export (kept when a rerun finds it), through a temporary saved view with the fold's tags."""
    from fabricdata.prepare.export import ExportOptions, export_florence

    target = request.folder.export(fold)
    if ExportFolder(target).is_export():
        return
    dataset = load_dataset(request.dataset)
    view_name = f"fabricdata-fold-export-{request.name}-{fold}"
    dataset.save_view(view_name, fold_view(dataset, plan.roles[fold]), overwrite=True)
    try:
        options = ExportOptions(tasks=(TASK_OD,), seed=request.seed, allow_empty_split=True)
        manifest = export_florence(request.dataset, target, view_name=view_name, options=options)
    finally:
        dataset.delete_saved_view(view_name)
    images = ", ".join(f"{split} {count}" for split, count in manifest.images.items())
    log(f"fold-{fold}: export {target} ({images})")


def _fold_info(folder: AuditFolder, fold: int) -> FoldInfo:
    """Images a fold's run trained and validated on (its export's manifest) and its best validation loss."""
    manifest: dict[str, Any] = json.loads(ExportFolder(folder.export(fold)).manifest.read_text(encoding="utf-8"))
    summary = read_summary(folder.run(fold)) or {}
    images = manifest.get("images", {})
    loss = summary.get("best_val_loss")
    return FoldInfo(
        fold=fold,
        source=str(folder.run(fold)),
        held_out=int(images.get(ExportFolder.folder_name(HELD_OUT), 0)),
        train_images=int(images.get("train", 0)),
        valid_images=int(images.get(ExportFolder.folder_name("val"), 0)),
        best_val_loss=float(loss) if loss is not None else None,
    )


def _matched(
    dataset_name: str, files: Sequence[Path], folds: list[FoldInfo], plan: FoldPlan | None, log: Log = print
) -> dict[str, tuple[PredictionRecord, int, str]]:
    """Sample id -> (its prediction, fold, source) from one predictions file per fold. With a plan, only the fold's
    held-out originals are taken (a run never scores the images it trained on)."""
    dataset, within = load_dataset(dataset_name), scope()
    matched: dict[str, tuple[PredictionRecord, int, str]] = {}
    for info, path in zip(folds, files, strict=True):
        found, unmatched = match_samples(dataset, load_predictions(path))
        if unmatched:
            log(f"warning: {path}: {len(unmatched)} image(s) not in dataset {dataset_name!r}, e.g. {unmatched[0]}")
        for sid, record in found.items():
            if plan is not None and plan.roles[info.fold].get(sid) != HELD_OUT:
                continue
            if within is not None and sid not in within:
                continue  # outside the view the API was given
            if sid in matched:
                log(f"warning: {path}: {record.filepath or record.image} also predicted in fold {matched[sid][1]}")
            matched[sid] = (record, info.fold, info.source)
    return matched


def audit_predictions(request: AuditRequest, files: Sequence[Path], log: Log = print) -> AuditSummary:
    """Score out-of-fold predictions made elsewhere: one predictions.jsonl per fold (``PredictionRecord`` lines).

    Raises:
        ConfigError: a file that does not exist. DatasetError: a file that is not predictions.
    """
    missing = [str(path) for path in files if not Path(path).is_file()]
    if missing:
        raise ConfigError(f"--predictions {missing[0]}: no such file")
    folds = [FoldInfo(fold=k, source=str(path), held_out=0) for k, path in enumerate(files)]
    return _score(request, _matched(request.dataset, files, folds, None, log), folds, log)


def rescore_audit(request: AuditRequest, progress: Log | None = None) -> AuditSummary:
    """Score the stored predictions again against the labels as they are now (after fixes), without training."""
    folds = read_folds(request.folder)
    with dataset_lock(request.dataset):
        summary, _ = rescore(request.dataset, request.name, folds, request.options, progress)
    write_audit(request.folder, summary)
    return summary


def _score(
    request: AuditRequest,
    matched: dict[str, tuple[PredictionRecord, int, str]],
    folds: list[FoldInfo],
    log: Log = print,
) -> AuditSummary:
    if not matched:
        raise ConfigError(f"audit {request.name}: no prediction matches an image of dataset {request.dataset!r}")
    with dataset_lock(request.dataset):
        _, dropped = store_predictions(request.dataset, matched)
        summary, _ = rescore(request.dataset, request.name, folds, request.options)
    if dropped:
        log(f"{dropped} predicted box(es) below confidence {MIN_CONFIDENCE} not stored (review's floor)")
    write_audit(request.folder, summary)
    return summary
