"""Hyper-parameter sweeps: a grid of training configs, each an ordinary run folder under ``runs/S/<combo>/``.

``--grid lora.r=8,16,32 --grid lr=1e-6,3e-6`` is the cartesian product (``zip_=True`` pairs the values
instead). Every combination is validated against the typed config before anything trains; a combination is
named by its varied values (``r8-lr3e-6``). When only ``lora.r`` is swept, ``lora.alpha`` follows ``2 x r``
unless the config file or ``--set`` gives it. A finished combination (``summary.json``) is skipped on rerun; an
interrupted one resumes from its ``last`` checkpoint, but only one this sweep wrote: the sweep gives each run an id
(kept in ``S/sweep.json``, recorded in every ``last`` checkpoint), and a checkpoint with another id (copied in,
planted, left by another run) stops the sweep. Like the rest of ``finetune``, this never imports FiftyOne.
"""

from __future__ import annotations

import itertools
import json
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from fabricdata.core.contracts import RunFolder
from fabricdata.core.errors import ConfigError
from finetune.config import TrainConfig, dump_config, load_config

State = Literal["done", "resume", "new"]


@dataclass(frozen=True, slots=True)
class Axis:
    """One swept key and its values (as typed on the command line, parsed as YAML)."""

    key: str
    values: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class PlannedRun:
    """One combination: its name, the ``key=value`` overrides that make it, and the validated config."""

    name: str
    values: dict[str, Any]
    overrides: tuple[str, ...]
    config: TrainConfig


def parse_axis(spec: str) -> Axis:
    """``lora.r=8,16,32`` -> Axis("lora.r", (8, 16, 32)); commas inside ``[...]`` belong to one value."""
    key, sep, raw = spec.partition("=")
    key = key.strip()
    if not sep or not key or not raw.strip():
        raise ConfigError(f"--grid {spec}: expected key=value1,value2,... e.g. --grid lora.r=8,16,32")
    values = tuple(_parse_value(part) for part in _split_top_level(raw))
    if len(set(map(repr, values))) != len(values):
        raise ConfigError(f"--grid {spec}: a value is listed twice")
    return Axis(key, values)


