"""Sliced prediction beside whole-frame prediction, on 4096x256 line-scan strips: the time per frame, the tiles
per second against whole frames per second (each tile is one generation at the model's input size, like a whole
frame), and what slicing and merging cost beside the model's generations.

The tiny random Florence-2 on the CPU, with a fixed generation length (a random model never stops by itself), so
the figures compare the request path and the batching, not a model's accuracy. The merge works on realistic input:
each tile's own ground truth of 20-px defects (the pieces a model that found them would give).

    python -m benchmarks.bench_tiles
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import Figure

TOKENS = 24
STRIPS = 4
BATCH = 4  # the whole strips make one full batch; their tiles fill every batch
DEFECTS = 12  # 20-px defects per strip
SECTION = "Sliced prediction (tiny model, CPU, 4096x256 strips)"


def _strips(folder: Path) -> list[tuple[Path, list[Any]]]:
    """Synthetic strips with 20-px boxes spread along them (pixels: the synthetic weave; boxes: planned)."""
    import numpy as np
    from PIL import Image

    from fabricdata.core.boxes import Box
    from fabricdata.prepare.synth import SynthConfig, render

    config = SynthConfig(images=STRIPS, seed=41, width=4096, height=256)
    rng = np.random.default_rng(41)
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for index in range(STRIPS):
        pixels, _ = render(config, index)
        path = folder / f"strip_{index}.jpg"
        Image.fromarray(pixels).save(path, quality=92)
        corners = zip(rng.uniform(0, 4076, DEFECTS), rng.uniform(0, 236, DEFECTS), strict=True)
        made.append((path, [Box(x, y, x + 20, y + 20) for x, y in corners]))
    return made


def _per_frame(loaded: tuple[Any, Any], frames: list[Any], tiling: Any, repeats: int = 2) -> float:
    """Seconds per frame of the model path of predict, prelabel and serve (``describe``; the model loaded and the
    frames decoded beforehand), best of ``repeats``, sliced by ``tiling`` or whole."""
    from finetune.predict import PredictOptions, describe

    options = PredictOptions(max_new_tokens=TOKENS, batch_size=BATCH, tiling=tiling)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        describe(*loaded, frames, options)
        best = min(best, (time.perf_counter() - start) / len(frames))
    return best


def _overhead(strips: list[tuple[Path, list[Any]]], tiling: Any, repeats: int = 5) -> float:
    """Seconds per frame of slicing (grid and crops of a decoded frame) and merging (each tile's ground-truth
    pieces mapped back, joined and merged): what sliced prediction adds around the model."""
    from fabricdata.core.boxes import ImageSize
    from finetune.data import read_image
    from finetune.tiles import frame_tiles, merge_results

    frames = [(read_image(path), boxes) for path, boxes in strips]
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for image, boxes in frames:
            size = ImageSize(*image.size)
            grid = frame_tiles(size, tiling)
            crops = [image.crop((round(t.xmin), round(t.ymin), round(t.xmax), round(t.ymax))) for t in grid]
            results = [{"text": "", "malformed_boxes": 0, "detections": _seen(boxes, tile)} for tile in grid]
            merge_results(size, grid, results, None, tiling)
            del crops
        best = min(best, (time.perf_counter() - start) / len(frames))
    return best


def _seen(boxes: list[Any], tile: Any) -> list[dict[str, Any]]:
    """What an oracle tile would answer: its pieces of the boxes holding at least half of them."""
    from fabricdata.core.boxes import box_to_tile

    found = []
    for box in boxes:
        piece = box_to_tile(box, tile)
        if piece.width > 0 and piece.height > 0 and piece.area >= 0.5 * box.area:
            found.append({"label": "broken", "bbox": list(piece.as_tuple()), "confidence": 0.9})
    return found


def run() -> list[Figure]:
    from fabricdata.core.boxes import ImageSize
    from fabricdata.core.contracts import Tiling
    from finetune.data import read_image
    from finetune.model import load_for_inference
    from finetune.tiles import frame_tiles
    from finetune.tiny import build_tiny_florence

    root = Path(tempfile.mkdtemp(prefix="fabricdata-bench-tiles-"))
    loaded = load_for_inference(str(build_tiny_florence(root / "tiny")))
    strips = _strips(root / "strips")
    frames = [read_image(path) for path, _ in strips]
    tiling = Tiling(width=256, height=256, overlap=0.2)
    tiles = len(frame_tiles(ImageSize(4096, 256), tiling))
    _per_frame(loaded, frames, None, repeats=1)  # warm-up: first generate
    whole, sliced = _per_frame(loaded, frames, None), _per_frame(loaded, frames, tiling)
    overhead = _overhead(strips, tiling)
    note = f"{tiles} tiles of 256x256 (overlap 0.2) per strip; {TOKENS} new tokens, 3 beams, batches of {BATCH}"
    return [
        Figure(
            SECTION,
            "predict --tile 256, per frame",
            sliced * 1000,
            "predict (whole frame), per frame",
            whole * 1000,
            unit="ms",
            higher_is_better=False,
            note=note,
        ),
        Figure(
            SECTION,
            "predict --tile 256: tiles per second",
            tiles / sliced,
            "predict: whole frames per second",
            1 / whole,
            unit="generations/s",
            note="goal: near 1x, a tile costs what a frame costs",
        ),
        Figure(
            SECTION,
            "slicing + merging, per frame",
            overhead * 1000,
            "the model's generations, per frame",
            (sliced - overhead) * 1000,
            unit="ms",
            higher_is_better=False,
            note=f"merge input: each tile's pieces of {DEFECTS} 20-px defects; ratio = model time / overhead",
        ),
    ]


if __name__ == "__main__":
    from benchmarks.harness import render

    print(render(run()))
