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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from fabricdata.core.boxes import ImageSize, corners_ordered
from fabricdata.core.contracts import ExportFolder, RunFolder, Tiling, shipped
from fabricdata.core.errors import ConfigError
from fabricdata.core.fileio import atomic_write_text
from fabricdata.core.florence import (
    MAX_TEXT_TOKENS,
    TASK_DENSE,
    TASK_GROUNDING,
    TASK_OD,
    TASKS,
    ParsedBox,
    parse_pieces,
    task_token,
)
from fabricdata.core.images import IMAGE_EXTENSIONS
from fabricdata.core.jsonl import read_jsonl
from fabricdata.core.walk import image_files
from finetune.data import UnreadableImageError, read_image

DEFAULT_MAX_NEW_TOKENS = MAX_TEXT_TOKENS
#: the project's class -> phrase table, used for grounding when a run's export has none
PHRASES_FILE = shipped("pipelines") / "phrases.yaml"


TASK_CAPTION = "<CAPTION>"
#: what ``predict --task`` accepts: the exported box tasks and a plain caption
PREDICT_TASKS: dict[str, str] = {**TASKS, "caption": TASK_CAPTION}
BOX_TASKS = frozenset(TASKS.values())


def predict_task(name: str) -> str:
    """``od`` / ``dense`` / ``grounding`` / ``caption`` (or the task token itself) to the task token."""
    return task_token(name, PREDICT_TASKS)


@dataclass(frozen=True, slots=True)
class PredictOptions:
    batch_size: int = 8
    num_beams: int = 3
    #: None: the export's label budget (predict_run), else the model's maximum
    max_new_tokens: int | None = None
    task: str = TASK_OD
    #: (phrase, label) pairs: grounding asks every image for each phrase and labels its boxes with the label;
    #: dense captions equal to a phrase are labelled with its label (the class it stands for)
    phrases: tuple[tuple[str, str], ...] = ()
    #: slice every image into tiles and merge their boxes back (finetune.tiles); None: whole images
    tiling: Tiling | None = None
    #: with a tiling: also predict the whole image and merge its boxes in
    tile_and_full: bool = False


@dataclass(frozen=True, slots=True)
class ImageRef:
    """An image to predict on: its path, its name in the export, and the original file it came from."""

    path: Path
    image: str
    filepath: str | None


def export_images(data: str | Path, split: str) -> list[ImageRef]:
    """The images of one split folder of an export, with their original paths when the export recorded them;
    for a tiled export, the whole frames (``frames.jsonl``), never the tiles."""
    export = ExportFolder(Path(data))
    folder, annotations, listed = export.split(split), export.annotations(split), export.sources(split)
    if not annotations.is_file():
        raise ConfigError(f"{annotations}: not found (is {data} a 'fabricdata export florence' folder?)")
    if export.frames(split).is_file():
        frames = read_jsonl(export.frames(split), "a frames record", lambda e: (str(e["image"]), e["filepath"]))
        return [ImageRef(folder / name, name, filepath) for name, filepath in frames]
    sources: dict[str, str] = {}
    if listed.is_file():
        pairs = read_jsonl(listed, "a sources record", lambda e: (str(e["image"]), e["filepath"]))
        sources = dict(pairs)
    names = dict.fromkeys(read_jsonl(annotations, "an export record", lambda e: str(e["image"])))
    return [ImageRef(folder / name, name, sources.get(name)) for name in names]


def folder_images(folder: str | Path) -> list[ImageRef]:
    """Every image below ``folder`` (any depth), named by its path relative to the folder."""
    root = Path(folder).resolve()
    return [ImageRef(path, path.relative_to(root).as_posix(), str(path)) for path in image_files(root)]


def _ask(options: PredictOptions) -> list[tuple[str, str | None, str | None]]:
    """The (prompt, phrase, label) triples asked of every image."""
    if options.task != TASK_GROUNDING:
        return [(options.task, None, None)]
    if not options.phrases:
        raise ConfigError("grounding needs at least one phrase (--phrase 'broken weft')")
    return [(TASK_GROUNDING + phrase, phrase, label) for phrase, label in options.phrases]


