"""Run checkpoints: the adapter, the processor and the config, plus, for ``last``, everything resume needs
(optimizer, scheduler, RNG states, and where in the data order training stopped).

Nothing in a checkpoint can run code when it is loaded: tensors are safetensors, everything else is JSON
(``trainer_state.safetensors`` + ``trainer_state.json``). Checkpoints of fabricdata before this format kept the
trainer state in a pickle (``trainer_state.pt``, loaded with ``torch.load(weights_only=False)``, which runs
whatever the file says): they are refused, never opened. Each ``last`` records the id of the run that wrote it, so
a sweep resumes only checkpoints it wrote itself.
"""

from __future__ import annotations

import errno
import json
import os
import random
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fabricdata.core import faults
from fabricdata.core.contracts import ExportFolder, RunFolder
from fabricdata.core.errors import ConfigError, FabricDataError
from finetune.config import TrainConfig, dump_config
from finetune.model import ADAPTER_WEIGHTS

STATE_TENSORS = "trainer_state.safetensors"
STATE_JSON = "trainer_state.json"
#: the pickled trainer state of older checkpoints: refused, never loaded
LEGACY_STATE = "trainer_state.pt"
#: written last into a checkpoint being saved: a folder without it was interrupted while being written
COMPLETE_FILE = "COMPLETE"
STATE_FORMAT = 2


class CheckpointError(FabricDataError):
    """A checkpoint could not be saved (disk full, file too large, ...) or is not one this version loads."""


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
    run_id: str | None = None,
) -> None:
    """Write a checkpoint atomically: into a temporary folder, then renamed over the old one. A save that fails
    (no space left, file size limit, ...) leaves the previous checkpoint as it was and no partial one.

    The processor never changes during a run: it was saved once to ``processor_dir`` and is copied from there.

    Raises:
        CheckpointError: one line naming the folder and the OS error.
    """
    tmp = folder.with_name(folder.name + ".tmp")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        model.save_pretrained(tmp)
        for item in processor_dir.iterdir():
            shutil.copy2(item, tmp / item.name)
        (tmp / "config.yaml").write_text(dump_config(config), encoding="utf-8")
        if progress is not None:
            _write_state(tmp, _trainer_state(progress, optimizer, scheduler, run_id))
        (tmp / COMPLETE_FILE).write_text("")
    except Exception as exc:  # the writers (Python, safetensors, peft) raise several kinds for one OS error
        shutil.rmtree(tmp, ignore_errors=True)
        reason = _os_reason(exc)
        raise CheckpointError(
            f"{folder}: checkpoint not saved ({reason}); nothing partial left, an earlier one kept"
        ) from None
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    faults.point("train.checkpoint")
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def _os_reason(exc: Exception) -> str:
    """The OS error behind a failed write, in words and by name (``File too large [EFBIG]``), wherever a library
    wrapped it (safetensors: ``... (os error 27)``)."""
    number = exc.errno if isinstance(exc, OSError) else None
    found = re.search(r"os error (\d+)", str(exc))
    if number is None and found:
        number = int(found.group(1))
    if number is not None:
        return f"{os.strerror(number)} [{errno.errorcode.get(number, number)}]"
    return f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")


def _trainer_state(progress: Progress, optimizer: Any, scheduler: Any, run_id: str | None) -> dict[str, Any]:
    import torch

    return {
        "format": STATE_FORMAT,
        "run_id": run_id,
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


# --- the state as JSON + safetensors: tensors and arrays by reference, tuples and non-string keys marked ----


def _write_state(folder: Path, state: dict[str, Any]) -> None:
    from safetensors.torch import save as tensor_bytes

    tensors: dict[str, Any] = {}
    document = _encode(state, tensors, "")
    (folder / STATE_TENSORS).write_bytes(tensor_bytes(tensors))
    (folder / STATE_JSON).write_text(json.dumps(document), encoding="utf-8")


def _encode(value: Any, tensors: dict[str, Any], path: str) -> Any:
    import torch

    if isinstance(value, torch.Tensor):
        tensors[path] = value.detach().cpu().contiguous().clone()
        return {"__tensor__": path}
    if isinstance(value, np.ndarray):
        tensors[path] = torch.from_numpy(value.astype(np.int64) if value.dtype.kind == "u" else value.copy())
        return {"__ndarray__": path, "dtype": value.dtype.str}
    if isinstance(value, tuple | list):
        items = [_encode(item, tensors, f"{path}/{i}") for i, item in enumerate(value)]
        return {"__tuple__": items} if isinstance(value, tuple) else items
    if isinstance(value, dict):
        pairs = [[key, _encode(item, tensors, f"{path}/{key}")] for key, item in value.items()]
        if all(isinstance(key, str) and not key.startswith("__") for key in value):
            return dict(pairs)
        return {"__pairs__": pairs}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"{path}: a {type(value).__name__} cannot be saved in a checkpoint")


