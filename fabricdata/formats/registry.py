"""The one registry of label formats.

A label format is one module of :mod:`fabricdata.formats` that defines ``FORMAT``, an object implementing
:class:`LabelFormat`: which files are its own, how one file reads into items (one per image), the image a file
annotates, how an edited sample is written back into its file (only what the edit changed), how a verified
draft becomes a new file, and the unit of its content hash (the whole file, or one image's entry of a file that
holds many). Discovery (:mod:`fabricdata.formats.discover`), import, write-back and its journal
(:mod:`fabricdata.store`), prelabel and the CLI's help ask this registry; none of them names a format.

Adding a format is its module plus one line in :data:`FORMAT_MODULES`; ``tests/test_formats.py``'s contract class
then runs every check on it (detect, read, write-then-read, write-back of an edit, a new file for a draft).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from fabricdata.core.annotation import ImageAnnotation, LabeledBox
from fabricdata.core.boxes import ImageSize
from fabricdata.core.errors import AnnotationError, ConfigError, InvalidValueError
from fabricdata.core.fileio import sha256_bytes

if TYPE_CHECKING:
    from typing import TypeAlias

    from fabricdata.formats import FolderItem, FolderScan
    from fabricdata.formats.discover import Discovery, LabelFile
    from fabricdata.formats.names import ClassNames

    #: what a format's reader yields for one file: items, errors, an unpaired or refused file, warning lines
    ReadResult: TypeAlias = "FolderItem | AnnotationError | Unpaired | Refused | str"

#: every label format, by name, and the module that defines it (order: who claims a file first)
FORMAT_MODULES: dict[str, str] = {
    "voc": "fabricdata.formats.voc",
    "yolo": "fabricdata.formats.yolo",
    "createml": "fabricdata.formats.createml",
    "coco": "fabricdata.formats.coco",
}

#: label files recognised but not read, as no format is registered for them: name -> (their suffix, the function
#: of :mod:`fabricdata.formats.layouts` that recognises one, why they are refused)
UNSUPPORTED: dict[str, tuple[str, str, str]] = {}

HashUnit = Literal["file", "entry"]


@dataclass(frozen=True, slots=True)
class SampleLabels:
    """One image's labels as the dataset holds them, for write-back (an edited sample) or a new file (a draft)."""

    image: Path
    size: ImageSize
    objects: tuple[LabeledBox, ...]
    verified: bool = False
    channels: int = 3
    #: YOLO: the file the sample's class names came from (None: given with ``--classes``, or a draft)
    class_file: Path | None = None
    #: YOLO: the class names by index where no file holds them (``--classes``); for a draft, the dataset's classes
    class_names: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class Written:
    """What a label file says for one image after a write: its hash (of the file, or of the image's entry) and
    its objects, in the order of the sample's objects."""

    annotation_hash: str
    objects: tuple[LabeledBox, ...]
    #: YOLO: a class-name file the write created or extended (the sample's class file from now on)
    class_file: Path | None = None


@dataclass(slots=True)
class WriteBack:
    """A label file after write-back: its new bytes (equal to the old ones when no edit changed its text), and
    per image (by :attr:`SampleLabels.image`) what it now says, or why that image could not be written."""

    data: bytes
    results: dict[Path, Written | AnnotationError] = field(default_factory=dict)
    #: files to write first, atomically (a class-name file with new names): path -> bytes
    companions: list[tuple[Path, bytes]] = field(default_factory=list)


@dataclass(slots=True)
class NewFile:
    """A verified draft as a label file: ``data`` to be written at ``path``, never over an existing file unless
    ``replaces`` (the hash the existing file was read with: an entry added to a file of many images)."""

    path: Path
    data: bytes
    written: Written
    replaces: str | None = None
    #: files to write first, atomically (a class-name file with new names): path -> bytes
    companions: list[tuple[Path, bytes]] = field(default_factory=list)


