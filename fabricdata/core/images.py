"""Image headers (real sizes, read without decoding pixels) and the one decode of pixels (:func:`load_pixels`).

EXIF orientation rule: LabelImg draws on the image's stored pixels and ignores the EXIF orientation tag, so
boxes in its files are in stored-pixel coordinates. fabricdata follows the same rule everywhere: sizes are the
stored sizes (never swapped for rotated EXIF orientations), pixels are never auto-rotated, and training and
export read the stored pixels. Web browsers, and so the FiftyOne App, do apply the tag: import reports every
image whose orientation tag is not 1, since its boxes would look misplaced in the App.
"""

from __future__ import annotations

import contextlib
import io
import struct
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


def load_pixels(source: str | Path, max_pixels: int | None = None, min_side: int | None = None) -> Any:
    """The one decode of an image: its stored pixels as an 8-bit PIL image in mode ``L`` (one channel) or ``RGB``.

    Every consumer reads images through this function (or :func:`load_rgb`): training records, ``predict``,
    ``prelabel``, ``serve``, ``augment``, the App's proxies, fingerprints. The rule (README "Bring your own folder"):

    - stored pixels: the EXIF orientation tag is ignored, as LabelImg does; the first frame of a multi-page file;
    - 8-bit ``L`` and ``RGB`` as stored; palette, ``1``-bit, ``LA``, ``RGBA``, ``CMYK``, ... by PIL's conversion
      (``1`` and ``LA`` to ``L``, the others to ``RGB``; alpha dropped, never composited);
    - unsigned integer frames of more than 8 bits are scaled by their bit depth, not by their content: an 8-bit
      value is the sample's top 8 significant bits (``v >> (bits - 8)``; 16-bit: the high byte, which is also how
      PIL itself reads 16-bit RGB). ``bits`` is what the file declares (TIFF ``BitsPerSample``, PNG ``sBIT``), else
      the container's 16. A camera's bit depth is fixed, so each value maps to one 8-bit value in every frame,
      and decoding commutes with crops, flips and tiles (a crop of a frame decodes to the crop of its decode);
    - frames without a natural full scale (float, signed or 32-bit integer) are stretched from their own minimum
      to maximum (floats already within 0..1, the usual convention, are scaled by 255 instead); non-finite values
      count as the minimum. Derived pictures (augmented variants, tiles) are cut from this decode of the whole
      frame, so they stay the same picture; an external crop of such a file may stretch differently.

    ``max_pixels`` (default: the import limit, :func:`pixel_limit`) is checked against the header before any
    pixel is decoded.

    ``min_side`` (for thumbnails): a JPEG may come back decoded at 1/2, 1/4 or 1/8 of its size by the decoder's DCT
    scaling (PIL's ``draft``: less to decode), each side still at least ``min_side``; other formats ignore it.

    Raises:
        OSError, ValueError, SyntaxError: the file cannot be decoded.
        PIL.Image.DecompressionBombError: more than ``max_pixels`` pixels.
    """
    from PIL import Image

    limit = max_pixels or _max_pixels
    Image.MAX_IMAGE_PIXELS = limit  # PIL refuses at twice it; the exact check is ours, below
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            opened = Image.open(source)
        except Image.DecompressionBombError:  # PIL's own check, at twice the limit
            raise Image.DecompressionBombError(f"more than {limit} pixels") from None
    try:
        width, height = opened.size
        if width * height > limit:
            raise Image.DecompressionBombError(f"{width}x{height}: more than {limit} pixels")
        if min_side is not None:
            opened.draft(opened.mode, (min_side, min_side))
        opened.load()  # the first frame
        if opened.mode in ("L", "RGB") and getattr(opened, "fp", None) is None:
            return opened  # decoded, and its file closed by PIL: no copy (it costs as much as a JPEG's decode)
        converted = _eight_bit(opened)
    except BaseException:
        opened.close()
        raise
    opened.close()
    return converted


def load_rgb(source: str | Path, max_pixels: int | None = None) -> Any:
    """:func:`load_pixels` as an 8-bit ``RGB`` PIL image (a grey frame's one channel repeated): what a model,
    ``augment`` and fingerprints read.

    Raises:
        OSError, ValueError, SyntaxError, PIL.Image.DecompressionBombError: as :func:`load_pixels`.
    """
    image = load_pixels(source, max_pixels)
    return image if image.mode == "RGB" else image.convert("RGB")


#: modes PIL converts to ``L`` (one channel); other non-numeric modes become ``RGB``
_GREY_MODES = frozenset({"1", "L", "LA"})


def _eight_bit(image: Any) -> Any:
    """A decoded frame of any mode as a new 8-bit ``L`` or ``RGB`` image (see :func:`load_pixels`)."""
    from PIL import Image

    if not image.mode.startswith(("I", "F")):
        return image.convert("L" if image.mode in _GREY_MODES else "RGB")
    import numpy as np

    samples = np.asarray(image)
    bits = _declared_bits(image) if samples.dtype.kind in "ui" else None
    if bits is not None and samples.min() >= 0:
        shifted = samples.astype(np.uint32) >> max(0, bits - 8)
        return Image.fromarray(np.minimum(shifted, 255).astype(np.uint8))
    return Image.fromarray(_stretch(samples.astype(np.float64)))


def _stretch(samples: Any) -> Any:
    """Floats within 0..1 times 255; anything else from its minimum to its maximum (non-finite: the minimum)."""
    import numpy as np

    finite = np.isfinite(samples)
    low = float(samples[finite].min()) if finite.any() else 0.0
    high = float(samples[finite].max()) if finite.any() else 0.0
    samples = np.where(finite, samples, low)
    if low >= 0.0 and high <= 1.0:
        scaled = samples * 255.0
    else:
        scaled = (samples - low) * (255.0 / (high - low)) if high > low else np.zeros_like(samples)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _declared_bits(image: Any) -> int | None:
    """Significant bits of an unsigned integer frame of at most 16 bits: the file's own word (TIFF
    ``BitsPerSample``, PNG ``sBIT``), else 16 for PIL's 16-bit modes; None where there is no fixed full scale
    (32-bit or signed samples)."""
    tags = getattr(image, "tag_v2", None)
    if tags is not None:  # TIFF
        bits = tags.get(258, (16,))
        bits = int(bits[0] if isinstance(bits, tuple) else bits)
        signed = tags.get(339, (1,))
        unsigned = int(signed[0] if isinstance(signed, tuple) else signed) == 1
        return bits if unsigned and bits <= 16 else None
    if image.format == "PNG":  # PNG samples are 16 bits at most
        return _png_significant_bits(image.filename) or 16
    return 16 if image.mode.startswith("I;16") else None


def _png_significant_bits(path: str) -> int | None:
    """The grey (or first colour) sample's significant bits from a PNG's ``sBIT`` chunk, which precedes the
    image data; None without one."""
    if not path:
        return None
    with Path(path).open("rb") as handle:
        handle.seek(8)  # the signature
        while len(head := handle.read(8)) == 8:
            length, kind = struct.unpack(">I4s", head)
            if kind == b"sBIT":
                data = handle.read(length)
                return int(data[0]) if data else None
            if kind in (b"IDAT", b"IEND"):
                return None
            handle.seek(length + 4, 1)  # the data and its CRC
    return None


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
