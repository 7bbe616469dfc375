"""Procedural woven fabric with defects whose boxes are known exactly.

Each image is a plain weave (warp and weft threads with per-thread brightness variation, a fabric colour,
uneven lighting and sensor noise). Defects are painted through a soft mask; a defect's box is the tight
pixel-edge box of the pixels its mask changed, so boxes are exact by construction:

- ``wrinkle``: a long band where the weave is bent and shaded like a fold;
- ``drop``: a dropped-stitch blob where the threads are missing and the backing shows through;
- ``broken``: a broken-thread line: one thread missing over a stretch, with frayed ends.

Custom class names reuse those three styles in turn. Output is a LabelImg folder (JPEG + VOC XML side by side
and ``classes.txt``), byte-identical for the same seed: image ``i`` depends only on ``(seed, i)``.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fabricdata.core.annotation import DEFAULT_CLASSES, ImageAnnotation, LabeledBox
from fabricdata.core.boxes import Box, ImageSize
from fabricdata.core.fileio import atomic_write_bytes
from fabricdata.core.images import load_rgb
from fabricdata.formats.voc import voc_to_bytes
from fabricdata.formats.yolo import write_classes
from fabricdata.prepare.workers import process_pool

#: Default share of each class among defects (imbalanced on purpose: balancing must matter).
DEFAULT_MIX: tuple[float, ...] = (0.55, 0.30, 0.15)
STYLES: tuple[str, ...] = ("wrinkle", "drop", "broken")
_PALETTE: tuple[tuple[float, float, float], ...] = (
    (0.82, 0.80, 0.74),  # greige
    (0.25, 0.33, 0.55),  # denim
    (0.62, 0.18, 0.20),  # red
    (0.30, 0.50, 0.35),  # green
    (0.86, 0.76, 0.55),  # sand
    (0.45, 0.45, 0.48),  # grey
)
FloatArray = np.ndarray


@dataclass(frozen=True, slots=True)
class SynthConfig:
    """What :func:`generate` makes."""

    images: int = 200
    seed: int = 0
    width: int = 1024
    height: int = 768
    classes: tuple[str, ...] = DEFAULT_CLASSES
    #: Relative frequency of each class (defaults to :data:`DEFAULT_MIX`, cycled for more classes).
    mix: tuple[float, ...] | None = None
    #: Share of images without any defect.
    clean_share: float = 0.15
    jpeg_quality: int = 92
    prefix: str = "fabric"

    def class_weights(self) -> np.ndarray:
        mix = self.mix or tuple(DEFAULT_MIX[i % len(DEFAULT_MIX)] for i in range(len(self.classes)))
        weights = np.asarray(mix[: len(self.classes)], dtype=float)
        normalised: np.ndarray = weights / weights.sum()
        return normalised


@dataclass(frozen=True, slots=True)
class _Canvas:
    image: FloatArray  # H x W x 3 in 0..1
    period: float
    colour: FloatArray


def _weave(height: int, width: int, rng: np.random.Generator) -> tuple[FloatArray, float]:
    period = float(rng.uniform(7.0, 12.0))
    skew = float(rng.uniform(-0.02, 0.02))
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    u = (x + skew * y) / period
    v = (y - skew * x) / period
    cols, rows = np.floor(u).astype(np.int64), np.floor(v).astype(np.int64)
    n_cols = int(cols.max() - cols.min() + 1)
    n_rows = int(rows.max() - rows.min() + 1)
    warp_tone = rng.normal(1.0, 0.06, n_cols).astype(np.float32)[cols - cols.min()]
    weft_tone = rng.normal(0.95, 0.06, n_rows).astype(np.float32)[rows - rows.min()]
    warp = np.sin(np.pi * (u - cols)) ** 0.6 * warp_tone
    weft = np.sin(np.pi * (v - rows)) ** 0.6 * weft_tone
    on_top = ((cols + rows) % 2) == 0
    return np.where(on_top, warp, weft).astype(np.float32), period


def _canvas(size: ImageSize, rng: np.random.Generator) -> _Canvas:
    weave, period = _weave(size.height, size.width, rng)
    colour = np.asarray(_PALETTE[int(rng.integers(len(_PALETTE)))], dtype=np.float32)
    colour = np.clip(colour * rng.uniform(0.85, 1.15, 3).astype(np.float32), 0.05, 0.95)
    y = np.linspace(-1.0, 1.0, size.height, dtype=np.float32)[:, None]
    x = np.linspace(-1.0, 1.0, size.width, dtype=np.float32)[None, :]
    gx, gy = rng.uniform(-0.15, 0.15, 2)
    lighting = 1.0 + gx * x + gy * y - 0.12 * (x**2 + y**2)
    shade = (0.45 + 0.55 * weave) * lighting
    image = shade[..., None] * colour[None, None, :]
    return _Canvas(image=image.astype(np.float32), period=period, colour=colour)


def _window(cx: float, cy: float, reach: float, size: ImageSize) -> tuple[int, int, int, int]:
    x0, y0 = max(int(cx - reach), 0), max(int(cy - reach), 0)
    x1, y1 = min(int(cx + reach) + 1, size.width), min(int(cy + reach) + 1, size.height)
    return x0, y0, x1, y1


def _paint(canvas: _Canvas, window: tuple[int, int, int, int], alpha: FloatArray, target: FloatArray) -> Box | None:
    """Blend ``target`` into the window through ``alpha``; return the box of the changed pixels."""
    alpha = np.where(alpha >= 0.08, alpha, 0.0).astype(np.float32)
    rows = np.flatnonzero(alpha.any(axis=1))
    cols = np.flatnonzero(alpha.any(axis=0))
    if rows.size < 4 or cols.size < 4:
        return None
    x0, y0, x1, y1 = window
    patch = canvas.image[y0:y1, x0:x1]
    patch[...] = patch * (1.0 - alpha[..., None]) + target * alpha[..., None]
    return Box(float(x0 + cols[0]), float(y0 + rows[0]), float(x0 + cols[-1] + 1), float(y0 + rows[-1] + 1))


def _grid(window: tuple[int, int, int, int]) -> tuple[FloatArray, FloatArray]:
    x0, y0, x1, y1 = window
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    return xx + 0.5, yy + 0.5


def _wrinkle(canvas: _Canvas, size: ImageSize, rng: np.random.Generator) -> Box | None:
    length = float(rng.uniform(0.25, 0.6)) * min(size.width, size.height)
    width = float(rng.uniform(10.0, 28.0)) * min(1.0, min(size.width, size.height) / 512)
    angle = float(rng.uniform(0, np.pi))
    cx, cy = rng.uniform(0.15, 0.85) * size.width, rng.uniform(0.15, 0.85) * size.height
    window = _window(cx, cy, length / 2 + 3 * width, size)
    xx, yy = _grid(window)
    along = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
    across = -(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)
    across = across - width * 0.8 * np.sin(along / length * np.pi * 2.0)
    s = across / width
    taper = np.clip(1.0 - (np.abs(along) / (length / 2)) ** 4, 0.0, 1.0)
    alpha = np.exp(-(s**2)) * taper
    fold = 1.0 + 0.9 * np.tanh(2.5 * s)  # one side of the fold lit, the other in shadow
    target = canvas.image[window[1] : window[3], window[0] : window[2]] * (0.55 * fold)[..., None]
    return _paint(canvas, window, alpha * 0.95, np.clip(target, 0.0, 1.0))


def _drop(canvas: _Canvas, size: ImageSize, rng: np.random.Generator) -> Box | None:
    rx, ry = rng.uniform(8.0, 30.0, 2) * min(1.0, min(size.width, size.height) / 512)
    cx, cy = rng.uniform(0.05, 0.95) * size.width, rng.uniform(0.05, 0.95) * size.height
    window = _window(cx, cy, max(rx, ry) * 1.6, size)
    xx, yy = _grid(window)
    wobble = 1.0 + 0.15 * np.sin(np.arctan2(yy - cy, xx - cx) * float(rng.integers(3, 7)))
    r = np.sqrt(((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2) / wobble
    alpha = np.clip(1.3 - r, 0.0, 1.0) ** 0.7
    loops = 0.5 + 0.5 * np.sin((xx + yy) / canvas.period * 3.0)
    backing = canvas.colour * 0.18
    target = backing[None, None, :] * (0.7 + 0.6 * loops[..., None])
    return _paint(canvas, window, alpha, target)


def _broken(canvas: _Canvas, size: ImageSize, rng: np.random.Generator) -> Box | None:
    short = min(size.width, size.height)
    length = float(rng.uniform(0.12 * short, 0.45 * short))
    thickness = canvas.period * 0.45
    vertical = bool(rng.integers(2))
    cx, cy = rng.uniform(0.1, 0.9) * size.width, rng.uniform(0.1, 0.9) * size.height
    window = _window(cx, cy, length / 2 + 4 * thickness, size)
    xx, yy = _grid(window)
    along, across = (yy - cy, xx - cx) if vertical else (xx - cx, yy - cy)
    fray = 1.0 + 0.6 * np.sin(along / 3.0) * (np.abs(along) > length * 0.4)
    band = np.exp(-((across / (thickness * fray)) ** 2))
    ends = np.clip((length / 2 - np.abs(along)) / 6.0, 0.0, 1.0)
    alpha = band * ends
    target = np.broadcast_to((canvas.colour * 0.12 + 0.05)[None, None, :], (*alpha.shape, 3))
    return _paint(canvas, window, alpha, target)


_PAINTERS: dict[str, Callable[[_Canvas, ImageSize, np.random.Generator], Box | None]] = {
    "wrinkle": _wrinkle,
    "drop": _drop,
    "broken": _broken,
}


def _plan(config: SynthConfig, rng: np.random.Generator) -> list[int]:
    """Class indices of the defects of one image (empty for a clean image)."""
    if rng.random() < config.clean_share:
        return []
    first = int(rng.choice(len(config.classes), p=config.class_weights()))
    count = int(rng.choice([1, 1, 1, 2, 2, 3]))
    if rng.random() < 0.5:  # several defects of one class
        return [first] * count
    return [first] + [int(rng.choice(len(config.classes), p=config.class_weights())) for _ in range(count - 1)]


def render(config: SynthConfig, index: int) -> tuple[np.ndarray, list[tuple[str, Box]]]:
    """Render image ``index`` of ``config``: uint8 H x W x 3 pixels and its labelled boxes."""
    rng = np.random.default_rng([config.seed, index])
    size = ImageSize(config.width, config.height)
    canvas = _canvas(size, rng)
    objects: list[tuple[str, Box]] = []
    for class_index in _plan(config, rng):
        painter = _PAINTERS[STYLES[class_index % len(STYLES)]]
        for _attempt in range(5):
            box = painter(canvas, size, rng)
            if box is not None:
                objects.append((config.classes[class_index], box))
                break
    noise = rng.normal(0.0, 0.015, canvas.image.shape).astype(np.float32)
    pixels = np.clip((canvas.image + noise) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return pixels, objects


def file_stem(config: SynthConfig, index: int) -> str:
    return f"{config.prefix}_{index:05d}"


def _write_one(config: SynthConfig, out: Path, index: int) -> int:
    from PIL import Image

    pixels, objects = render(config, index)
    stem = file_stem(config, index)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=config.jpeg_quality)
    atomic_write_bytes(out / f"{stem}.jpg", buffer.getvalue())
    annotation = ImageAnnotation(
        filename=f"{stem}.jpg",
        size=ImageSize(config.width, config.height),
        objects=tuple(LabeledBox(label=label, box=box) for label, box in objects),
        folder=config.prefix,  # location-independent: the same seed gives the same bytes anywhere
        database="fabricdata-synth",
    )
    atomic_write_bytes(out / f"{stem}.xml", voc_to_bytes(annotation))
    return len(objects)


def generate(
    config: SynthConfig,
    out: str | Path,
    workers: int = 1,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Write ``config.images`` images with VOC XML and ``classes.txt`` to ``out``; return ``out``."""
    target = Path(out).resolve()
    target.mkdir(parents=True, exist_ok=True)
    write_classes(target / "classes.txt", config.classes)
    indices = range(config.images)
    if workers <= 1:
        for index in indices:
            _write_one(config, target, index)
            if progress:
                progress(1)
        return target
    with process_pool(workers) as pool:
        for _ in pool.map(_write_one, [config] * len(indices), [target] * len(indices), indices, chunksize=4):
            if progress:
                progress(1)
    return target