def _split_top_level(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        depth += {"[": 1, "{": 1, "]": -1, "}": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    parts.append(current.strip())
    return [part for part in parts if part]


def _parse_value(text: str) -> Any:
    """Numbers as numbers (``1e-6`` too, which YAML 1.1 reads as a string), the rest as YAML."""
    for number in (int, float):
        try:
            return number(text)
        except ValueError:
            pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def plan(
    axes: Sequence[Axis],
    sweep_dir: Path,
    config_path: Path | None = None,
    sets: Sequence[str] = (),
    zip_: bool = False,
) -> list[PlannedRun]:
    """Every combination, validated and named; raises ConfigError naming the key before anything trains."""
    if not axes:
        raise ConfigError("--grid: give at least one key to sweep, e.g. --grid lora.r=8,16")
    keys = [axis.key for axis in axes]
    if len(set(keys)) != len(keys):
        raise ConfigError(f"--grid: a key is swept twice ({', '.join(keys)})")
    reserved = {"out", "stop_after_steps"} & set(keys)
    if reserved:
        raise ConfigError(f"--grid {sorted(reserved)[0]}: the sweep sets this key itself")
    if zip_ and len({len(axis.values) for axis in axes}) != 1:
        raise ConfigError("--zip: every --grid needs the same number of values")
    rows = zip(*(a.values for a in axes), strict=True) if zip_ else itertools.product(*(a.values for a in axes))
    follow_alpha = "lora.r" in keys and "lora.alpha" not in keys and not _sets_key(config_path, sets, "lora.alpha")
    planned: list[PlannedRun] = []
    for row in rows:
        values = dict(zip(keys, row, strict=True))
        overrides = [f"{key}={_yaml(value)}" for key, value in values.items()]
        if follow_alpha:
            overrides.append(f"lora.alpha={2 * _int(values['lora.r'])}")
        name = _unique(combo_name(values), {run.name for run in planned})
        overrides.append(f"out={sweep_dir / name}")
        config = _validated(config_path, [*sets, *overrides], values)
        planned.append(PlannedRun(name, values, tuple(overrides), config))
    return planned


def _validated(config_path: Path | None, overrides: list[str], values: dict[str, Any]) -> TrainConfig:
    try:
        return load_config(config_path, overrides)
    except ConfigError as exc:
        combo = ", ".join(f"{key}={value!r}" for key, value in values.items())
        raise ConfigError(f"--grid ({combo}): {exc}") from None


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"--grid lora.r: ranks are integers (got {value!r})")
    return value


def _sets_key(config_path: Path | None, sets: Sequence[str], dotted: str) -> bool:
    if any(item.partition("=")[0].strip() == dotted for item in sets):
        return True
    if config_path is None:
        return False
    try:
        node: Any = yaml.safe_load(Path(config_path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return False  # load_config reports the file itself
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return True


def _yaml(value: Any) -> str:
    return str(yaml.safe_dump(value, default_flow_style=True, width=10_000)).strip().removesuffix("...").strip()


def combo_name(values: dict[str, Any]) -> str:
    """``{"lora.r": 8, "lr": 3e-6}`` -> ``r8-lr3e-6``; strings and paths as ``key_value``."""
    parts = []
    for key, value in values.items():
        short = key.rsplit(".", 1)[-1]
        if isinstance(value, bool):
            parts.append(f"{short}_{str(value).lower()}")
        elif isinstance(value, int | float):
            parts.append(f"{short}{_number(value)}")
        else:
            text = "+".join(map(str, value)) if isinstance(value, list) else Path(str(value)).name or str(value)
            parts.append(f"{short}_{re.sub(r'[^A-Za-z0-9.+_]', '_', text)}")
    return "-".join(parts)


def _number(value: float) -> str:
    return re.sub(r"e([+-])0*(\d)", lambda m: f"e{'-' if m.group(1) == '-' else ''}{m.group(2)}", f"{value:g}")


def _unique(name: str, taken: set[str]) -> str:
    candidate, counter = name, 2
    while candidate in taken:
        candidate, counter = f"{name}-{counter}", counter + 1
    return candidate


# --- state of a run folder ----------------------------------------------------------------------------------


#: the sweep's own record of the runs it started: ``{"runs": {combination: run id}}``
LEDGER = "sweep.json"


def run_state(config: TrainConfig, run_id: str | None = None) -> State:
    """``done`` when the run finished with this config, ``resume`` when it has a resumable checkpoint written by
    the run ``run_id``, else ``new``. A folder trained with another config, or a checkpoint another run wrote, is an
    error (the sweep would mix two experiments, or resume what it did not write)."""
    from finetune import checkpoint

    out = Path(config.out)
    saved = RunFolder(out).config
    if saved.is_file() and saved.read_text(encoding="utf-8") != dump_config(config):
        raise ConfigError(
            f"{out}: trained with another config than this sweep asks for; use another --name or remove the folder"
        )
    summary = read_summary(out)
    if summary is not None and summary.get("finished"):
        return "done"
    last = RunFolder(out).checkpoint("last")
    if checkpoint.resumable(last):
        found = checkpoint.run_id(last)
        if run_id is None or found != run_id:
            whose = f"this sweep's is {run_id!r}" if run_id else "this sweep started no run there"
            raise ConfigError(
                f"{last}: not written by this sweep (its run id is {found!r}; {whose}): not resumed; remove the "
                "folder or use another --name"
            )
        return "resume"
    return "new"


def read_summary(run: Path) -> dict[str, Any] | None:
    path = RunFolder(run).summary
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def read_ledger(sweep_dir: Path) -> dict[str, str]:
    """Combination -> run id of the runs this sweep started (empty for a new sweep)."""
    try:
        data = json.loads((sweep_dir / LEDGER).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{sweep_dir / LEDGER}: unreadable ({exc})") from None
    runs = data.get("runs") if isinstance(data, dict) else None
    if not isinstance(runs, dict):
        raise ConfigError(f"{sweep_dir / LEDGER}: expected {{'runs': {{combination: run id}}}}")
    return {str(name): str(value) for name, value in runs.items()}


def _record(sweep_dir: Path, ledger: dict[str, str]) -> None:
    from fabricdata.core.fileio import atomic_write_text

    atomic_write_text(sweep_dir / LEDGER, json.dumps({"runs": ledger}, indent=1) + "\n")


def run_sweep(
    planned: Sequence[PlannedRun],
    train: Callable[[TrainConfig, bool, str], Any],
    log: Callable[[str], None] = print,
    after_run: Callable[[PlannedRun], None] | None = None,
) -> dict[str, State]:
    """Train every planned run that is not done (resuming interrupted ones it started itself); ``after_run``
    follows every finished run (e.g. predict + review, which skips what it did before). ``train(config, resume,
    run_id)`` trains one run. Returns each run's state before the sweep."""
    sweep_dir = Path(planned[0].config.out).parent if planned else Path()
    ledger = read_ledger(sweep_dir) if planned else {}
    states = {run.name: run_state(run.config, ledger.get(run.name)) for run in planned}  # checked before training
    for index, run in enumerate(planned, start=1):
        state = states[run.name]
        head = f"[{index}/{len(planned)}] {run.name}"
        if state == "done":
            log(f"{head}: finished earlier, skipped")
        else:
            if state == "new":
                ledger[run.name] = uuid.uuid4().hex
                _record(sweep_dir, ledger)
            log(f"{head}: {'resuming' if state == 'resume' else 'training'} ({', '.join(run.overrides[:-1])})")
            summary = train(run.config, state == "resume", ledger[run.name])
            if getattr(summary, "stopped_early", False):
                log(f"{head}: stopped early; rerun the sweep to continue it")
                break
        if after_run is not None:
            after_run(run)
    return states
