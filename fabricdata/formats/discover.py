"""Finding the annotations of a folder as people publish them, at any depth.

Layouts understood (each pairs a label file with its image by that layout's own rule):

- LabelImg: the label beside its image (Pascal VOC ``.xml``, YOLO ``.txt``, CreateML ``.json``);
- Ultralytics / Roboflow: ``images/`` and ``labels/`` siblings (``train/images`` + ``train/labels`` or
  ``images/train`` + ``labels/train``), class names and splits from ``data.yaml``;
- darknet (AlexeyAB): ``obj.data`` naming a class-name file and train/valid/test list files of image paths;
- Pascal VOC: ``Annotations/`` beside ``JPEGImages/``.

YOLO class names come from, in order: ``data.yaml`` in the label's folder or above it, ``obj.data``'s names
file, ``classes.txt`` / ``*.names`` in the label's folder or above it (up to the import folder), then the
``--classes`` option. The authors' splits come from list files, then ``data.yaml`` split folders, then folder
names (``train``, ``valid``/``val``, ``test``). Nothing here reads an image.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from fabricdata.core.errors import AnnotationError, FormatDetectionError
from fabricdata.core.images import is_image
from fabricdata.core.walk import walk
from fabricdata.formats.layouts import (
    CLASS_FILES,
    SPLIT_ALIASES,
    ClassNames,
    LayoutConfig,
    TreePaths,
    looks_like_createml,
    looks_like_yolo_label,
    read_darknet_data,
    read_data_yaml,
    read_list_file,
)

FormatName = Literal["voc", "yolo", "createml"]
#: folder names that organise files rather than name a category
STRUCTURAL_DIRS = frozenset({"images", "labels", "annotations", "jpegimages", "obj", "data", "img", "imgs"})
#: where a label folder's images live, by the label folder's name (lower case)
_IMAGE_DIRS = {"labels": ("images", "Images", "imgs"), "annotations": ("JPEGImages", "images", "Images")}

LAYOUTS_TRIED = (
    "LabelImg (VOC .xml, YOLO .txt or CreateML .json beside the images)",
    "Ultralytics/Roboflow (images/ + labels/, data.yaml)",
    "darknet (obj.data + list files)",
    "Pascal VOC (Annotations/ + JPEGImages/)",
)


@dataclass(frozen=True, slots=True)
class LabelFile:
    """One annotation file found, with what its layout says about it."""

    path: Path
    format: FormatName
    #: YOLO: the image paired by the layout (VOC and CreateML name theirs inside the file)
    image: Path | None = None
    #: YOLO: class names by index, and the file they came from (None: from --classes)
    names: tuple[str, ...] | None = None
    names_from: Path | None = None


@dataclass(frozen=True, slots=True)
class Placement:
    """Where the authors put an image: split tag, what said so, and its category folder."""

    split: str | None = None
    source: str | None = None
    category: str | None = None


@dataclass(slots=True)
class Discovery:
    """Everything found under ``root``; paths are absolute below the (resolved) root."""

    root: Path
    labels: list[LabelFile] = field(default_factory=list)
    images: list[Path] = field(default_factory=list)
    #: files that are neither images nor annotations (README, licences, notes, unused list files)
    ignored: list[Path] = field(default_factory=list)
    #: files that describe the layout and were used (data.yaml, obj.data, names, list files)
    layout_files: list[Path] = field(default_factory=list)
    #: one line per non-fatal finding (a listed image that does not exist, ...)
    warnings: list[str] = field(default_factory=list)
    #: problems that keep files from being imported (unreadable layout files, YOLO without class names)
    errors: list[AnnotationError] = field(default_factory=list)
    #: annotations of another format than the one asked for: format -> first folder holding one
    skipped: dict[str, Path] = field(default_factory=dict)
    _by_stem: dict[tuple[Path, str], Path] = field(default_factory=dict)
    _by_name: dict[tuple[Path, str], Path] = field(default_factory=dict)
    _listed: dict[Path, tuple[str, str]] = field(default_factory=dict)
    _split_dirs: dict[Path, tuple[str, str]] = field(default_factory=dict)
    _image_dirs: set[Path] = field(default_factory=set)

    def image_for(self, label: Path, named: str = "") -> Path | None:
        """The image of an annotation file: same stem first (LabelImg pairs this way), then the named file."""
        folders = _image_folders(label.parent)
        for folder in folders:
            found = self._by_stem.get((folder, label.stem)) or self._by_stem.get((folder, label.stem.lower()))
            if found is not None:
                return found
        name = Path(named.replace("\\", "/")).name if named else ""
        for folder in folders if name else ():
            found = self._by_name.get((folder, name)) or self._by_stem.get((folder, Path(name).stem))
            if found is not None:
                return found
        return None

    def image_named(self, folder: Path, name: str) -> Path | None:
        """An image named ``name`` in ``folder`` or its layout's image folder (CreateML entries)."""
        base = Path(name.replace("\\", "/")).name
        for candidate in _image_folders(folder):
            found = self._by_name.get((candidate, base))
            if found is not None:
                return found
        return None

    def placement(self, image: Path) -> Placement:
        split, source = self._listed.get(image, (None, None))
        if split is None:
            for parent in image.parents:
                if parent in self._split_dirs:
                    split, source = self._split_dirs[parent]
                    break
                if parent == self.root:
                    break
        if split is None:
            split = _split_from_folders(image, self.root)
            source = "folder names" if split else None
        return Placement(split, source, self._category(image))

    def _category(self, image: Path) -> str | None:
        """The folder an image sits in, when it names a category: below a split folder (``train/stain/``), or
        one of several image folders side by side (``stain/``, ``defect_free/``). A dataset's own folder, a split
        folder or an ``images/`` folder is no category."""
        folder = image.parent
        if folder == self.root or folder.name.lower() in SPLIT_ALIASES or folder.name.lower() in STRUCTURAL_DIRS:
            return None
        below_split = any(
            parent.name.lower() in SPLIT_ALIASES for parent in folder.parents if self.root in parent.parents
        )
        siblings = sum(1 for other in self._image_dirs if other.parent == folder.parent)
        return folder.name if below_split or siblings > 1 else None

    @property
    def formats(self) -> list[str]:
        return sorted({label.format for label in self.labels})


