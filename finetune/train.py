"""The LoRA/DoRA fine-tuning loop for Florence-2, in one readable pass.

    python -m finetune.train CONFIG.yaml [--set key=value ...] [--resume]
    accelerate launch -m finetune.train CONFIG.yaml          # several GPUs or nodes

AdamW with warmup and decay, gradient accumulation and clipping, bf16 autocast on CUDA, collation in DataLoader
workers, validation loss per epoch, metrics.csv and loss_curve.png, checkpoints ``last`` (resumable: optimizer,
scheduler, RNG and data position) and ``best``. Data order is a seeded permutation per epoch, sharded across
processes, so a resumed run continues exactly where the interrupted one stopped.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import uuid
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from fabricdata.core.contracts import RunFolder
from fabricdata.core.errors import ConfigError, FabricDataError
from finetune import checkpoint
from finetune.checkpoint import Progress
from finetune.config import TrainConfig, load_config
from finetune.data import (
    Collator,
    EpochSampler,
    ExportPin,
    ExportReplacedError,
    RecordDataset,
    accumulated,
    check_handover,
    epoch_order,
    make_loader,
    per_rank,
    training_data,
)
from finetune.metrics import MetricsLog, RunSummary, plot, write_summary
from finetune.model import add_adapter, load_base


def _accelerator(config: TrainConfig) -> Any:
    import torch
    from accelerate import Accelerator

    cuda = torch.cuda.is_available()
    bf16 = config.precision == "bf16" or (config.precision == "auto" and cuda and torch.cuda.is_bf16_supported())
    if config.precision == "bf16" and not cuda:
        raise ConfigError("precision: bf16 needs a CUDA device here; use auto or fp32")
    return Accelerator(mixed_precision="bf16" if bf16 else "no", cpu=not cuda)


def _schedule(config: TrainConfig, total_steps: int) -> Any:
    warmup = math.ceil(config.warmup_ratio * total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if config.schedule == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1 + math.cos(math.pi * progress)) if config.schedule == "cosine" else max(0.0, 1 - progress)

    return factor


def _to(batch: dict[str, Any], device: Any) -> dict[str, Any]:
    return {key: value.to(device, non_blocking=True) for key, value in batch.items()}


def evaluate(model: Any, loader: Any, accelerator: Any) -> float:
    """Mean loss over the records of every process's loader (sums of loss and count reduced across processes,
    so shards of unequal length count each record once)."""
    import torch

    model.eval()
    total = torch.zeros(2, device=accelerator.device)
    with torch.no_grad():
        for batch in loader:
            loss = model(**_to(batch, accelerator.device)).loss
            total += torch.stack(
                [
                    loss.detach().float() * len(batch["labels"]),
                    torch.tensor(float(len(batch["labels"])), device=accelerator.device),
                ]
            )
    total = accelerator.reduce(total, reduction="sum")
    model.train()
    return float(total[0] / total[1]) if total[1] > 0 else float("nan")


#: where the run speaks (one line at a time) and how it reports optimizer steps (done, total)
Log = Callable[[str], None]
OnStep = Callable[[int, int], None]


def train(
    config: TrainConfig,
    resume: bool = False,
    log: Log = print,
    on_step: OnStep | None = None,
    run_id: str | None = None,
) -> RunSummary:
    """Run (or ``resume``) a fine-tune; ``on_step(done, total)`` is called after every optimizer step.

    ``run_id`` names the run in its ``last`` checkpoints (default: a new random id; a resumed run keeps its own);
    resuming with a ``run_id`` refuses a checkpoint another run wrote (how sweeps resume only their own runs).

    Raises:
        FabricDataError: bad config or records, a checkpoint that cannot be saved or resumed, a loss that is not
            finite, an export replaced while training reads it.
    """
    import torch

    torch.set_flush_denormal(True)  # avoids random 3-5x CPU slowdowns in tiny-model training
    try:
        run = _setup(config, resume, log, on_step, run_id)
        return _run(run)
    finally:  # a process-wide FPU flag: the caller's floating point is left as it was (IEEE subnormals)
        torch.set_flush_denormal(False)


@dataclass(slots=True)
class Run:
    """Everything one fine-tune holds while it runs (built by :func:`_setup`)."""

    config: TrainConfig
    accelerator: Any
    model: Any
    trainable: list[Any]
    optimizer: Any
    scheduler: Any
    progress: Progress
    sampler: EpochSampler
    loader: Any
    val_loader: Any | None
    metrics: MetricsLog | None
    say: Log
    on_step: OnStep | None
    out: Path
    batches_per_epoch: int
    steps_per_epoch: int
    total_steps: int
    #: the id written into the run's ``last`` checkpoints
    run_id: str = ""
    #: the export folder the run reads (None: not a folder, so nothing can replace it)
    pin: ExportPin | None = None
    #: the optimizer step of the last ``last`` checkpoint (0: none yet)
    saved_step: int = 0
    #: the mean loss of every optimizer step of this process, and samples seen by all processes
    losses: list[float] = field(default_factory=list)
    seen: int = 0
    started: float = 0.0

    @property
    def main(self) -> bool:
        return bool(self.accelerator.is_main_process)


def _setup(config: TrainConfig, resume: bool, log: Log, on_step: OnStep | None, run_id: str | None) -> Run:
    """Records, model with its adapter, optimizer, schedule, loaders and run folder; the checkpoint restored."""
    import torch
    from accelerate.utils import set_seed

    accelerator = _accelerator(config)
    main = accelerator.is_main_process
    out = Path(config.out)
    last = RunFolder(out).checkpoint("last")
    if resume and not checkpoint.resumable(last):
        raise ConfigError(f"--resume: {last} has no resumable checkpoint")
    set_seed(config.seed)
    data = training_data(config, RunFolder(out).export_manifest if resume else None)
    pin, train_records, val_records = data.pin, data.train, data.val
    # model, optimizer, schedule
    model, processor = load_base(config.model)
    model = add_adapter(model, config.lora)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)
    rank, world = accelerator.process_index, accelerator.num_processes
    batches_per_epoch = math.ceil(per_rank(len(train_records), world) / config.batch_size)
    steps_per_epoch = math.ceil(batches_per_epoch / config.grad_accum)
    total_steps = steps_per_epoch * config.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(config, total_steps))
    model = accelerator.prepare(model)
    # restored after the model is on its device: the optimizer's state follows its parameters' device when
    # loaded (restored before, it stayed on the CPU and the first step on a GPU failed)
    progress, saved_id = Progress(), None
    if resume:
        progress, saved_id = checkpoint.restore(last, accelerator.unwrap_model(model), optimizer, scheduler, run_id)
    # the run folder
    if main:
        checkpoint.start_run_folder(out, config, processor)
    metrics = MetricsLog(RunFolder(out).metrics, progress.global_step if resume else None) if main else None
    # loaders: training in a seeded order per epoch, validation sharded across processes without loss or repeat
    collate = Collator(processor)
    sampler = EpochSampler(len(train_records), config.seed, rank, world)
    check_handover(RecordDataset(train_records, pin), collate, config)
    loader = make_loader(RecordDataset(train_records, pin), sampler, config, collate)
    val_loader = None
    if val_records:
        val_order = epoch_order(len(val_records), 0, 0, 0, 1)[rank::world]
        val_loader = make_loader(RecordDataset(val_records, pin), val_order, config, collate)
    run = Run(
        config, accelerator, model, trainable, optimizer, scheduler, progress, sampler, loader, val_loader,
        metrics, log if main else (lambda *_: None), on_step if main else None, out,
        batches_per_epoch, steps_per_epoch, total_steps, saved_id or run_id or uuid.uuid4().hex,
    )  # fmt: skip
    run.pin, run.saved_step = pin, progress.global_step if resume else 0
    if not val_records:
        run.say("note: the validation split is empty: no validation loss; 'best' is the last epoch's adapter")
    run.say(
        f"training {sum(p.numel() for p in trainable):,} adapter parameters on {len(train_records)} records, "
        f"{world} process(es), {total_steps} optimizer steps, "
        + ("bf16 autocast" if accelerator.mixed_precision == "bf16" else "full precision (fp32)")
    )
    return run


def _run(run: Run) -> RunSummary:
    """Epochs until done or stopped; Ctrl-C saves ``last`` first. Then ``best``, the loss plot, the summary."""
    config, progress = run.config, run.progress
    stopped = False
    run.started = time.perf_counter()
    try:
        while progress.epoch < config.epochs:
            if _train_epoch(run):
                stopped = True
                break
            _end_epoch(run)
    except KeyboardInterrupt:
        run.say("interrupted: saving 'last' at the last completed optimizer step (continue with --resume)")
        _save(run, "last")
        raise
    except ExportReplacedError:  # raised in a DataLoader worker, it arrives wrapped in the worker's traceback
        raise ExportReplacedError(run.pin.message if run.pin else "the export was replaced") from None
    finally:
        elapsed = time.perf_counter() - run.started  # the loop only: loading and the loss plot do not count
    if stopped:
        _save(run, "last")
    elif run.val_loader is None:
        _save(run, "best")  # without validation, 'best' is the final adapter
    folder = RunFolder(run.out)
    if run.metrics and folder.metrics.is_file():
        plot(folder.metrics, folder.loss_curve)
    run.accelerator.wait_for_everyone()
    if os.environ.get("FABRICDATA_DEBUG"):  # every rank's adapter checksum: they must agree
        checksum = sum(float(p.detach().double().sum()) for p in run.trainable)
        rank, world = run.accelerator.process_index, run.accelerator.num_processes
        sys.stdout.write(f"rank {rank}/{world}: adapter checksum {checksum:.12e}\n")
        sys.stdout.flush()
    summary = RunSummary(
        run.out,
        progress.global_step,
        progress.epoch,
        run.losses[-1] if run.losses else float("nan"),
        progress.best_val,
        stopped,
        run.seen / elapsed if elapsed else 0.0,
        run.run_id,
    )
    if run.main:
        write_summary(summary, elapsed)
    return summary


def _train_epoch(run: Run) -> bool:
    """The rest of the current epoch (from where a resumed run stopped); True when ``stop_after_steps`` stops
    the run."""
    config, progress, accelerator = run.config, run.progress, run.accelerator
    run.sampler.set_epoch(progress.epoch, skip=progress.batches_done * config.batch_size)
    batches_left = run.batches_per_epoch - progress.batches_done
    step_losses: list[float] = []
    for batch, steps in accumulated(run.loader, config.grad_accum, batches_left):
        with nullcontext() if steps else accelerator.no_sync(run.model):  # gradients synchronise on steps only
            loss = run.model(**_to(batch, accelerator.device)).loss
            accelerator.backward(loss / config.grad_accum)
        step_losses.append(float(loss.detach()))
        run.seen += len(batch["labels"]) * accelerator.num_processes
        if steps:
            _optimizer_step(run, step_losses)
            step_losses = []
            if config.stop_after_steps and progress.global_step >= config.stop_after_steps:
                return True
    return False


class NonFiniteLossError(FabricDataError):
    """The training loss became NaN or infinite: training stops before the step is applied."""


def _check_finite(run: Run, loss: float) -> None:
    """Stop (every process alike) before applying a step whose loss is NaN or infinite on any process.

    Raises:
        NonFiniteLossError: naming the step and what is kept.
    """
    value = loss
    if run.accelerator.num_processes > 1:  # one scalar all-reduce: NaN or inf anywhere makes the sum so
        import torch

        value = float(run.accelerator.reduce(torch.tensor([loss], device=run.accelerator.device), "sum")[0])
    if math.isfinite(value):
        return
    kept = f"checkpoints/last of step {run.saved_step} is kept" if run.saved_step else "no checkpoint was saved yet"
    fp32 = " or train in fp32 (precision=fp32)" if run.accelerator.mixed_precision == "bf16" else ""
    raise NonFiniteLossError(
        f"{run.out}: step {run.progress.global_step + 1} (epoch {run.progress.epoch + 1}): the training loss is "
        f"{value} (not finite); stopped before the step was applied, {kept}. Lower lr ({run.config.lr:g}){fp32}"
    )


def _optimizer_step(run: Run, step_losses: list[float]) -> None:
    """Clip, step, schedule; record the step (metrics, progress callback) and save ``last`` when due.

    Raises:
        NonFiniteLossError: the step's loss is NaN or infinite (nothing of the step is applied).
    """
    config, progress = run.config, run.progress
    _check_finite(run, sum(step_losses) / len(step_losses))
    run.losses.append(sum(step_losses) / len(step_losses))
    run.accelerator.clip_grad_norm_(run.trainable, config.max_grad_norm)
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    progress.batches_done += len(step_losses)
    progress.global_step += 1
    if run.on_step:
        run.on_step(progress.global_step, run.total_steps)
    if run.metrics:
        rate = run.seen / (time.perf_counter() - run.started)
        lr = float(run.scheduler.get_last_lr()[0])
        run.metrics.add(progress.global_step, progress.epoch, "train", run.losses[-1], lr, rate)
    if config.save_every_steps and progress.global_step % config.save_every_steps == 0:
        _save(run, "last")


def _end_epoch(run: Run) -> None:
    """Validation loss, the epoch's line, ``best`` when validation improved, ``last``."""
    progress = run.progress
    progress.epoch, progress.batches_done = progress.epoch + 1, 0
    # the unwrapped model: shards differ in length by one, and a DDP forward could wait for another process
    module = run.accelerator.unwrap_model(run.model)
    val = evaluate(module, run.val_loader, run.accelerator) if run.val_loader is not None else None
    recent = run.losses[-run.steps_per_epoch :]
    message = f"epoch {progress.epoch}/{run.config.epochs}: train loss {sum(recent) / max(1, len(recent)):.4f}"
    run.say(message + (f", val loss {val:.4f}" if val is not None else ""))
    if run.metrics and val is not None:
        lr = float(run.scheduler.get_last_lr()[0])
        run.metrics.add(progress.global_step, progress.epoch, "val", val, lr, 0.0)
    if val is not None and (progress.best_val is None or val < progress.best_val):
        progress.best_val = val
        _save(run, "best")
    _save(run, "last")


def _save(run: Run, which: Literal["last", "best"]) -> None:
    """Save the ``last`` (resumable: optimizer, scheduler, RNG, data position) or ``best`` checkpoint."""
    run.accelerator.wait_for_everyone()
    if not run.main:
        return
    folder, processor = RunFolder(run.out).checkpoint(which), RunFolder(run.out).processor
    model = run.accelerator.unwrap_model(run.model)
    if which == "last":
        checkpoint.save(folder, model, processor, run.config, run.progress, run.optimizer, run.scheduler, run.run_id)
        run.saved_step = run.progress.global_step
    else:
        checkpoint.save(folder, model, processor, run.config)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m finetune.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", nargs="?", help="YAML config (optional when --set gives model, data and out)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--resume", action="store_true", help="continue from checkpoints/last")
    args = parser.parse_args(argv)
    try:
        summary = train(load_config(args.config, args.overrides), resume=args.resume)
    except FabricDataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"done: {summary.global_step} steps, train loss {summary.train_loss:.4f}, run {summary.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
