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
import json
import math
import os
import shutil
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fabricdata.errors import ConfigError, FabricDataError
from fabricdata.fileio import atomic_write_text
from finetune import checkpoint
from finetune.checkpoint import Progress
from finetune.config import TrainConfig, dump_config, load_config
from finetune.data import Collator, RecordDataset, read_records
from finetune.metrics import MetricsLog, plot
from finetune.model import add_adapter, load_base


@dataclass(slots=True)
class RunSummary:
    out: Path
    global_step: int
    epochs_done: int
    train_loss: float
    val_loss: float | None
    stopped_early: bool
    samples_per_s: float


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


def _epoch_order(size: int, seed: int, epoch: int, rank: int, world: int) -> list[int]:
    """This process's share of a seeded permutation of the training records (same length on every rank)."""
    import torch

    order = torch.randperm(size, generator=torch.Generator().manual_seed(seed * 1000 + epoch)).tolist()
    return [order[(rank + world * i) % len(order)] for i in range(_per_rank(size, world))]


def _per_rank(size: int, world: int) -> int:
    """Records each process sees per epoch: an equal share (the tail that does not divide is dropped)."""
    return size // world if size >= world else 1


class EpochSampler:
    """This process's records of an epoch in their seeded order, from ``skip`` on (for resuming mid-epoch)."""

    def __init__(self, size: int, seed: int, rank: int, world: int) -> None:
        self.size, self.seed, self.rank, self.world = size, seed, rank, world
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def __iter__(self) -> Any:
        return iter(_epoch_order(self.size, self.seed, self.epoch, self.rank, self.world)[self.skip :])

    def __len__(self) -> int:
        return _per_rank(self.size, self.world) - self.skip


def _one_thread(_: int) -> None:
    import torch

    torch.set_num_threads(1)  # workers decode and collate; the main process keeps the cores for compute


def _loader(dataset: RecordDataset, sampler: Any, config: TrainConfig, collate: Collator) -> Any:
    """One DataLoader for the whole run: workers persist across epochs instead of restarting each epoch."""
    import torch
    from torch.utils.data import DataLoader

    return DataLoader(
        dataset,  # type: ignore[arg-type]
        batch_size=config.batch_size,
        sampler=sampler,
        collate_fn=collate,
        num_workers=config.num_workers,
        persistent_workers=config.num_workers > 0,
        worker_init_fn=_one_thread if config.num_workers > 0 else None,
        generator=torch.Generator().manual_seed(config.seed),
        pin_memory=torch.cuda.is_available(),
    )


def _to(batch: dict[str, Any], device: Any) -> dict[str, Any]:
    return {key: value.to(device, non_blocking=True) for key, value in batch.items()}


def evaluate(model: Any, loader: Any, accelerator: Any) -> float:
    """Mean loss over a loader, averaged across processes."""
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


def train(config: TrainConfig, resume: bool = False, log: Any = print, on_step: Any = None) -> RunSummary:
    """Run (or ``resume``) a fine-tune; ``on_step(done, total)`` is called after every optimizer step."""
    import torch

    torch.set_flush_denormal(True)  # avoids random 3-5x CPU slowdowns in tiny-model training
    try:
        return _train(config, resume, log, on_step)
    finally:  # a process-wide FPU flag: the caller's floating point is left as it was (IEEE subnormals)
        torch.set_flush_denormal(False)