def discover(
    folder: str | Path,
    fmt: FormatName | Literal["auto"] = "auto",
    classes: Sequence[str] | None = None,
    follow_links: bool = False,
) -> Discovery:
    """Walk ``folder`` and pair every annotation with its image by the rules of its layout (links to files
    outside ``folder`` are refused unless ``follow_links``)."""
    root = Path(folder).resolve()
    if not root.is_dir():
        raise FormatDetectionError(f"{root}: not a folder")
    files, dirs, refused = walk(root, follow_links)
    found = Discovery(root=root, errors=refused)
    for path in files:
        if is_image(path):
            found.images.append(path)
            found._by_stem.setdefault((path.parent, path.stem), path)
            found._by_stem.setdefault((path.parent, path.stem.lower()), path)
            found._by_name.setdefault((path.parent, path.name), path)
            found._image_dirs.add(path.parent)
    resolver = TreePaths(root, files, dirs)
    configs = _read_configs(files, found)
    consumed = _apply_configs(configs, resolver, found)
    _classify(files, consumed, configs, resolver, fmt, classes, found)
    if not found.labels and not found.errors:
        raise FormatDetectionError(_nothing_found(root, found, fmt))
    return found


@functools.lru_cache(maxsize=4096)
def _image_folders(folder: Path) -> tuple[Path, ...]:
    """``folder`` and, for ``labels/`` or ``Annotations/`` folders at any level, the image folder beside them."""
    found = [folder]
    parts = folder.parts
    for index in range(len(parts) - 1, 0, -1):
        alternatives = _IMAGE_DIRS.get(parts[index].lower())
        if alternatives is None:
            continue
        for name in alternatives:
            found.append(Path(*parts[:index], name, *parts[index + 1 :]))
    return tuple(found)


def _split_from_folders(image: Path, root: Path) -> str | None:
    relative = image.parent.relative_to(root).parts
    for name in (*reversed(relative), root.name):
        split = SPLIT_ALIASES.get(name.lower())
        if split is not None:
            return split
    return None


# --- layout files -------------------------------------------------------------------------------------------


def _read_configs(files: Sequence[Path], found: Discovery) -> list[LayoutConfig]:
    configs: list[LayoutConfig] = []
    for path in files:
        lowered = path.name.lower()
        try:
            if lowered.endswith(".data"):
                config = read_darknet_data(path)
            elif lowered.endswith((".yaml", ".yml")):  # any name (coco128.yaml); only those with names count
                config = read_data_yaml(path)
            else:
                continue
        except AnnotationError as exc:
            found.errors.append(exc)
            continue
        if config is not None:
            configs.append(config)
            found.layout_files.append(path)
    return configs