def contact_sheet(folder: str | Path, out: str | Path, columns: int = 4, count: int = 12, thumb: int = 320) -> Path:
    """A PNG grid of the first ``count`` images of a LabelImg folder with their boxes drawn and labelled."""
    from PIL import Image, ImageDraw

    from fabricdata.formats.voc import read_voc

    source = Path(folder)
    xmls = sorted(source.glob("*.xml"))[:count]
    colours = [(255, 64, 64), (64, 200, 255), (255, 220, 0), (180, 90, 255), (0, 230, 120)]
    names: list[str] = []
    tiles = []
    for xml in xmls:
        annotation = read_voc(xml)
        image = load_rgb(source / annotation.filename)
        draw = ImageDraw.Draw(image)
        for obj in annotation.objects:
            if obj.label not in names:
                names.append(obj.label)
            colour = colours[names.index(obj.label) % len(colours)]
            draw.rectangle(obj.box.as_tuple(), outline=colour, width=4)
            draw.text((obj.box.xmin + 4, obj.box.ymin + 2), obj.label, fill=colour)
        image.thumbnail((thumb, thumb))
        tiles.append(image)
    rows = (len(tiles) + columns - 1) // columns
    tile_w = max(t.width for t in tiles)
    tile_h = max(t.height for t in tiles)
    sheet = Image.new("RGB", (columns * tile_w, rows * tile_h), (255, 255, 255))
    for i, tile in enumerate(tiles):
        sheet.paste(tile, ((i % columns) * tile_w, (i // columns) * tile_h))
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG", optimize=True)
    atomic_write_bytes(out, buffer.getvalue())
    return Path(out)


def summarize(folder: str | Path, classes: Sequence[str]) -> dict[str, int]:
    """Instances per class plus ``images`` and ``defect-free`` counts of a synthetic LabelImg folder."""
    from fabricdata.formats.voc import read_voc

    counts = dict.fromkeys(classes, 0)
    counts_images = 0
    clean = 0
    for xml in sorted(Path(folder).glob("*.xml")):
        annotation = read_voc(xml)
        counts_images += 1
        clean += not annotation.objects
        for obj in annotation.objects:
            counts[obj.label] = counts.get(obj.label, 0) + 1
    return {"images": counts_images, "defect-free": clean, **counts}