def _decode(value: Any, tensors: dict[str, Any]) -> Any:
    if isinstance(value, list):
        return [_decode(item, tensors) for item in value]
    if not isinstance(value, dict):
        return value
    if "__tensor__" in value:
        return tensors[value["__tensor__"]]
    if "__ndarray__" in value:
        return tensors[value["__ndarray__"]].numpy().astype(np.dtype(value["dtype"]))
    if "__tuple__" in value:
        return tuple(_decode(item, tensors) for item in value["__tuple__"])
    if "__pairs__" in value:
        return {key: _decode(item, tensors) for key, item in value["__pairs__"]}
    return {key: _decode(item, tensors) for key, item in value.items()}


def read_state(folder: Path) -> dict[str, Any]:
    """The trainer state of a ``last`` checkpoint: JSON and safetensors only, nothing unpickled.

    Raises:
        CheckpointError: an older (pickled) checkpoint, or a state this version does not read.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    refuse_legacy(folder)
    try:
        document = json.loads((folder / STATE_JSON).read_text(encoding="utf-8"))
        state = _decode(document, load_file(str(folder / STATE_TENSORS)))
    except (OSError, ValueError, KeyError, TypeError, SafetensorError) as exc:
        raise CheckpointError(f"{folder}: unreadable trainer state ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{folder / STATE_JSON}: not a trainer state of format {STATE_FORMAT}")
    return state


def refuse_legacy(folder: Path) -> None:
    """Raise CheckpointError for a checkpoint whose trainer state is a pickle (fabricdata before format 2)."""
    if (folder / LEGACY_STATE).exists() and not (folder / STATE_JSON).exists():
        raise CheckpointError(
            f"{folder}: a checkpoint of an older fabricdata ({LEGACY_STATE} is a pickle, which can run code when "
            "loaded): refused; train the run again (or resume it with the version that wrote it, if you trust "
            "where it came from)"
        )


# --- resume ------------------------------------------------------------------------------------------------


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
    """True when ``folder`` (after :func:`recover`) holds everything resume needs.

    Raises:
        CheckpointError: an older (pickled) checkpoint.
    """
    recover(folder)
    refuse_legacy(folder)
    return all((folder / name).is_file() for name in (STATE_JSON, STATE_TENSORS, ADAPTER_WEIGHTS))


def run_id(folder: Path) -> str | None:
    """The id of the run that wrote a ``last`` checkpoint (None for a checkpoint without one)."""
    try:
        value = json.loads((folder / STATE_JSON).read_text(encoding="utf-8")).get("run_id")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def restore(
    folder: Path, model: Any, optimizer: Any, scheduler: Any, expected_id: str | None = None
) -> tuple[Progress, str | None]:
    """Load a ``last`` checkpoint into a fresh model already on its device (unwrapped), its optimizer and
    scheduler; restore RNGs. Returns where training was and the run's id. With ``expected_id``, a checkpoint
    that another run wrote is refused.

    Raises:
        CheckpointError: an older (pickled) checkpoint, an unreadable state, another run's checkpoint.
        ConfigError: the checkpoint does not fit the model or optimizer (another config).
    """
    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    state = read_state(folder)
    if expected_id is not None and state.get("run_id") != expected_id:
        raise CheckpointError(
            f"{folder}: written by another run (run id {state.get('run_id')!r}, expected {expected_id!r}): not resumed"
        )
    set_peft_model_state_dict(model, load_file(str(folder / ADAPTER_WEIGHTS)))
    try:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
    except (KeyError, ValueError, RuntimeError) as exc:
        raise ConfigError(f"{folder}: the checkpoint does not fit this config ({exc})") from None
    torch.set_rng_state(state["rng"]["torch"])
    if state["rng"]["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    np.random.set_state(state["rng"]["numpy"])
    random.setstate(state["rng"]["python"])
    return Progress(**state["progress"]), state.get("run_id")


def start_run_folder(out: Path, config: TrainConfig, processor: Any) -> None:
    """config.yaml, the processor (copied into every checkpoint) and the export's manifest."""
    run = RunFolder(out)
    out.mkdir(parents=True, exist_ok=True)
    run.config.write_text(dump_config(config), encoding="utf-8")
    processor.save_pretrained(run.processor)
    manifest = ExportFolder(Path(config.data)).manifest
    if manifest.is_file():
        shutil.copyfile(manifest, run.export_manifest)