def generate(
    model: Any, processor: Any, images: list[Any], options: PredictOptions, prompts: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """Generate for a batch of PIL images (one prompt each, default the task token): per image its raw text,
    its boxes with confidences (labels as generated) and, for captions, the caption."""
    import torch

    device = next(model.parameters()).device
    texts = list(prompts) if prompts is not None else [options.task] * len(images)
    inputs = processor(text=texts, images=images, return_tensors="pt", padding=True)
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
        text = tokenizer.decode([t for t in tokens if t != tokenizer.pad_token_id], skip_special_tokens=False)
        if options.task == TASK_CAPTION:
            caption = tokenizer.decode(tokens, skip_special_tokens=True).strip()
            results.append({"text": text, "detections": [], "malformed_boxes": 0, "caption": caption})
            continue
        logprobs = scores[row].float().tolist()
        pieces = [tokenizer.decode([t], skip_special_tokens=False) for t in tokens]
        detections, malformed = _detections(parse_pieces(pieces), logprobs, ImageSize(*image.size))
        results.append({"text": text, "detections": detections, "malformed_boxes": malformed})
    return results


def _detections(found: Sequence[ParsedBox], logprobs: Sequence[float], size: ImageSize) -> tuple[list[Any], int]:
    """Parsed boxes with their confidences, and how many were malformed (corners in the wrong order)."""
    detections = []
    malformed = 0
    for box in found:
        if not corners_ordered(box.bins):  # generated corners in the wrong order: not a box (counted, not hidden)
            malformed += 1
            continue
        picked = [logprobs[i] for i in (*box.label_pieces, *box.loc_pieces) if math.isfinite(logprobs[i])]
        confidence = math.exp(sum(picked) / len(picked)) if picked else 0.0
        detections.append(
            {
                "label": box.label,
                "bbox": [round(v, 2) for v in box.box(size).as_tuple()],
                "confidence": round(min(max(confidence, 0.0), 1.0), 6),
            }
        )
    return detections, malformed


def describe(model: Any, processor: Any, images: Sequence[Any], options: PredictOptions) -> list[list[dict[str, Any]]]:
    """Everything the task asks of each PIL image, in batches of ``options.batch_size`` generations: per image
    one result per prompt (one per phrase for grounding), each with ``task``, ``text``, ``detections``,
    ``malformed_boxes`` and ``phrase`` or ``caption`` where they apply. Box labels are the classes phrases
    stand for; a relabelled box keeps its generated ``text``. With ``options.tiling`` (box tasks), each image
    is sliced and its boxes merged back (:func:`finetune.tiles.describe_tiled`)."""
    if options.tiling is not None and options.task in BOX_TASKS:
        from finetune.tiles import describe_tiled

        return describe_tiled(model, processor, images, options)
    asks = _ask(options)
    jobs = [(index, ask) for index in range(len(images)) for ask in asks]
    known = {phrase.casefold(): label for phrase, label in options.phrases}
    out: list[list[dict[str, Any]]] = [[] for _ in images]
    for start in range(0, len(jobs), options.batch_size):
        chunk = jobs[start : start + options.batch_size]
        results = generate(model, processor, [images[i] for i, _ in chunk], options, [ask[0] for _, ask in chunk])
        for (index, (_, phrase, label)), result in zip(chunk, results, strict=True):
            for det in result["detections"]:
                named = label if label is not None else known.get(det["label"].casefold(), det["label"])
                if named != det["label"]:
                    det["text"], det["label"] = det["label"], named
            record: dict[str, Any] = {"task": options.task}
            if phrase is not None:
                record["phrase"] = phrase
            out[index].append({**record, **result})
    return out


@dataclass(slots=True)
class PredictResult:
    """What :func:`predict` wrote: the number of records, and the images it could not read (one line each)."""

    records: int
    unreadable: list[str]


def predict(
    model: Any,
    processor: Any,
    images: Sequence[ImageRef],
    out: str | Path,
    options: PredictOptions,
    progress: Callable[[int], None] | None = None,
) -> PredictResult:
    """Predict every image and write ``out`` (predictions.jsonl, one line per image, task and phrase),
    atomically. An image that cannot be read is skipped and named; the others are predicted."""
    lines = []
    unreadable = []
    per_batch = max(1, options.batch_size // len(_ask(options)))
    for start in range(0, len(images), per_batch):
        batch = images[start : start + per_batch]
        readable: list[tuple[ImageRef, Any]] = []
        for ref in batch:
            try:
                readable.append((ref, read_image(ref.path)))
            except UnreadableImageError as exc:
                unreadable.append(str(exc))
        results = describe(model, processor, [image for _, image in readable], options) if readable else []
        for (ref, _), records in zip(readable, results, strict=True):
            for result in records:
                record: dict[str, Any] = {"image": ref.image, **result}
                if ref.filepath is not None:
                    record["filepath"] = ref.filepath
                lines.append(json.dumps(record, ensure_ascii=False))
        if progress:
            progress(len(batch))
    atomic_write_text(out, "".join(line + "\n" for line in lines))
    return PredictResult(len(lines), unreadable)


def run_data(folder: Path) -> Path:
    """The export a run trained on (its ``config.yaml``'s ``data``)."""
    import yaml

    config = RunFolder(folder).config
    if not config.is_file():
        raise ConfigError(f"{folder}: no {RunFolder.CONFIG} to take the export folder from; give --data")
    data = (yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("data")
    if not data:
        raise ConfigError(f"{config}: has no 'data' key; give --data")
    return Path(data)


def run_export(folder: Path | None) -> Path | None:
    """The export a training run learned from; None for a folder that is no training run (a merged model, a
    base model) or no folder, which can still predict any images."""
    return run_data(folder) if folder is not None and RunFolder(folder).config.is_file() else None


def label_budget(data: Path | None) -> int:
    """The export's label budget in tokens (manifest ``max_label_tokens``), else (no export, or none recorded)
    the model's maximum."""
    manifest = ExportFolder(data).manifest if data is not None else None
    if manifest is None or not manifest.is_file():
        return DEFAULT_MAX_NEW_TOKENS
    try:
        return int(json.loads(manifest.read_text(encoding="utf-8"))["max_label_tokens"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        raise ConfigError(f"{manifest}: no usable max_label_tokens; give --max-new-tokens") from None


def run_phrases(data: Path | None) -> tuple[tuple[str, str], ...]:
    """(phrase, class) pairs a model was trained with: the export manifest's phrases, else the project's
    ``pipelines/phrases.yaml``."""
    import yaml

    table: dict[str, str] = {}
    manifest = ExportFolder(data).manifest if data is not None else None
    if manifest is not None and manifest.is_file():
        try:
            table = dict(json.loads(manifest.read_text(encoding="utf-8")).get("phrases") or {})
        except (json.JSONDecodeError, AttributeError, TypeError, ValueError):
            raise ConfigError(f"{manifest}: 'phrases' is not a class -> phrase table") from None
    if not table and PHRASES_FILE.is_file():
        table = yaml.safe_load(PHRASES_FILE.read_text(encoding="utf-8")) or {}
    return tuple((str(phrase), str(label)) for label, phrase in table.items())


@dataclass(frozen=True, slots=True)
class RunPrediction:
    """What :func:`predict_run` did: records written, where from, where to, and the unreadable images."""

    records: int
    images: int
    source: Path
    target: Path
    unreadable: list[str]
    #: the tiling the images were sliced by (None: whole images)
    tiling: Tiling | None = None


def predict_run(
    folder: Path,
    data: Path | None = None,
    split: str = "test",
    model: str | None = None,
    options: PredictOptions | None = None,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
    images_dir: Path | None = None,
    phrases: Sequence[str] = (),
    tiling: Tiling | Literal["export"] | None = "export",
) -> RunPrediction:
    """Predict one split of an export (or every image of ``images_dir``) with a run's adapter (or ``model``)
    into ``folder/predictions.jsonl``.

    The label budget and the grounding phrases come from the run's export unless given: ``phrases`` are asked
    as they are; without them, grounding asks for every class phrase of the export (or of
    ``pipelines/phrases.yaml``) and labels the boxes with the class. ``tiling`` slices the images (``"export"``:
    the tiling the run trained on, if any; None: whole images). A tiled export's split is predicted on its
    whole frames.
    """
    from finetune.model import load_for_inference
    from finetune.tiles import chosen_tiling

    if data is None:  # an export split needs the run's export; any images only use it where there is one
        data = run_data(folder) if images_dir is None else run_export(folder)
    chosen = options or PredictOptions()
    if not isinstance(tiling, str) or chosen.tiling is None:
        chosen = replace(chosen, tiling=chosen_tiling(tiling, folder, data, chosen.tile_and_full))
    if chosen.max_new_tokens is None:
        chosen = replace(chosen, max_new_tokens=label_budget(data))
    if chosen.task in (TASK_DENSE, TASK_GROUNDING) and not chosen.phrases:
        asked = tuple((phrase, phrase) for phrase in phrases) if phrases else run_phrases(data)
        chosen = replace(chosen, phrases=asked)
    if images_dir is not None:
        images, source = folder_images(images_dir), Path(images_dir)
        if not images:
            raise ConfigError(f"{images_dir}: no images found (looked for {', '.join(IMAGE_EXTENSIONS)})")
    else:
        assert data is not None
        images, source = export_images(data, split), data / split
        if not images:
            raise ConfigError(
                f"{source} has no images: that split of the export is empty (re-export after "
                "'fabricdata split', or predict another --split)"
            )
    if on_total is not None:
        on_total(len(images))
    loaded, processor = load_for_inference(model or str(folder), **inference_placement())
    folder.mkdir(parents=True, exist_ok=True)
    target = RunFolder(folder).predictions
    result = predict(loaded, processor, images, target, chosen, progress)
    return RunPrediction(result.records, len(images), source, target, result.unreadable, chosen.tiling)


def inference_placement() -> dict[str, Any]:
    """Where and how to run a model for prediction: bf16 on a CUDA GPU, float32 on the CPU."""
    import torch

    if torch.cuda.is_available():
        return {"dtype": torch.bfloat16, "device": "cuda"}
    return {}
