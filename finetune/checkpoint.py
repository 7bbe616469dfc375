"""Run checkpoints: the adapter, the processor and the config, plus, for ``last``, everything resume needs
(optimizer, scheduler, RNG states, and where in the data order training stopped)."""

from __future__ import annotations

import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fabricdata.core import faults
from finetune.config import TrainConfig, dump_config

STATE_FILE = "trainer_state.pt"
#: written last into a checkpoint being saved: a folder without it was interrupted while being written
COMPLETE_FILE = "COMPLETE"


@dataclass(slots=True)
class Progress:
    """Where training is: ``batches_done`` counts micro-batches of ``epoch`` up to the last optimizer step."""

    epoch: int = 0
    batches_done: int = 0
    global_step: int = 0
    best_val: float | None = None


def save(
    folder: Path,
    model: Any,
    processor_dir: Path,
    config: TrainConfig,
    progress: Progress | None = None,
    optimizer: Any = None,
    scheduler: Any = None,
) -> None:
    """Write a checkpoint atomically: into a temporary folder, then renamed over the old one.

    The processor never changes during a run: it was saved once to ``processor_dir`` and is copied from there.
    """
    import torch

    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp)
    for item in processor_dir.iterdir():
        shutil.copy2(item, tmp / item.name)
    (tmp / "config.yaml").write_text(dump_config(config), encoding="utf-8")
    if progress is not None:
        state = {
            "progress": asdict(progress),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                "numpy": np.random.get_state(),
                "python": random.getstate(),
            },
        }
        torch.save(state, tmp / STATE_FILE)
    (tmp / COMPLETE_FILE).write_text("")
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    faults.point("train.checkpoint")
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def recover(folder: Path) -> None:
    """Finish a save that was killed between its renames (``folder`` gone, ``.tmp`` complete or ``.old`` left)."""
    if folder.exists():
        return
    tmp, old = folder.with_name(folder.name + ".tmp"), folder.with_name(folder.name + ".old")
    if (tmp / COMPLETE_FILE).is_file():
        tmp.rename(folder)
    elif old.is_dir():
        old.rename(folder)


def resumable(folder: Path) -> bool:
    """True when ``folder`` (after :func:`recover`) holds everything resume needs."""
    recover(folder)
    return (folder / STATE_FILE).is_file() and (folder / "adapter_model.safetensors").is_file()


def restore(folder: Path, model: Any, optimizer: Any, scheduler: Any) -> Progress:
    """Load a ``last`` checkpoint into a fresh model already on its device (unwrapped), its optimizer and
    scheduler; restore RNGs."""
    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(model, load_file(str(folder / "adapter_model.safetensors")))
    state = torch.load(folder / STATE_FILE, weights_only=False)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"]["torch"])
    if state["rng"]["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    np.random.set_state(state["rng"]["numpy"])
    random.setstate(state["rng"]["python"])
    return Progress(**state["progress"])
