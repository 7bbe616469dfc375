"""Image headers: real sizes, read without decoding pixels.

EXIF orientation rule: LabelImg draws on the image's stored pixels and ignores the EXIF orientation tag, so
boxes in its files are in stored-pixel coordinates. fabricdata follows the same rule everywhere: sizes are the
stored sizes (never swapped for rotated EXIF orientations), pixels are never auto-rotated, and training and
export read the stored pixels. Web browsers, and so the FiftyOne App, do apply the tag: import reports every
image whose orientation tag is not 1, since its boxes would look misplaced in the App.
"""

from __future__ import annotations

from pathlib import Path

from fabricdata.boxes import ImageSize
from fabricdata.errors import InvalidValueError

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def image_size(path: str | Path) -> ImageSize:
    """Stored width and height of an image from its header (EXIF orientation is ignored, as LabelImg does)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            width, height = image.size
    except FileNotFoundError:
        raise InvalidValueError(path, "image", "image file not found") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise InvalidValueError(path, "image", f"not a readable image ({exc.__class__.__name__})") from None
    return ImageSize(int(width), int(height))


def exif_orientation(path: str | Path) -> int:
    """The EXIF orientation tag (1 = as stored; 0 when absent or unreadable)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return int(image.getexif().get(0x0112, 0))
    except (OSError, ValueError):
        return 0


def find_image(folder: Path, stem: str) -> Path | None:
    """The image beside an annotation file: same stem, any known extension."""
    for ext in IMAGE_EXTENSIONS:
        for candidate in (folder / f"{stem}{ext}", folder / f"{stem}{ext.upper()}"):
            if candidate.is_file():
                return candidate
    return None