def _train(config: TrainConfig, resume: bool, log: Any, on_step: Any) -> RunSummary:
    import torch
    from accelerate.utils import set_seed

    accelerator = _accelerator(config)
    main = accelerator.is_main_process
    say = log if main else (lambda *_: None)  # one voice, not one per process
    report_step = on_step if main else None
    out = Path(config.out)
    last_dir, best_dir = out / "checkpoints" / "last", out / "checkpoints" / "best"
    if resume and not checkpoint.resumable(last_dir):
        raise ConfigError(f"--resume: {last_dir} has no resumable checkpoint")
    set_seed(config.seed)

    train_records = read_records(Path(config.data) / "train", config.tasks)
    val_records = read_records(Path(config.data) / "valid", config.tasks)
    if not train_records:
        raise ConfigError(f"{config.data}/train/annotations.jsonl has no records to train on")
    model, processor = load_base(config.model)
    model = add_adapter(model, config.lora)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)
    rank, world = accelerator.process_index, accelerator.num_processes
    batches_per_epoch = math.ceil(_per_rank(len(train_records), world) / config.batch_size)
    steps_per_epoch = math.ceil(batches_per_epoch / config.grad_accum)
    total_steps = steps_per_epoch * config.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(config, total_steps))

    progress = checkpoint.restore(last_dir, model, optimizer, scheduler) if resume else Progress()
    model = accelerator.prepare(model)
    processor_dir = out / "processor"
    if main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(dump_config(config), encoding="utf-8")
        processor.save_pretrained(processor_dir)
        manifest = Path(config.data) / "manifest.json"
        if manifest.is_file():
            shutil.copyfile(manifest, out / "export_manifest.json")
    metrics = MetricsLog(out / "metrics.csv", progress.global_step if resume else None) if main else None
    if not val_records:
        say("note: the validation split is empty: no validation loss; 'best' is the last epoch's adapter")
    collate = Collator(processor)
    sampler = EpochSampler(len(train_records), config.seed, rank, world)
    loader = _loader(RecordDataset(train_records), sampler, config, collate)
    val_order = _epoch_order(len(val_records), 0, 0, rank, world) if val_records else []
    val_loader = _loader(RecordDataset(val_records), val_order, config, collate)
    say(
        f"training {sum(p.numel() for p in trainable):,} adapter parameters on {len(train_records)} records, "
        f"{world} process(es), {total_steps} optimizer steps, "
        + ("bf16 autocast" if accelerator.mixed_precision == "bf16" else "full precision (fp32)")
    )

    def save_last() -> None:
        accelerator.wait_for_everyone()
        if main:
            unwrapped = accelerator.unwrap_model(model)
            checkpoint.save(last_dir, unwrapped, processor_dir, config, progress, optimizer, scheduler)

    def save_best() -> None:
        accelerator.wait_for_everyone()
        if main:
            checkpoint.save(best_dir, accelerator.unwrap_model(model), processor_dir, config)

    stopped, losses, step_losses, seen, started = False, [], [], 0, time.perf_counter()
    try:
        while progress.epoch < config.epochs and not stopped:
            sampler.set_epoch(progress.epoch, skip=progress.batches_done * config.batch_size)
            pending = 0
            for batch in loader:
                pending += 1
                update = pending == config.grad_accum or progress.batches_done + pending == batches_per_epoch
                with accelerator.no_sync(model) if not update else nullcontext():
                    loss = model(**_to(batch, accelerator.device)).loss
                    accelerator.backward(loss / config.grad_accum)
                step_losses.append(float(loss.detach()))
                seen += len(batch["labels"]) * world
                if not update:
                    continue
                losses.append(sum(step_losses) / len(step_losses))
                step_losses = []
                accelerator.clip_grad_norm_(trainable, config.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                progress.batches_done += pending
                progress.global_step += 1
                if report_step:
                    report_step(progress.global_step, total_steps)
                pending = 0
                if metrics:
                    rate = seen / (time.perf_counter() - started)
                    metrics.add(
                        progress.global_step,
                        progress.epoch,
                        "train",
                        losses[-1],
                        float(scheduler.get_last_lr()[0]),
                        rate,
                    )
                if config.save_every_steps and progress.global_step % config.save_every_steps == 0:
                    save_last()
                if config.stop_after_steps and progress.global_step >= config.stop_after_steps:
                    stopped = True
                    break
            if stopped:
                break
            progress.epoch, progress.batches_done = progress.epoch + 1, 0
            val = evaluate(model, val_loader, accelerator) if val_records else None
            recent = losses[-steps_per_epoch:]
            message = f"epoch {progress.epoch}/{config.epochs}: train loss {sum(recent) / max(1, len(recent)):.4f}"
            say(message + (f", val loss {val:.4f}" if val is not None else ""))
            if metrics and val is not None:
                metrics.add(progress.global_step, progress.epoch, "val", val, float(scheduler.get_last_lr()[0]), 0.0)
            if val is not None and (progress.best_val is None or val < progress.best_val):
                progress.best_val = val
                save_best()
            save_last()
    except KeyboardInterrupt:
        say("interrupted: saving 'last' at the last completed optimizer step (continue with --resume)")
        save_last()
        raise
    finally:
        elapsed = time.perf_counter() - started  # the loop only: loading and the loss plot do not count
    if stopped:
        save_last()
    elif not val_records:
        save_best()  # without validation, 'best' is the final adapter
    if main and metrics and (out / "metrics.csv").is_file():
        plot(out / "metrics.csv", out / "loss_curve.png")
    accelerator.wait_for_everyone()
    if os.environ.get("FABRICDATA_DEBUG"):  # every rank's adapter checksum: they must agree
        checksum = sum(float(p.detach().double().sum()) for p in trainable)
        sys.stdout.write(f"rank {accelerator.process_index}/{world}: adapter checksum {checksum:.12e}\n")
        sys.stdout.flush()
    summary = RunSummary(
        out,
        progress.global_step,
        progress.epoch,
        losses[-1] if losses else float("nan"),
        progress.best_val,
        stopped,
        seen / elapsed if elapsed else 0.0,
    )
    if main:
        _write_summary(summary, elapsed)
    return summary


def _write_summary(summary: RunSummary, seconds: float) -> None:
    """``summary.json``: whether the run finished, and its figures (read by sweeps and ``fabricdata runs``)."""
    data = {
        "finished": not summary.stopped_early,
        "global_step": summary.global_step,
        "epochs_done": summary.epochs_done,
        "train_loss": summary.train_loss,
        "best_val_loss": summary.val_loss,
        "samples_per_s": summary.samples_per_s,
        "train_seconds": seconds,
    }
    atomic_write_text(summary.out / "summary.json", json.dumps(data, indent=1) + "\n")


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
