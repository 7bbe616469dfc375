"""Loading Florence-2 (hub id, local folder, merged model, or a run's adapter) and wrapping it with LoRA/DoRA.

One code path serves ``florence-community/Florence-2-base``, a local checkpoint and the tiny offline model:
native transformers classes, no remote code. Weights are read from safetensors only (``use_safetensors=True``, and
an adapter without ``adapter_model.safetensors`` is refused): a pickled ``pytorch_model.bin`` / ``adapter_model.bin``
is never unpickled, so a model folder from elsewhere cannot run code. Processors are JSON and text files.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from fabricdata.core.contracts import RunFolder
from fabricdata.core.errors import ConfigError
from finetune.config import TARGET_PRESETS, LoraSettings

ADAPTER_FILE = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


def load_base(model_id: str, dtype: Any = None, device: Any = None) -> tuple[Any, Any]:
    """A Florence-2 model and its processor from a hub id or a local folder (safetensors weights only).

    Raises:
        ConfigError: the model or processor cannot be loaded (missing, no safetensors weights, ...).
    """
    from transformers import AutoModelForImageTextToText, AutoProcessor

    local = Path(model_id).is_dir()
    try:
        processor = AutoProcessor.from_pretrained(model_id, local_files_only=local)  # type: ignore[no-untyped-call]
        model = AutoModelForImageTextToText.from_pretrained(
            model_id, dtype=dtype, local_files_only=local, use_safetensors=True
        )
    except OSError as exc:
        raise ConfigError(f"model {model_id!r} cannot be loaded: {str(exc).splitlines()[0]}") from None
    if device is not None:
        model.to(device)
    return model, processor


def load_for_inference(source: str | Path, dtype: Any = None, device: Any = None) -> tuple[Any, Any]:
    """A model ready to predict: a run folder / checkpoint with an adapter, a merged model, or a base model."""
    path = Path(source)
    adapter = _adapter_dir(path)
    if adapter is None:
        model, processor = load_base(str(source), dtype, device)
    else:
        import json

        from peft import PeftModel

        if not (adapter / ADAPTER_WEIGHTS).is_file():
            raise ConfigError(f"{adapter}: no {ADAPTER_WEIGHTS} (pickled adapter weights are never loaded)")
        base = json.loads((adapter / ADAPTER_FILE).read_text())["base_model_name_or_path"]
        model, _ = load_base(base, dtype, device)
        model = PeftModel.from_pretrained(model, str(adapter))
        processor = _processor_of(adapter, base)
    model.eval()
    return model, processor


def _adapter_dir(path: Path) -> Path | None:
    for candidate in (path, RunFolder(path).checkpoint("best"), RunFolder(path).checkpoint("last")):
        if (candidate / ADAPTER_FILE).is_file():
            return candidate
    return None


def _processor_of(folder: Path, fallback: str) -> Any:
    from transformers import AutoProcessor

    source = str(folder) if (folder / "processor_config.json").is_file() else fallback
    return AutoProcessor.from_pretrained(source, local_files_only=Path(source).is_dir())  # type: ignore[no-untyped-call]


def linear_module_names(model: Any) -> list[str]:
    import torch

    return [name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)]


def resolve_targets(model: Any, targets: str | list[str]) -> str | list[str]:
    """Turn a preset, regex or name list into peft's ``target_modules``; every target must match something."""
    names = linear_module_names(model)
    if isinstance(targets, list):
        leaves = sorted({name.rsplit(".", 1)[-1] for name in names})
        missing = [t for t in targets if t not in leaves]
        if missing:
            raise ConfigError(
                f"lora.targets: {', '.join(missing)} match no module of this model; linear modules are named: "
                f"{', '.join(leaves)}"
            )
        return targets
    pattern = TARGET_PRESETS.get(targets, targets)
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"lora.targets: {targets!r} is neither a preset nor a valid regex ({exc})") from None
    if not any(compiled.fullmatch(name) for name in names):
        examples = ", ".join(names[:3] + names[-3:])
        raise ConfigError(
            f"lora.targets: {targets!r} matches no module path (presets: {', '.join(TARGET_PRESETS)}; "
            f"paths look like {examples})"
        )
    return pattern


def add_adapter(model: Any, settings: LoraSettings) -> Any:
    """Wrap ``model`` with a LoRA (or DoRA) adapter on the resolved targets; only the adapter trains."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=resolve_targets(model, settings.targets),
        use_dora=settings.use_dora,
        bias="none",
    )
    return get_peft_model(model, config)


def merge_adapter(run: str | Path, out: str | Path) -> Path:
    """Merge a run's adapter into a standalone model folder loadable with AutoModelForImageTextToText."""
    model, processor = load_for_inference(run)
    if not hasattr(model, "merge_and_unload"):
        raise ConfigError(f"{run}: no adapter found (expected {ADAPTER_FILE} in the run's checkpoints)")
    merged = model.merge_and_unload()
    target = Path(out)
    merged.save_pretrained(target)
    processor.save_pretrained(target)
    return target
