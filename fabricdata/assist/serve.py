"""``fabricdata serve``: the model in a web page (gradio) for annotators and QA.

Upload photos (or pick them from a folder), choose the task, type a phrase to ground, and see the boxes drawn
with their labels and real confidences, a table of the boxes, the model's raw text and the time it took. The
model is loaded once per process (bf16 on a CUDA GPU) and the images of one request are generated in batches.
The confidence slider filters the boxes of the last run without running the model again.

Limits, for a page others can reach: uploads above ``max_upload_mb`` are refused by gradio, images above
``max_pixels`` are named and skipped before they are decoded, a request decodes one batch of images at a time,
keeps only copies of at most :data:`DISPLAY_MAX_SIDE` pixels for the page (the model sees every image whole) and
gives the memory of the full-size images back to the system after the request; gradio's upload cache is a folder
only this user can read (removed at the end). Bound to a loopback address, the page answers only requests
addressed to localhost or 127.0.0.1 (see :func:`allowed_hosts`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from fabricdata.core.contracts import Tiling
from fabricdata.core.errors import ConfigError
from fabricdata.core.wording import plural

#: Host header values a server bound to a loopback address answers (the port is not part of the check)
LOCAL_HOSTS = ("localhost", "127.0.0.1")


def allowed_hosts(address: str) -> list[str]:
    """The Host headers a server bound to ``address`` answers: the local names on a loopback address, any on
    another address (the user chose to serve the network)."""
    loopback = address in ("localhost", "::1") or address.startswith("127.")
    return [*LOCAL_HOSTS, *([address] if address not in LOCAL_HOSTS else [])] if loopback else ["*"]


TASK_CHOICES = ("od", "dense", "grounding", "caption")
#: the longest side of an image as the page shows it (boxes are drawn scaled; the table keeps image pixels)
DISPLAY_MAX_SIDE = 1600
#: images with more pixels are refused by the page (``serve --max-pixels``): 64 megapixels, 192 MB decoded
DEFAULT_MAX_PIXELS = 64_000_000
#: larger uploads are refused by gradio (``serve --max-upload-mb``)
DEFAULT_MAX_UPLOAD_MB = 64
TABLE_HEADERS = ["image", "label", "confidence", "xmin", "ymin", "xmax", "ymax", "phrase"]
DEFAULT_MIN_CONFIDENCE = 0.25


@dataclass(slots=True)
class Photo:
    """One image of a request: its name, its pixels (the page's copy once shown), what the model said about it
    (boxes in the image's own pixels), and the page copy's pixels per image pixel."""

    name: str
    image: Any
    results: list[dict[str, Any]]
    scale: float = 1.0


def for_display(photo: Photo) -> Photo:
    """``photo`` with a copy of its image of at most DISPLAY_MAX_SIDE pixels a side (the full image is released)."""
    from PIL import Image

    width, height = photo.image.size
    scale = min(1.0, DISPLAY_MAX_SIDE / max(width, height))
    if scale == 1.0:
        return photo
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = photo.image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    return Photo(photo.name, small, photo.results, scale)


class Detector:
    """A model loaded once, and everything the page asks of it."""

    def __init__(self, source: str, phrases: tuple[tuple[str, str], ...], batch_size: int, max_new_tokens: int | None,
                 num_beams: int, tiling: Tiling | None = None, tile_and_full: bool = False) -> None:  # fmt: skip
        from finetune.model import load_for_inference
        from finetune.predict import PredictOptions, inference_placement

        placement = inference_placement()
        self.model, self.processor = load_for_inference(source, **placement)
        self.source = source
        self.device = f"{placement.get('device', 'cpu')} {'bf16' if placement else 'fp32'}"
        self.phrases = phrases
        self.options = PredictOptions(batch_size=batch_size, num_beams=num_beams, max_new_tokens=max_new_tokens,
                                      tiling=tiling, tile_and_full=tile_and_full)  # fmt: skip

    def detect(self, images: Sequence[tuple[str, Any]], task: str, phrase: str = "") -> tuple[list[Photo], float]:
        """Run ``task`` on named PIL images in batches; returns the photos with their results and the seconds."""
        from finetune.predict import describe, predict_task

        token = predict_task(task)
        asked = self.phrases
        if task == "grounding" and phrase.strip():
            asked = tuple((part.strip(), part.strip()) for part in phrase.split(",") if part.strip())
        options = replace(self.options, task=token, phrases=asked)
        started = time.perf_counter()
        results = describe(self.model, self.processor, [image for _, image in images], options) if images else []
        seconds = time.perf_counter() - started
        return [Photo(name, image, found) for (name, image), found in zip(images, results, strict=True)], seconds


def load_images(
    paths: Sequence[str | Path], max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[list[tuple[str, Any]], list[str]]:
    """Named RGB images (the one decode, as for training), and one line for each file that is not a readable
    image or has more than ``max_pixels`` pixels (checked on its header, before decoding)."""
    from finetune.data import UnreadableImageError, read_image

    images, problems = [], []
    for path in paths:
        name = Path(path).name
        try:
            images.append((name, read_image(path, max_pixels)))
        except UnreadableImageError as exc:
            if exc.kind == "DecompressionBombError":
                problems.append(f"{name}: too large ({exc.detail}); the page takes images of up to {max_pixels} pixels")
            else:
                problems.append(f"{name}: not a readable image ({exc.kind})")
    return images, problems


#: well-apart colours for boxes, given to labels in a stable order
PALETTE = ((230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212))  # fmt: skip


def colours(labels: Sequence[str]) -> dict[str, tuple[int, int, int]]:
    """A colour per label: the known classes first, in their order, then the others sorted."""
    ordered = list(dict.fromkeys(labels))
    return {label: PALETTE[index % len(PALETTE)] for index, label in enumerate(ordered)}


def draw(photo: Photo, min_confidence: float, palette: dict[str, tuple[int, int, int]] | None = None) -> Any:
    """The photo with its boxes (at or above ``min_confidence``), labels and confidences drawn."""
    from PIL import ImageDraw

    boxes = shown(photo, min_confidence)
    palette = palette or colours(sorted(det["label"] for det in boxes))
    canvas = photo.image.copy()
    pen = ImageDraw.Draw(canvas)
    width = max(2, round(max(canvas.size) / 300))
    for det in boxes:
        box = [value * photo.scale for value in det["bbox"]]
        tint = palette.get(det["label"], PALETTE[-1])
        pen.rectangle(box, outline=tint, width=width)
        text = f"{det['label']} {det['confidence']:.2f}"
        left, top, right, bottom = pen.textbbox((box[0], box[1]), text)
        lift = bottom - top + 4 if box[1] > bottom - top + 4 else -width  # above the box, inside at the top edge
        pen.rectangle((left, top - lift, right + 4, bottom - lift + 2), fill=tint)
        pen.text((box[0] + 2, box[1] - lift), text, fill=(0, 0, 0))
    return canvas


def shown(photo: Photo, min_confidence: float) -> list[dict[str, Any]]:
    """The photo's boxes at or above ``min_confidence``, each with the phrase it answers (grounding)."""
    return [
        {**det, "phrase": result.get("phrase", "")}
        for result in photo.results
        for det in result["detections"]
        if det["confidence"] >= min_confidence
    ]


def table(photos: Sequence[Photo], min_confidence: float) -> list[list[Any]]:
    rows = []
    for photo in photos:
        for det in shown(photo, min_confidence):
            rows.append([photo.name, det["label"], round(det["confidence"], 3), *det["bbox"], det["phrase"]])
    return rows


def raw_text(photos: Sequence[Photo]) -> str:
    lines = []
    for photo in photos:
        for result in photo.results:
            asked = f" [{result['phrase']}]" if result.get("phrase") else ""
            said = result.get("caption") if result.get("caption") is not None else result["text"]
            lines.append(f"{photo.name}{asked}: {said}")
    return "\n".join(lines)


def status(photos: Sequence[Photo], seconds: float, problems: Sequence[str], device: str) -> str:
    lines = [f"**error:** {problem}" for problem in problems]
    if photos:
        boxes = sum(len(result["detections"]) for photo in photos for result in photo.results)
        each = seconds / len(photos)
        lines.append(
            f"{plural(len(photos), 'image')}, {plural(boxes, 'box', 'boxes')} in {seconds:.2f} s "
            f"({each:.2f} s per image, {device})"
        )
    elif not problems:
        lines.append("upload one or more photos (or pick them from the folder), then press Detect")
    return "  \n".join(lines)


def build(
    detector: Detector, folder: Path | None = None, title: str = "fabricdata", max_pixels: int = DEFAULT_MAX_PIXELS
) -> Any:
    """The gradio page; ``folder`` adds a picker of its images (any depth). Uploaded files are deleted an hour
    after they came."""
    import gradio as gr

    from finetune.predict import folder_images

    picks = {ref.image: ref.path for ref in folder_images(folder)} if folder is not None else {}
    detect, refilter = _handlers(detector, picks, max_pixels)
    with gr.Blocks(title=title, analytics_enabled=False, delete_cache=(600, 3600)) as page:
        tiling = detector.options.tiling
        sliced = f", tile by tile ({tiling.describe()})" if tiling is not None else ""
        gr.Markdown(f"# {title}\nFabric defects found by `{detector.source}`{sliced}")
        with gr.Row():
            with gr.Column(scale=1):
                files = gr.File(label="photos", file_count="multiple", file_types=["image"])
                picked = gr.Dropdown(
                    choices=sorted(picks), multiselect=True, label=f"or pick from {folder}", visible=bool(picks)
                )
                task = gr.Radio(list(TASK_CHOICES), value="od", label="task")
                phrase = gr.Textbox(label="phrase to ground (grounding; several: comma-separated)",
                                    placeholder="broken weft")  # fmt: skip
                button = gr.Button("Detect", variant="primary")
                threshold = gr.Slider(0.0, 1.0, value=DEFAULT_MIN_CONFIDENCE, step=0.01, label="minimum confidence")
            with gr.Column(scale=2):
                gallery = gr.Gallery(label="detections", columns=2, height="auto", elem_id="detections")
                boxes = gr.Dataframe(headers=TABLE_HEADERS, label="boxes", elem_id="boxes", interactive=False)
                said = gr.Textbox(label="model text", lines=3, elem_id="raw")
                note = gr.Markdown(elem_id="status")
        state = gr.State([])
        button.click(
            detect,
            inputs=[files, picked, task, phrase, threshold],
            outputs=[gallery, boxes, said, note, state],
            api_name="detect",
        )
        threshold.release(refilter, inputs=[state, threshold], outputs=[gallery, boxes], api_name="refilter")
    return page


def _handlers(
    detector: Detector, picks: dict[str, Path], max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """The page's two actions: detect (run the model on uploaded or picked photos) and refilter (the last
    result at another minimum confidence, without running the model). ``detect`` decodes one batch of images at
    a time and keeps only their display copies (the page's state holds nothing larger)."""
    classes = [label for _, label in detector.phrases]

    def drawn(photos: Sequence[Photo], min_confidence: float) -> list[tuple[Any, str]]:
        found = sorted({det["label"] for photo in photos for det in shown(photo, min_confidence)})
        palette = colours([*classes, *found])
        return [(draw(photo, min_confidence, palette), photo.name) for photo in photos]

    def detect(
        files: list[Any] | None, picked: list[str] | None, task: str, phrase: str, min_confidence: float
    ) -> tuple[Any, ...]:
        paths = [getattr(item, "name", item) for item in files or []] + [picks[name] for name in picked or []]
        problems: list[str] = []
        if task == "grounding" and not phrase.strip() and not detector.phrases:
            problems.append("grounding needs a phrase (type one, e.g. 'broken weft')")
            paths = []
        photos: list[Photo] = []
        seconds, step = 0.0, max(1, detector.options.batch_size)
        for start in range(0, len(paths), step):
            images, unreadable = load_images(paths[start : start + step], max_pixels)
            found, spent = detector.detect(images, task, phrase)
            photos += [for_display(photo) for photo in found]
            problems += unreadable
            seconds += spent
            del images, found  # the full-size images of this batch go before the next is decoded
        give_back_memory()
        return (
            drawn(photos, min_confidence),
            table(photos, min_confidence),
            raw_text(photos),
            status(photos, seconds, problems, detector.device),
            photos,
        )

    def refilter(photos: list[Photo] | None, min_confidence: float) -> tuple[Any, Any]:
        photos = photos or []
        return drawn(photos, min_confidence), table(photos, min_confidence)

    return detect, refilter


def give_back_memory() -> None:
    """Return the memory of a request's freed full-size images to the system. glibc keeps freed heap memory of
    large allocations for reuse, so without this a server's footprint stays at its largest request (two 7000 x 7000
    PNGs: 510 MiB after the request instead of 68 MiB). Nothing elsewhere than glibc."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        trim = getattr(ctypes.CDLL("libc.so.6"), "malloc_trim", None)
    except OSError:
        return
    if trim is not None:
        trim(0)


@contextlib.contextmanager
def private_uploads() -> Iterator[Path]:
    """gradio's upload cache in a new folder only this user can read (mode 0700 from mkdtemp; removed at the
    end), instead of the shared temp folder's ``gradio/``. A GRADIO_TEMP_DIR the user set is left as it is."""
    chosen = os.environ.get("GRADIO_TEMP_DIR")
    if chosen:
        yield Path(chosen)
        return
    folder = Path(tempfile.mkdtemp(prefix="fabricdata-serve-"))
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    try:
        yield folder
    finally:
        os.environ.pop("GRADIO_TEMP_DIR", None)
        shutil.rmtree(folder, ignore_errors=True)


def serve(
    source: str,
    host: str = "127.0.0.1",
    port: int = 7860,
    folder: Path | None = None,
    phrases: tuple[tuple[str, str], ...] = (),
    batch_size: int = 8,
    max_new_tokens: int | None = None,
    num_beams: int = 3,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_upload_mb: int = DEFAULT_MAX_UPLOAD_MB,
    tiling: Tiling | None = None,
    tile_and_full: bool = False,
) -> None:
    """Load the model once and serve the page until interrupted (limits and Host check: the module docstring);
    ``tiling`` slices every photo and merges the boxes back onto it.

    Raises:
        ConfigError: ``folder`` is not a folder; the model cannot be loaded.
    """
    from starlette.middleware import Middleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    if folder is not None and not folder.is_dir():
        raise ConfigError(f"--images {folder}: not a folder")
    detector = Detector(source, phrases, batch_size, max_new_tokens, num_beams, tiling, tile_and_full)
    hosts = Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts(host))
    with private_uploads():
        page = build(detector, folder, max_pixels=max_pixels)
        page.queue().launch(
            server_name=host, server_port=port, share=False, inbrowser=False, show_error=True, quiet=True,
            max_file_size=f"{max_upload_mb}mb", app_kwargs={"middleware": [hosts]},
        )  # fmt: skip
