"""Batched prediction with a real confidence per box.

A box's confidence is the geometric mean of the probabilities of the tokens that make it (its label tokens and
its four location tokens), read from the generation's transition scores; so boxes rank by how sure the model
was, and mAP means something (peer tools score every box 1.0). Detection decoding disables the
``no_repeat_ngram_size`` that Florence-2 checkpoints ship with, which would suppress repeated
``label<loc>...`` patterns (several defects of one class).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from fabricdata.boxes import ImageSize
from fabricdata.errors import ConfigError
from fabricdata.fileio import atomic_write_text
from fabricdata.florence import TASK_OD, parse_pieces
from finetune.data import load_image

DEFAULT_MAX_NEW_TOKENS = 1023


@dataclass(frozen=True, slots=True)
class PredictOptions:
    batch_size: int = 8
    num_beams: int = 3
    #: None: the export's label budget (predict_run), else the model's maximum
    max_new_tokens: int | None = None
    task: str = TASK_OD


@dataclass(frozen=True, slots=True)
class ImageRef:
    """An image to predict on: its path, its name in the export, and the original file it came from."""

    path: Path
    image: str
    filepath: str | None


def export_images(data: str | Path, split: str) -> list[ImageRef]:
    """The images of one split folder of an export, with their original paths when the export recorded them."""
    folder = Path(data) / split
    annotations = folder / "annotations.jsonl"
    if not annotations.is_file():
        raise ConfigError(f"{annotations}: not found (is {data} a 'fabricdata export florence' folder?)")
    sources: dict[str, str] = {}
    if (folder / "sources.jsonl").is_file():
        for line in (folder / "sources.jsonl").read_text(encoding="utf-8").splitlines():
            entry = json.loads(line)
            sources[entry["image"]] = entry["filepath"]
    names = dict.fromkeys(json.loads(line)["image"] for line in annotations.read_text(encoding="utf-8").splitlines())
    return [ImageRef(folder / name, name, sources.get(name)) for name in names]


def _batches(items: Sequence[ImageRef], size: int) -> Iterator[Sequence[ImageRef]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def generate(model: Any, processor: Any, images: list[Any], options: PredictOptions) -> list[dict[str, Any]]:
    """Generate for a batch of PIL images; per image its raw text and its detections with confidences."""
    import torch

    device = next(model.parameters()).device
    inputs = processor(text=[options.task] * len(images), images=images, return_tensors="pt", padding=True)
    dtype = next(model.parameters()).dtype
    with torch.no_grad():
        out = model.generate(
            input_ids=inputs["input_ids"].to(device),
            attention_mask=inputs["attention_mask"].to(device),
            pixel_values=inputs["pixel_values"].to(device, dtype),
            max_new_tokens=options.max_new_tokens or DEFAULT_MAX_NEW_TOKENS,
            num_beams=options.num_beams,
            do_sample=False,
            no_repeat_ngram_size=0,
            early_stopping=False,
            output_scores=True,
            return_dict_in_generate=True,
        )
    scores = model.compute_transition_scores(
        out.sequences, out.scores, getattr(out, "beam_indices", None), normalize_logits=options.num_beams == 1
    )
    tokenizer = processor.tokenizer
    steps = scores.shape[1]
    results = []
    for row, image in enumerate(images):
        tokens = out.sequences[row, -steps:].tolist()
        logprobs = scores[row].float().tolist()
        pieces = [tokenizer.decode([t], skip_special_tokens=False) for t in tokens]
        size = ImageSize(*image.size)
        detections = []
        malformed = 0
        for found in parse_pieces(pieces):
            x1, y1, x2, y2 = found.bins
            if x2 < x1 or y2 < y1:  # generated corners in the wrong order: not a box (counted, not hidden)
                malformed += 1
                continue
            picked = [logprobs[i] for i in (*found.label_pieces, *found.loc_pieces) if math.isfinite(logprobs[i])]
            confidence = math.exp(sum(picked) / len(picked)) if picked else 0.0
            box = found.box(size)
            detections.append(
                {
                    "label": found.label,
                    "bbox": [round(v, 2) for v in box.as_tuple()],
                    "confidence": round(min(max(confidence, 0.0), 1.0), 6),
                }
            )
        text = tokenizer.decode(tokens, skip_special_tokens=False)
        results.append({"text": text, "detections": detections, "malformed_boxes": malformed})
    return results


def predict(
    model: Any,
    processor: Any,
    images: Sequence[ImageRef],
    out: str | Path,
    options: PredictOptions,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Predict every image and write ``out`` (predictions.jsonl, one line per image and task), atomically."""
    lines = []
    for batch in _batches(images, options.batch_size):
        pil = [load_image(ref.path) for ref in batch]
        for ref, result in zip(batch, generate(model, processor, pil, options), strict=True):
            record: dict[str, Any] = {"image": ref.image, "task": options.task, **result}
            if ref.filepath is not None:
                record["filepath"] = ref.filepath
            lines.append(json.dumps(record, ensure_ascii=False))
        if progress:
            progress(len(batch))
    atomic_write_text(out, "".join(line + "\n" for line in lines))
    return len(lines)


def run_data(folder: Path) -> Path:
    """The export a run trained on (its ``config.yaml``'s ``data``)."""
    import yaml

    config = folder / "config.yaml"
    if not config.is_file():
        raise ConfigError(f"{folder}: no config.yaml to take the export folder from; give --data")
    data = (yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("data")
    if not data:
        raise ConfigError(f"{config}: has no 'data' key; give --data")
    return Path(data)


def label_budget(data: Path) -> int:
    """The export's label budget in tokens (manifest ``max_label_tokens``), else the model's maximum."""
    manifest = data / "manifest.json"
    if not manifest.is_file():
        return DEFAULT_MAX_NEW_TOKENS
    try:
        return int(json.loads(manifest.read_text(encoding="utf-8"))["max_label_tokens"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        raise ConfigError(f"{manifest}: no usable max_label_tokens; give --max-new-tokens") from None


def predict_run(
    folder: Path,
    data: Path | None = None,
    split: str = "test",
    model: str | None = None,
    options: PredictOptions | None = None,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> tuple[int, Path, Path]:
    """Predict one split of an export with a run's adapter (or ``model``) into ``folder/predictions.jsonl``.

    Returns the number of predictions, the export folder and the predictions file.
    """
    from finetune.model import load_for_inference

    data = data if data is not None else run_data(folder)
    chosen = options or PredictOptions()
    if chosen.max_new_tokens is None:
        chosen = replace(chosen, max_new_tokens=label_budget(data))
    images = export_images(data, split)
    if not images:
        raise ConfigError(
            f"{data}/{split} has no images: that split of the export is empty (re-export after "
            "'fabricdata split', or predict another --split)"
        )
    if on_total is not None:
        on_total(len(images))
    loaded, processor = load_for_inference(model or str(folder))
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "predictions.jsonl"
    return predict(loaded, processor, images, target, chosen, progress), data, target