class LabelFormat(Protocol):
    """What every label format implements (one module each; see the module docstring)."""

    #: the name used in ``--format``, the dataset's ``annotation_format`` and the ledger
    name: str
    #: what it is, for the CLI's help and the list of layouts import tried ("Pascal VOC .xml")
    title: str
    #: the unit of its content hash: the whole file, or one image's entry of a file that holds many
    hash_unit: HashUnit
    #: the largest file of this format read (bytes)
    max_bytes: int

    def claims(self, path: Path, found: Discovery) -> bool:
        """True when ``path`` (neither an image nor a layout file) is a label file of this format."""
        ...

    def locate(self, path: Path, found: Discovery, names: ClassNames) -> LabelFile | None:
        """``path`` as discovery lists it, with what its layout says; None when it is not one after all (a label
        without an image, an error: recorded on ``found``)."""
        ...

    def read(
        self, label: LabelFile, found: Discovery, scan: FolderScan, classes: Sequence[str] | None, check_sizes: bool
    ) -> Iterator[ReadResult]:
        """One label file into items, one per image; bad files and entries become errors, never exceptions."""
        ...

    def images_of(self, label: LabelFile, found: Discovery) -> list[Path]:
        """The images the label file annotates, as import pairs them (for prelabel: they are not new work)."""
        ...

    def entry_hashes(self, data: bytes, path: Path) -> dict[str, str]:
        """``hash_unit == "entry"``: image file name -> the hash of its entry in the file's bytes ``data`` (names
        that have several entries are left out); ``{}`` for a whole-file format.

        Raises:
            AnnotationError: the file cannot be parsed.
        """
        ...

    def write_back(self, data: bytes, path: Path, edits: Sequence[SampleLabels]) -> WriteBack:
        """The file ``path`` (its current bytes ``data``) with the objects of ``edits`` written in: objects no
        edit changed keep their exact text, changed ones are written in the file's own number style.

        Raises:
            AnnotationError: the file as a whole cannot take the edits (it no longer parses, ...).
        """
        ...

    def new_file(self, draft: SampleLabels) -> NewFile:
        """The label file a verified draft becomes, beside its image as the format's tools save it.

        Raises:
            AnnotationError: the draft cannot be written in this format; FileExistsError: its file exists.
        """
        ...

    def read_annotation(self, path: Path, image: Path, size: ImageSize) -> ImageAnnotation:
        """What the file says about ``image`` beyond its boxes (VOC: database, segmented, unknown elements); the
        formats that say nothing more return an empty annotation of ``size``.

        Raises:
            AnnotationError: the file cannot be read.
        """
        ...


class Unpaired:
    """An annotation file a reader found no image for (with the reason)."""

    __slots__ = ("path", "reason")

    def __init__(self, path: Path, reason: str) -> None:
        self.path, self.reason = path, reason


class Refused:
    """An annotation file paired with ``image`` but refused as a whole, with the reason (no class names, ...)."""

    __slots__ = ("image", "path", "reason")

    def __init__(self, path: Path, image: Path, reason: str) -> None:
        self.path, self.image, self.reason = path, image, reason


_LOADED: dict[str, LabelFormat] = {}


def get(name: str) -> LabelFormat:
    """The registered format ``name``.

    Raises:
        ConfigError: no format of that name is registered.
    """
    if name not in _LOADED:
        module = FORMAT_MODULES.get(name)
        if module is None:
            raise ConfigError(f"unknown label format {name!r}: expected one of {', '.join(FORMAT_MODULES)}")
        _LOADED[name] = importlib.import_module(module).FORMAT
    return _LOADED[name]


def names() -> tuple[str, ...]:
    """The registered formats' names, in claiming order."""
    return tuple(FORMAT_MODULES)


def formats() -> list[LabelFormat]:
    """Every registered format, in claiming order."""
    return [get(name) for name in FORMAT_MODULES]


def owner(path: Path, found: Discovery) -> LabelFormat | None:
    """The first format that claims ``path`` (None: no label format's file)."""
    return next((fmt for fmt in formats() if fmt.claims(path, found)), None)


def unsupported(path: Path) -> str | None:
    """Why ``path``, a label file of a recognised format nobody registered, is refused (None: it is not one)."""
    from fabricdata.formats import layouts

    for suffix, sniffer, reason in UNSUPPORTED.values():
        if path.suffix.lower() == suffix and getattr(layouts, sniffer)(path):
            return reason
    return None


def refusals() -> set[str]:
    """The reasons :func:`unsupported` gives."""
    return {reason for _, _, reason in UNSUPPORTED.values()}


def help_list(last: str = "or") -> str:
    """The format names for help texts and messages: ``voc, yolo, createml or coco``."""
    all_names = list(FORMAT_MODULES)
    return ", ".join(all_names[:-1]) + f" {last} {all_names[-1]}" if len(all_names) > 1 else all_names[0]


def hashes(fmt: LabelFormat, data: bytes, path: Path) -> str | dict[str, str]:
    """The content hashes of one label file's bytes ``data``: the file's (whole-file formats), or image file name ->
    its entry's (formats of one file for many images; names with several entries are left out).

    Raises:
        AnnotationError: a file of many images that cannot be parsed.
    """
    return sha256_bytes(data) if fmt.hash_unit == "file" else fmt.entry_hashes(data, path)


def unit_hash(found: str | dict[str, str], image: Path) -> str | None:
    """``image``'s hash among :func:`hashes` (None: the file has no single entry for it)."""
    return found if isinstance(found, str) else found.get(image.name)


def check_size(annotation_path: Path, image: Path, said: ImageSize, real: ImageSize) -> None:
    """Raise InvalidValueError when the size an annotation ``said`` disagrees with the image's ``real`` one."""
    if real != said:
        raise InvalidValueError(
            annotation_path,
            "size",
            f"annotation says {said.width}x{said.height} but {image.name} is {real.width}x{real.height}",
            f"{said.width}x{said.height}",
        )


__all__ = [
    "FORMAT_MODULES",
    "HashUnit",
    "LabelFormat",
    "NewFile",
    "Refused",
    "SampleLabels",
    "Unpaired",
    "WriteBack",
    "Written",
    "check_size",
    "formats",
    "get",
    "hashes",
    "help_list",
    "names",
    "owner",
    "unit_hash",
]
