"""Pairing an annotation file with its image, the same way for every layout.

- **Folders**: a label file is looked for beside itself, then, for every folder on its path whose name says
  labels or annotations (any case, any prefix or suffix: ``labels``, ``ANNOTATIONS``, ``Validation_Annotations``),
  in the sibling folder whose name says images with the same prefix/suffix (``images``, ``IMAGES``,
  ``JPEGImages``, ``Validation_Images``) or FiftyOne's ``data/``, keeping the rest of the path
  (``labels/train`` -> ``images/train``).
- **Stems**: an exact stem first; when several images share it (``y.jpg``, ``y.png``), the VOC ``<filename>``
  chooses; then the image ``<filename>`` names; then the stem without regard to case, only when that is
  unambiguous. Several candidates and nothing to choose between them is an error naming them.

Nothing here opens a file.
"""

from __future__ import annotations

import functools
import posixpath
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

#: words that make a folder an image folder (checked first: ``unlabeled_images`` holds images)
IMAGE_WORDS = ("jpegimages", "images", "image", "imgs", "img")
#: words that make a folder a label folder
LABEL_WORDS = ("annotations", "annotation", "labels", "label")
#: folder names that hold images in FiftyOne's own exports (``data/`` beside ``labels/``)
IMAGE_NAMES = frozenset({"data"})
_SEPARATORS = " _-."
#: how strongly a pairing holds, by how it was made (a stronger claim on an image wins over a weaker one)
STRENGTH = {"stem": 3, "filename": 2, "case": 1}


@functools.lru_cache(maxsize=4096)
def folder_role(name: str) -> tuple[str | None, str]:
    """``("images" | "labels" | None, affix)`` of a folder name: ``Validation_Images`` -> ``("images",
    "validation")``, ``ANNOTATIONS`` -> ``("labels", "")``, ``data`` -> ``("images", "")``, ``stain`` ->
    ``(None, "")``."""
    lowered = name.lower()
    if lowered in IMAGE_NAMES:
        return "images", ""
    for role, words in (("images", IMAGE_WORDS), ("labels", LABEL_WORDS)):
        for word in words:
            if word in lowered:
                return role, lowered.replace(word, "", 1).strip(_SEPARATORS)
    return None, ""


@dataclass(frozen=True, slots=True)
class Pairing:
    """The image an annotation file was paired with, how (``stem``, ``filename``, ``case``), and what to say."""

    image: Path | None
    how: str = ""
    #: why no image could be chosen (several candidates): an error naming them
    problem: str = ""
    #: a warning line (``<filename>`` names another image than the one the stem chose)
    note: str = ""

    @property
    def strength(self) -> int:
        return STRENGTH.get(self.how, 0)