def _apply_configs(configs: Sequence[LayoutConfig], resolver: TreePaths, found: Discovery) -> set[Path]:
    """Splits from list files and data.yaml folders; returns the files the configs consumed."""
    consumed: set[Path] = set()
    for config in configs:
        bases = config.bases()
        for split, entries in config.splits.items():
            for entry in entries:
                target = resolver.resolve(entry, bases)
                if target is None:
                    if config.kind == "darknet":
                        found.warnings.append(f"{config.path}: {split} list {entry!r} not found")
                    continue
                where = f"{config.kind} {_rel(config.path, found.root)}"
                if target.suffix.lower() == ".txt":
                    consumed.add(target)
                    found.layout_files.append(target)
                    _apply_list(target, split, bases, resolver, found)
                elif target in resolver.dirs:
                    found._split_dirs.setdefault(target, (split, where))
    return consumed


def _apply_list(path: Path, split: str, bases: Sequence[Path], resolver: TreePaths, found: Discovery) -> None:
    try:
        entries = read_list_file(path)
    except AnnotationError as exc:
        found.errors.append(exc)
        return
    source = f"list file {_rel(path, found.root)}"
    missing = 0
    for entry in entries:
        image = resolver.resolve(entry, (*bases, path.parent))
        if image is None or not is_image(image):
            missing += 1
            if missing <= 3:
                found.warnings.append(f"{path}: lists {entry!r}, which is not in the folder")
            continue
        found._listed.setdefault(image, (split, source))
    if missing > 3:
        found.warnings.append(f"{path}: {missing - 3} more listed images are not in the folder")


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


# --- annotation files ---------------------------------------------------------------------------------------


def _classify(
    files: Sequence[Path],
    consumed: set[Path],
    configs: Sequence[LayoutConfig],
    resolver: TreePaths,
    fmt: FormatName | Literal["auto"],
    classes: Sequence[str] | None,
    found: Discovery,
) -> None:
    names = ClassNames(found.root, configs, resolver, classes)
    layout = set(found.layout_files)
    orphans: list[Path] = []
    for path in files:
        if is_image(path) or path in consumed or path in layout:
            continue
        suffix = path.suffix.lower()
        if suffix == ".xml":
            _add(found, fmt, LabelFile(path, "voc"))
            continue
        if suffix == ".json" and looks_like_createml(path):
            _add(found, fmt, LabelFile(path, "createml"))
            continue
        if path.name.lower() in CLASS_FILES or suffix == ".names":
            continue  # read when a label needs it
        if suffix != ".txt":
            found.ignored.append(path)
            continue
        image = found.image_for(path)  # a text file beside an image is its label; others must look like one
        if image is None and not looks_like_yolo_label(path):
            found.ignored.append(path)  # README, notes, licences, list files nothing refers to
        elif fmt not in ("auto", "yolo"):
            found.skipped.setdefault("yolo", path.parent)
        elif image is None:
            orphans.append(path)
        else:
            class_names, source = names.for_label(path)
            found.labels.append(LabelFile(path, "yolo", image, class_names, source))
    found.layout_files.extend(names.used)
    for path in orphans:
        found.warnings.append(f"{path}: label without an image")
    found.errors.extend(names.errors())


def _add(found: Discovery, fmt: str, label: LabelFile) -> None:
    if fmt in ("auto", label.format):
        found.labels.append(label)
    else:
        found.skipped.setdefault(label.format, label.path.parent)


def _nothing_found(root: Path, found: Discovery, fmt: str) -> str:
    what = "annotations" if fmt == "auto" else f"{fmt} annotations"
    lines = [f"{root}: no {what} found at any depth; layouts tried: " + "; ".join(LAYOUTS_TRIED)]
    for other, folder in sorted(found.skipped.items()):
        lines.append(f"{other} annotations found in {_rel(folder, root) or '.'} (use --format {other} or auto)")
    if found.images:
        lines.append(f"{len(found.images)} image(s) without labels, e.g. {_rel(found.images[0], root)}")
    if found.warnings:
        lines.append(found.warnings[0])
    return ". ".join(lines)


__all__ = ["LAYOUTS_TRIED", "Discovery", "LabelFile", "Placement", "discover"]
