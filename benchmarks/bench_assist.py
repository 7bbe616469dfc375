"""The model in the annotators' hands: the page's latency per image with 1 and with 8 images per request (through
HTTP, as the browser and gradio_client call it), and ``prelabel`` beside ``predict`` on the same new photos.

The tiny random Florence-2 on the CPU, with a fixed generation length (a random model never stops by itself), so
the figures compare the request path and the batching, not a model's accuracy.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from pathlib import Path

from benchmarks.bench_store import isolated_database
from benchmarks.harness import Figure

TOKENS = 48


def _photos(folder: Path, count: int) -> list[Path]:
    from fabricdata.prepare.synth import SynthConfig, generate

    generate(SynthConfig(images=count, seed=31, width=512, height=384), folder)
    for label in folder.glob("*.xml"):
        label.unlink()
    return sorted(folder.glob("*.jpg"))


def bench_serve(model: Path, photos: list[Path], repeats: int = 3) -> list[Figure]:
    from gradio_client import Client, handle_file

    from fabricdata.assist.serve import Detector, build

    detector = Detector(str(model), (), batch_size=8, max_new_tokens=TOKENS, num_beams=3)
    page = build(detector)
    page.queue().launch(prevent_thread_lock=True, quiet=True, server_name="127.0.0.1")
    try:
        client = Client(page.local_url, verbose=False)

        def per_image(count: int) -> float:
            files = [handle_file(str(path)) for path in photos[:count]]
            best = float("inf")
            for _ in range(repeats):
                start = time.perf_counter()
                client.predict(files, [], "od", "", 0.0, api_name="/detect")
                best = min(best, (time.perf_counter() - start) / count)
            return best

        per_image(1)  # warm-up: first request, first generate
        single, batched = per_image(1), per_image(8)
    finally:
        page.close()
    return [
        Figure(
            "Serve page (tiny model, CPU)",
            "fabricdata serve, 8 images per request (batched generate), per image",
            batched * 1000,
            "fabricdata serve, 1 image per request, per image",
            single * 1000,
            unit="ms",
            higher_is_better=False,
            note=f"through HTTP with gradio_client; {TOKENS} new tokens, 3 beams",
        )
    ]


def bench_prelabel(model: Path, folder: Path, repeats: int = 2) -> list[Figure]:
    import fiftyone as fo

    from fabricdata.store.dataset import open_dataset
    from finetune.predict import PredictOptions, predict_run

    images = len(list(folder.glob("*.jpg")))
    options = PredictOptions(max_new_tokens=TOKENS)
    run = Path(tempfile.mkdtemp()) / "bench"
    fo.Dataset(f"warm-{uuid.uuid4().hex[:6]}")  # start the database outside the timings
    best_predict = best_prelabel = 0.0
    for _ in range(repeats):  # interleaved, best of each
        start = time.perf_counter()
        predict_run(run, model=str(model), options=options, images_dir=folder)
        best_predict = max(best_predict, images / (time.perf_counter() - start))
        name = f"bench-prelabel-{uuid.uuid4().hex[:6]}"
        open_dataset(name)  # the mill's dataset exists already: its schema is not part of the figure
        start = time.perf_counter()
        _prelabel(folder, name, run, model)
        best_prelabel = max(best_prelabel, images / (time.perf_counter() - start))
        fo.delete_dataset(name)
    return [
        Figure(
            "Serve page (tiny model, CPU)",
            f"fabricdata prelabel, {images} new photos 512x384 into a dataset (drafts, samples, saved view)",
            best_prelabel,
            "fabricdata predict --images on the same photos (predictions.jsonl only)",
            best_predict,
            unit="images/s",
            note="goal: near 1x, the model dominates",
        )
    ]


def _prelabel(folder: Path, name: str, run: Path, model: Path) -> None:
    from fabricdata.assist.prelabel import prelabel

    report = prelabel(folder, name, run, model=str(model), min_confidence=0.0, max_new_tokens=TOKENS)
    assert report.added == len(list(folder.glob("*.jpg"))), report


def run() -> list[Figure]:
    isolated_database()
    from finetune.tiny import build_tiny_florence

    root = Path(tempfile.mkdtemp(prefix="fabricdata-bench-assist-"))
    model = build_tiny_florence(root / "tiny")
    photos = _photos(root / "photos", 32)
    return bench_serve(model, photos) + bench_prelabel(model, root / "photos")


if __name__ == "__main__":
    from benchmarks.harness import render

    print(render(run()))
