"""Image headers: real sizes, read without decoding pixels.

EXIF orientation rule: LabelImg draws on the image's stored pixels and ignores the EXIF orientation tag, so
boxes in its files are in stored-pixel coordinates. fabricdata follows the same rule everywhere: sizes are the
stored sizes (never swapped for rotated EXIF orientations), pixels are never auto-rotated, and training and
export read the stored pixels. Web browsers, and so the FiftyOne App, do apply the tag: import reports every
image whose orientation tag is not 1, since its boxes would look misplaced in the App.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fabricdata.boxes import ImageSize
from fabricdata.errors import InvalidValueError

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

    try:
        with Image.open(path) as image:
            width, height = image.size
            orientation = _orientation(image)
            info = ImageInfo(
                ImageSize(int(width), int(height)), image.format or "", image.mode, len(image.getbands()), orientation
            )
    except FileNotFoundError:
        raise InvalidValueError(path, "image", "image file not found") from None
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise InvalidValueError(path, "image", f"not a readable image ({exc.__class__.__name__})") from None
    return info


def image_size(path: str | Path) -> ImageSize:
    """Stored width and height of an image from its header (EXIF orientation is ignored, as LabelImg does)."""
    return image_info(path).size


def write_proxy(source: str | Path, target: Path) -> None:
    """A browser-viewable copy of ``source`` (8-bit, RGB or grey, at most BROWSER_MAX_SIDE) at ``target``."""
    import numpy as np
    from PIL import Image

    from fabricdata.fileio import atomic_write_bytes

    with Image.open(source) as opened:
        opened.load()
        if opened.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            pixels = np.asarray(opened, dtype=np.float64)
            low, high = float(pixels.min()), float(pixels.max())
            scaled = (pixels - low) * (255.0 / (high - low)) if high > low else np.zeros_like(pixels)
            image = Image.fromarray(scaled.round().astype(np.uint8))
        else:
            image = opened if opened.mode in ("L", "RGB") else opened.convert("RGB")
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
