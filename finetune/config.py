"""The training configuration: one typed, frozen model; defaults are the seed project's findings.

A YAML file gives any subset of the keys; ``--set key=value`` (dotted for nested keys, values parsed as YAML)
overrides them. ``schemas/train-config.schema.json`` is generated from this model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fabricdata.core.errors import ConfigError

LANGUAGE = r"model\.language_model\..*\.(q_proj|k_proj|v_proj|out_proj|fc1|fc2)"
VISION = r"model\.vision_tower\..*\.(qkv|proj|fc1|fc2)"
#: target-module presets: regexes over full module paths (a plain name list would also hit the vision fc1/fc2)
HEADS = r"lm_head|model\.multi_modal_projector\.image_projection"
TARGET_PRESETS: dict[str, str] = {
    "language": LANGUAGE,
    "vision": VISION,
    "language+vision": f"({LANGUAGE})|({VISION})",
    # also the image projection and the output layer: needed where the base has never seen the labels
    "all": f"({LANGUAGE})|({VISION})|{HEADS}",
}


class LoraSettings(BaseModel):
    """LoRA / DoRA adapter settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    r: int = Field(8, ge=1, description="Rank of the LoRA update matrices.")
    alpha: int = Field(16, ge=1, description="LoRA scaling numerator (scale = alpha / r).")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on the LoRA branch.")
    targets: str | list[str] = Field(
        "language+vision",
        description="Preset (language, vision, language+vision, all), a regex over module paths, or a list of "
        "module names. Every target must match at least one module, or the run stops before training.",
    )
    use_dora: bool = Field(False, description="Weight-decomposed LoRA (DoRA); about 2x slower per step.")


class TrainConfig(BaseModel):
    """Everything a fine-tune run needs; saved as ``runs/NAME/config.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    model: str = Field(
        "florence-community/Florence-2-base",
        description="Hub id or local folder of a native Florence-2 checkpoint (or a merged fabricdata model).",
    )
    data: Path = Field(Path("export"), description="Florence-2 export folder (train/, valid/, manifest.json).")
    out: Path = Field(Path("runs/run1"), description="Run folder: checkpoints, metrics.csv, loss_curve.png.")
    epochs: int = Field(10, ge=1, description="Passes over the training split.")
    lr: float = Field(1e-6, gt=0, description="Peak learning rate of AdamW.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    warmup_ratio: float = Field(0.05, ge=0, le=1, description="Share of the optimizer steps spent warming up.")
    schedule: Literal["linear", "cosine", "constant"] = Field("linear", description="Learning-rate decay.")
    batch_size: int = Field(4, ge=1, description="Images per step and process.")
    grad_accum: int = Field(1, ge=1, description="Gradient accumulation steps per optimizer step.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping norm.")
    seed: int = Field(0, description="Seed of weights init, dropout and data order.")
    num_workers: int = Field(2, ge=0, description="DataLoader worker processes (image decoding and collation).")
    precision: Literal["auto", "bf16", "fp32"] = Field(
        "auto", description="auto = bf16 autocast on CUDA when supported, fp32 otherwise."
    )
    tasks: list[str] | None = Field(None, description="Train only on these task tokens (default: all).")
    save_every_steps: int = Field(0, ge=0, description="Also save 'last' every N optimizer steps (0: per epoch).")
    stop_after_steps: int = Field(
        0, ge=0, description="Stop (saving 'last') after N optimizer steps, as an interruption would; 0: off."
    )
    lora: LoraSettings = Field(default_factory=lambda: LoraSettings())


def _parse_value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _assign(tree: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {dotted}: {key} is not a section")
        node = child
    node[keys[-1]] = value


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """A config from an optional YAML file plus ``key=value`` overrides; clear errors for bad keys or values."""
    tree: dict[str, Any] = {}
    if path is not None:
        source = Path(path)
        try:
            loaded = yaml.safe_load(source.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{source}: cannot read the config ({exc.__class__.__name__}: {exc})") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{source}: a config is a mapping of keys to values")
        tree = loaded
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item}: expected key=value, e.g. --set lora.r=16")
        key, _, raw = item.partition("=")
        _assign(tree, key.strip(), _parse_value(raw.strip()))
    try:
        return TrainConfig.model_validate(tree)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors(include_url=False)
        )
        raise ConfigError(f"{path or '--set'}: invalid config: {problems}") from None


def dump_config(config: TrainConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def defaults_table() -> list[tuple[str, str, str]]:
    """(key, default, description) of every key, for ``fabricdata train --help``."""
    rows = []
    for name, field in TrainConfig.model_fields.items():
        if name == "lora":
            for sub, subfield in LoraSettings.model_fields.items():
                rows.append((f"lora.{sub}", repr(subfield.default), subfield.description or ""))
        else:
            rows.append((name, repr(field.default), field.description or ""))
    return rows
