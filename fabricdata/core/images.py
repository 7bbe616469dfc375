"""Image headers: real sizes, read without decoding pixels.

EXIF orientation rule: LabelImg draws on the image's stored pixels and ignores the EXIF orientation tag, so
boxes in its files are in stored-pixel coordinates. fabricdata follows the same rule everywhere: sizes are the
stored sizes (never swapped for rotated EXIF orientations), pixels are never auto-rotated, and training and
export read the stored pixels. Web browsers, and so the FiftyOne App, do apply the tag: import reports every
image whose orientation tag is not 1, since its boxes would look misplaced in the App.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fabricdata.core.boxes import ImageSize
from fabricdata.core.errors import InvalidValueError

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def is_browser_suffix(suffix: str) -> bool:
    """True for file extensions of formats browsers display (TIFF is the one they do not)."""
    return suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif")


#: what web browsers (and so the FiftyOne App) display, by PIL format and mode
BROWSER_FORMATS = frozenset({"JPEG", "PNG", "GIF", "WEBP", "BMP"})
BROWSER_MODES = frozenset({"1", "L", "LA", "P", "RGB", "RGBA"})
#: larger images get a downscaled proxy for the App (browsers decode them slowly or not at all)
BROWSER_MAX_SIDE = 8192
#: images with more pixels are refused (a header can claim any size: a "decompression bomb"); 256 megapixels
#: hold a 16 000 x 16 000 line-scan frame. ``import --max-pixels`` changes it; it is also PIL's MAX_IMAGE_PIXELS.
DEFAULT_MAX_PIXELS = 256_000_000
_max_pixels = DEFAULT_MAX_PIXELS


@contextlib.contextmanager
def pixel_limit(pixels: int) -> Iterator[None]:
    """Refuse images above ``pixels`` pixels inside the block (image headers are checked against it, and PIL's
    ``Image.MAX_IMAGE_PIXELS`` is set to it before each header is read); the previous limit is back after it."""
    global _max_pixels
    if pixels < 1:
        raise ValueError(f"pixel limit must be positive (got {pixels})")
    previous, _max_pixels = _max_pixels, pixels
    try:
        yield
    finally:
        _max_pixels = previous


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """What an image header says: stored size, PIL format and mode, number of channels."""

    size: ImageSize
    format: str
    mode: str
    channels: int
    #: the EXIF orientation tag (1 = as stored; 0 when absent)
    orientation: int = 0

    @property
    def browser_viewable(self) -> bool:
        small = max(self.size.width, self.size.height) <= BROWSER_MAX_SIDE
        return self.format in BROWSER_FORMATS and self.mode in BROWSER_MODES and small


def image_info(path: str | Path) -> ImageInfo:
    """Header facts of an image, without decoding pixels (EXIF orientation is ignored, as LabelImg does)."""
    from PIL import Image, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = _max_pixels  # deliberately ours: PIL refuses at twice it, we check it exactly below
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
        with image:
            width, height = image.size
            orientation = _orientation(image)
            info = ImageInfo(
                ImageSize(int(width), int(height)), image.format or "", image.mode, len(image.getbands()), orientation
            )
    except FileNotFoundError:
        raise InvalidValueError(path, "image", "image file not found") from None
    except Image.DecompressionBombError:
        raise InvalidValueError(path, "image", _too_many_pixels()) from None
    except (UnidentifiedImageError, OSError) as exc:
        raise InvalidValueError(path, "image", f"not a readable image ({exc.__class__.__name__})") from None
    if info.size.width * info.size.height > _max_pixels:
        raise InvalidValueError(path, "image", _too_many_pixels(), f"{info.size.width}x{info.size.height}")
    return info


def _too_many_pixels() -> str:
    return f"more than {_max_pixels} pixels (a decompression bomb?); raise --max-pixels if it is real"


def check_complete(path: str | Path, info: ImageInfo) -> None:
    """Raise InvalidValueError unless the whole image is there: a truncated download or an interrupted copy
    imports fine from its header and fails later in training. Cheap where the format allows (what import's speed
    needs): a JPEG that ends with its end-of-image marker, a PNG that ends with its IEND chunk, is whole; any other
    file is decoded (PNG: its chunks checksummed) to be sure."""
    from PIL import Image

    source = Path(path)
    try:
        if _ends_with(source, _ENDINGS.get(info.format)):
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source) as image:
                if info.format == "PNG":
                    image.verify()
                else:
                    image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        detail = str(exc) or exc.__class__.__name__
        raise InvalidValueError(source, "image", f"truncated or corrupt ({detail})") from None


#: how a whole file of a format ends (cameras may append a few bytes after a JPEG's EOI marker)
_ENDINGS = {"JPEG": b"\xff\xd9", "PNG": b"IEND\xaeB`\x82"}


def _ends_with(path: Path, marker: bytes | None) -> bool:
    """True when ``marker`` is within the last 64 bytes of the file."""
    if marker is None:
        return False
    with path.open("rb") as handle:
        handle.seek(0, 2)
        handle.seek(max(0, handle.tell() - 64))
        return marker in handle.read()


def image_size(path: str | Path) -> ImageSize:
    """Stored width and height of an image from its header (EXIF orientation is ignored, as LabelImg does)."""
    return image_info(path).size


def load_pixels(source: str | Path, min_side: int | None = None) -> Any:
    """The stored pixels of an image as an 8-bit PIL image in mode ``L`` or ``RGB`` (EXIF orientation ignored, as
    LabelImg does). 16-bit, 32-bit integer and float frames are stretched from their own minimum to maximum.

    ``min_side`` (for thumbnails): a JPEG may come back decoded at 1/2, 1/4 or 1/8 of its size by the decoder's DCT
    scaling (PIL's ``draft``: less to decode), each side still at least ``min_side``; other formats ignore it.

    Raises:
        OSError, ValueError, PIL.Image.DecompressionBombError: the file cannot be decoded.
    """
    import numpy as np
    from PIL import Image

    with Image.open(source) as opened:
        if min_side is not None:
            opened.draft(opened.mode, (min_side, min_side))
        opened.load()
        if opened.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            pixels = np.asarray(opened, dtype=np.float64)
            low, high = float(pixels.min()), float(pixels.max())
            scaled = (pixels - low) * (255.0 / (high - low)) if high > low else np.zeros_like(pixels)
            return Image.fromarray(scaled.round().astype(np.uint8))
        return opened.copy() if opened.mode in ("L", "RGB") else opened.convert("RGB")


def load_rgb(source: str | Path) -> Any:
    """The one decode of an image for every consumer (training records, prediction, augmentation, fingerprints):
    :func:`load_pixels` as an 8-bit ``RGB`` PIL image.

    Raises:
        OSError, ValueError, PIL.Image.DecompressionBombError: the file cannot be decoded.
    """
    image = load_pixels(source)
    return image if image.mode == "RGB" else image.convert("RGB")


def write_proxy(source: str | Path, target: Path) -> None:
    """A browser-viewable copy of ``source`` (8-bit, RGB or grey, at most BROWSER_MAX_SIDE) at ``target``."""
    from fabricdata.core.fileio import atomic_write_bytes

    image = load_pixels(source)
    image.thumbnail((BROWSER_MAX_SIDE, BROWSER_MAX_SIDE))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG" if target.suffix.lower() == ".png" else "JPEG", quality=90)
    atomic_write_bytes(target, buffer.getvalue())


def _orientation(image: Any) -> int:
    """The EXIF orientation tag of an open image (1 = as stored; 0 when absent or unreadable)."""
    try:
        return int(image.getexif().get(0x0112, 0))
    except (OSError, ValueError, TypeError):
        return 0
