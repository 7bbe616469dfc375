"""A tiny random Florence-2, built offline, for tests and the demo.

It has the real architecture and the real processor classes (native transformers Florence-2), only small:
a byte-level BPE tokenizer trained on a small corpus with Florence-2's special tokens (``<loc_0>`` ..
``<loc_999>``, task tags, ``<image>``), a tiny DaViT vision tower and a tiny BART. It is saved with
``save_pretrained`` and loaded back through :func:`finetune.model.load_model`, the same path that loads
``florence-community/Florence-2-base`` or a local checkpoint.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fabricdata.core.annotation import DEFAULT_CLASSES
from fabricdata.core.boxes import LOC_BINS

#: Florence-2's extra special tokens besides the location bins (as in the released tokenizer).
FLORENCE_TASK_TOKENS: tuple[str, ...] = (
    "<od>",
    "</od>",
    "<ocr>",
    "</ocr>",
    "<cap>",
    "</cap>",
    "<ncap>",
    "</ncap>",
    "<dcap>",
    "</dcap>",
    "<grounding>",
    "</grounding>",
    "<seg>",
    "</seg>",
    "<sep>",
    "<region_cap>",
    "</region_cap>",
    "<region_to_desciption>",
    "</region_to_desciption>",
    "<proposal>",
    "</proposal>",
    "<poly>",
    "</poly>",
    "<and>",
)

POST_PROCESSOR_CONFIG: dict[str, Any] = {
    "ocr": {
        "pattern": r"(.+?)" + r"<loc_(\d+)>" * 8,
        "area_threshold": 0.0,
    },
    "phrase_grounding": {"banned_grounding_tokens": ["the image"]},
    "pure_text": {},
    "description_with_bboxes": {},
    "description_with_polygons": {},
    "polygons": {},
    "bboxes": {},
    "description_with_bboxes_or_polygons": {},
}

_CORPUS: tuple[str, ...] = (
    "Locate the objects with category name in the image.",
    "Locate the objects in the image, with their descriptions.",
    "Locate the phrases in the caption: fabric with a drop and two broken wefts",
    "What does the image describe? fabric with wrinkles, drops and broken threads on the weave",
    "a an the and with of in on one two three four five six seven eight nine ten several many no",
    "wrinkle wrinkles drop drops dropped stitch broken weft wefts warp thread threads defect defects",
    "fabric textile cloth woven weave hole stain knot slub missing end pick",
)


def _train_tokenizer(classes: Sequence[str], vocab_size: int) -> Any:
    from tokenizers import ByteLevelBPETokenizer
    from transformers import AddedToken, BartTokenizer

    corpus = [*_CORPUS, " ".join(classes), " ".join(name.replace("-", " ") for name in classes)]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        corpus * 20,
        vocab_size=vocab_size,
        min_frequency=1,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        show_progress=False,
    )
    model = json.loads(bpe.to_str())["model"]
    merges: Any = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    tokenizer = BartTokenizer(vocab=model["vocab"], merges=merges, extra_special_tokens={"image_token": "<image>"})
    specials = [*FLORENCE_TASK_TOKENS, *(f"<loc_{i}>" for i in range(LOC_BINS))]
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in specials], special_tokens=True)
    return tokenizer


#: the real Florence-2-base architecture (random weights): DaViT defaults, BART 768-d, 6+6 layers
BASE_VISION: dict[str, Any] = {"projection_dim": 768, "drop_path_rate": 0.0}
BASE_TEXT: dict[str, Any] = {
    "vocab_size": 51328, "d_model": 768, "encoder_layers": 6, "decoder_layers": 6,
    "encoder_attention_heads": 12, "decoder_attention_heads": 12, "encoder_ffn_dim": 3072, "decoder_ffn_dim": 3072,
}  # fmt: skip


def build_tiny_florence(
    out: str | Path,
    classes: Sequence[str] = DEFAULT_CLASSES,
    image_size: int = 128,
    seed: int = 0,
    size: str = "tiny",
) -> Path:
    """Build a random Florence-2 (model + processor) and save it to ``out``; returns ``out``.

    ``size="tiny"`` (~0.5 M parameters) serves tests and the demo; ``size="base"`` has the real
    Florence-2-base architecture (231 M parameters, 768x768 input) for speed benchmarks on a GPU.
    """
    import torch
    from transformers import CLIPImageProcessorPil, Florence2ForConditionalGeneration, Florence2Processor

    if size not in ("tiny", "base"):
        raise ValueError(f"size must be tiny or base, got {size!r}")
    target = Path(out)
    target.mkdir(parents=True, exist_ok=True)
    tokenizer = _train_tokenizer(classes, vocab_size=420)
    if size == "base":
        image_size = 768
    torch.manual_seed(seed)
    model = Florence2ForConditionalGeneration(_architecture(size, tokenizer))
    image_processor = CLIPImageProcessorPil(
        size={"height": image_size, "width": image_size},
        crop_size={"height": image_size, "width": image_size},
        do_center_crop=False,
        do_resize=True,
        do_normalize=True,
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
        image_seq_length=_count_image_tokens(model, image_size),
    )
    processor = Florence2Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        post_processor_config=POST_PROCESSOR_CONFIG,
    )
    model.generation_config.no_repeat_ngram_size = 3  # as the released checkpoints ship it
    model.generation_config.num_beams = 3
    model.generation_config.max_new_tokens = 256
    model.save_pretrained(target)
    processor.save_pretrained(target)
    return target


def _architecture(size: str, tokenizer: Any) -> Any:
    """The Florence2Config of a ``tiny`` model (a few layers of width 64) or of Florence-2-base (``base``)."""
    from transformers import Florence2Config

    d_model = 64 if size == "tiny" else 768
    tiny_vision = {
        "depths": [1, 1, 1, 1],
        "embed_dim": [16, 32, 48, 64],
        "num_heads": [1, 2, 3, 4],
        "num_groups": [1, 2, 3, 4],
        "window_size": 4,
        "drop_path_rate": 0.0,
        "projection_dim": d_model,
    }
    tiny_text = {
        "vocab_size": len(tokenizer),
        "d_model": d_model,
        "encoder_layers": 1,
        "decoder_layers": 1,
        "encoder_attention_heads": 2,
        "decoder_attention_heads": 2,
        "encoder_ffn_dim": 128,
        "decoder_ffn_dim": 128,
        "max_position_embeddings": 1024,
        # BART's default init_std=0.02 makes the tiny decoder ignore the image (ENVIRONMENT.md)
        "init_std": d_model**-0.5,
    }
    special = {
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "decoder_start_token_id": tokenizer.eos_token_id,
        "forced_eos_token_id": tokenizer.eos_token_id,
    }
    return Florence2Config(
        vision_config=tiny_vision if size == "tiny" else BASE_VISION,
        text_config={**(tiny_text if size == "tiny" else BASE_TEXT), **special},
        image_token_id=tokenizer.image_token_id,
    )


def _count_image_tokens(model: Any, image_size: int) -> int:
    import torch

    with torch.no_grad():
        features = model.get_image_features(torch.zeros(1, 3, image_size, image_size))
    tensor = features if isinstance(features, torch.Tensor) else features.pooler_output
    return int(tensor.shape[1])