class ImageIndex:
    """The images of a tree by folder and stem, and the folders a label folder's images may be in."""

    def __init__(self, images: Iterable[Path], dirs: Iterable[Path]) -> None:
        self._images = list(images)
        self._exact: dict[tuple[Path, str], list[Path]] = defaultdict(list)
        self._children: dict[Path, list[Path]] = defaultdict(list)
        self._folders: dict[Path, tuple[Path, ...]] = {}
        for image in self._images:
            self._exact[(image.parent, image.stem)].append(image)
        for folder in sorted(dirs):
            self._children[folder.parent].append(folder)

    @functools.cached_property
    def _loose(self) -> dict[tuple[Path, str], list[Path]]:
        """Images by folder and lower-case stem (made on first use: most trees pair by exact stems)."""
        index: dict[tuple[Path, str], list[Path]] = defaultdict(list)
        for (folder, stem), images in self._exact.items():
            index[(folder, stem.lower())].extend(images)
        return index

    @functools.cached_property
    def _names(self) -> dict[tuple[Path, str], Path]:
        """Images by folder and file name (made on first use)."""
        return {(image.parent, image.name): image for image in reversed(self._images)}

    def folders(self, folder: Path) -> tuple[Path, ...]:
        """``folder`` and, for each label-named folder on its path, its sibling image folder(s) with the rest
        of the path (``a/train_labels/x`` -> ``a/train_images/x``)."""
        if folder not in self._folders:
            found = [folder]
            parts = folder.parts
            for index in range(len(parts) - 1, 0, -1):
                role, affix = folder_role(parts[index])
                if role != "labels":
                    continue
                parent = Path(*parts[:index])
                for sibling in self._image_siblings(parent, affix):
                    found.append(sibling.joinpath(*parts[index + 1 :]))
            self._folders[folder] = tuple(found)
        return self._folders[folder]

    def _image_siblings(self, parent: Path, affix: str) -> list[Path]:
        """Image folders beside a label folder: those with the label folder's affix, else the only one."""
        images = [(child, folder_role(child.name)) for child in self._children.get(parent, ())]
        images = [(child, role) for child, role in images if role[0] == "images"]
        same = [child for child, (_, other) in images if other == affix]
        return same or ([images[0][0]] if len(images) == 1 else [])

    def pair(self, label: Path, named: str = "") -> Pairing:
        """The image of the annotation file ``label`` (``named``: the file name the annotation gives, if any)."""
        folders = self.folders(label.parent)
        name = named.replace("\\", "/").rsplit("/", 1)[-1] if named else ""
        exact = _gather(self._exact, folders, label.stem)
        if exact:
            return self._choose(label, exact, name, "stem")
        if name:
            by_name = [self._names[(folder, name)] for folder in folders if (folder, name) in self._names]
            if len(by_name) == 1:
                return Pairing(by_name[0], "filename")
            by_stem = _gather(self._exact, folders, name.rsplit(".", 1)[0] if "." in name[1:] else name)
            if len(by_stem) == 1:
                return Pairing(by_stem[0], "filename")
        loose = _gather(self._loose, folders, label.stem.lower())
        return self._choose(label, loose, name, "case") if loose else Pairing(None)

    def _choose(self, label: Path, candidates: Sequence[Path], name: str, how: str) -> Pairing:
        if len(candidates) == 1:
            image = candidates[0]
            other = name and name.lower() != image.name.lower() and self.named(label.parent, name)
            note = f"{label}: <filename> {name!r} names another image; paired by its stem with {image.name}"
            return Pairing(image, how, note=note if other else "")
        chosen = [image for image in candidates if image.name == name]
        chosen = chosen or [image for image in candidates if name and image.name.lower() == name.lower()]
        if len(chosen) == 1:
            return Pairing(chosen[0], how)
        shown = " and ".join(_shown(image, label) for image in candidates[:3])
        more = f" (and {len(candidates) - 3} more)" if len(candidates) > 3 else ""
        return Pairing(None, how, problem=f"{len(candidates)} images match its name: {shown}{more}")

    def named(self, folder: Path, name: str) -> Path | None:
        """The image called ``name`` in ``folder`` or in its layout's image folder (CreateML entries)."""
        base = Path(name.replace("\\", "/")).name
        for candidate in self.folders(folder):
            found = self._names.get((candidate, base))
            if found is not None:
                return found
        return None

    def relative(self, label: Path, name: str) -> Path | None:
        """The image a path ``name`` in a label file of many images names (COCO ``file_name``): relative to the
        label's folder, an ``images`` folder in it, the folder above it, that one's ``images`` folder or the
        folder the label's name ends with (``annotations/instances_train2017.json`` -> ``train2017/``); else by
        its base name (:meth:`named`)."""
        text, folder = name.replace("\\", "/"), label.parent
        tail = re.split(r"[_.]", label.stem)[-1]
        for base in (folder, folder / "images", folder.parent, folder.parent / "images", folder.parent / tail):
            candidate = Path(posixpath.normpath(base / text))
            if (candidate.parent, candidate.name) in self._names:
                return candidate
        return self.named(folder, text)

    def by_loose_stem(self) -> dict[str, list[Path]]:
        """Every image of the tree by its lower-case stem (for guessing where unpaired labels' images are)."""
        out: dict[str, list[Path]] = defaultdict(list)
        for (_, stem), images in self._loose.items():
            out[stem].extend(images)
        return out


def _gather(index: dict[tuple[Path, str], list[Path]], folders: Sequence[Path], stem: str) -> list[Path]:
    found: list[Path] = []
    for folder in folders:
        found.extend(index.get((folder, stem), ()))
    return found


def _shown(image: Path, label: Path) -> str:
    return image.name if image.parent == label.parent else str(image)


__all__ = ["IMAGE_WORDS", "LABEL_WORDS", "STRENGTH", "ImageIndex", "Pairing", "folder_role"]
