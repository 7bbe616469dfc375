"""Finding the annotations of a folder as people publish them, at any depth.

Layouts understood (each pairs a label file with its image by the rules of :mod:`fabricdata.formats.pairing`):

- LabelImg: the label beside its image (Pascal VOC ``.xml``, YOLO ``.txt``, CreateML ``.json``);
- sibling folders whose names say labels/annotations and images, in any case and with any prefix or suffix:
  Ultralytics / Roboflow ``images/`` + ``labels/`` (``train/images`` + ``train/labels`` or ``images/train`` +
  ``labels/train``), Pascal VOC ``Annotations/`` + ``JPEGImages/``, ``ANNOTATIONS/`` + ``IMAGES/``,
  ``Validation_Annotations/`` + ``Validation_Images/``, FiftyOne's ``labels/`` + ``data/``;
- darknet (AlexeyAB): ``obj.data`` naming a class-name file and train/valid/test list files of image paths.

YOLO class names come from the names source proven to describe the labels (:mod:`fabricdata.formats.names`),
else ``--classes``. The authors' splits come from list files, then ``data.yaml`` split folders, then folder
names (``train``, ``valid``/``val``, ``test``, also as the prefix of an image folder: ``Validation_Images``).
Which files are labels, and of which format, the formats registered in :mod:`fabricdata.formats.registry` say; files
recognised as labels of a format nobody registered yet are refused with the registry's reason. Nothing here reads
an image.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fabricdata.core.errors import AnnotationError, FormatDetectionError
from fabricdata.core.images import is_image
from fabricdata.core.walk import walk
from fabricdata.formats import registry
from fabricdata.formats.layouts import (
    SPLIT_ALIASES,
    LayoutConfig,
    TreePaths,
    read_darknet_data,
    read_data_yaml,
    read_list_file,
)
from fabricdata.formats.names import ClassNames, Names
from fabricdata.formats.pairing import ImageIndex, folder_role

#: a registered format's name (:func:`fabricdata.formats.registry.names`), or ``auto``
FormatName = str
#: folder names that organise files rather than name a category (besides image and label folders)
STRUCTURAL_DIRS = frozenset({"obj", "data"})
#: the class-name file at the import folder's top that gives the dataset's class order (LabelImg, `synth`)
CLASS_ORDER_FILE = "classes.txt"
_KINDS = {".xml": "XML", ".txt": "YOLO .txt", ".json": "JSON"}


def layouts_tried() -> tuple[str, ...]:
    """The layouts import looks for, in words (for the message when it finds nothing)."""
    beside = ", ".join(fmt.title for fmt in registry.formats())
    return (
        f"label files beside the images ({beside})",
        "Ultralytics/Roboflow (images/ + labels/, data.yaml)",
        "darknet (obj.data + list files)",
        "Pascal VOC (Annotations/ + JPEGImages/, or any *labels*/*annotations* folder beside an *images* folder)",
    )


@dataclass(frozen=True, slots=True)
class LabelFile:
    """One annotation file found, with what its layout says about it."""

    path: Path
    #: the registered format it is a file of
    format: str
    #: YOLO: the image paired by the layout (VOC and CreateML name theirs inside the file)
    image: Path | None = None
    #: YOLO: class names by index, and the file they came from (None: from --classes)
    names: tuple[str, ...] | None = None
    names_from: Path | None = None
    #: YOLO: how the image was paired (``stem``, ``case``; see :mod:`fabricdata.formats.pairing`)
    how: str = "stem"


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
    #: every regular file walked (for the import's ledger)
    files: list[Path] = field(default_factory=list)
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
    #: annotation-like files not read: path -> (ledger status, reason); labels without an image, files of a
    #: recognised format nobody registered
    unread: dict[Path, tuple[str, str]] = field(default_factory=dict)
    #: label files paired with no image (a format's ``locate`` files them here; listed after the walk)
    orphans: list[Path] = field(default_factory=list)
    #: why an ignored file was ignored, where there is more to say than "not an image or annotation"
    notes: dict[Path, str] = field(default_factory=dict)
    index: ImageIndex = field(default_factory=lambda: ImageIndex((), ()))
    _listed: dict[Path, tuple[str, str]] = field(default_factory=dict)
    _split_dirs: dict[Path, tuple[str, str]] = field(default_factory=dict)
    _image_dirs: set[Path] = field(default_factory=set)

    def image_for(self, label: Path, named: str = "") -> Path | None:
        """The image of an annotation file (see :meth:`ImageIndex.pair`; None when there is none or several)."""
        return self.index.pair(label, named).image

    def image_named(self, folder: Path, name: str) -> Path | None:
        """An image named ``name`` in ``folder`` or its layout's image folder (CreateML entries)."""
        return self.index.named(folder, name)

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
        folder or an image/label folder (``images/``, ``Validation_Images/``) is no category."""
        folder = image.parent
        if folder == self.root or _structural(folder.name):
            return None
        below_split = any(
            parent.name.lower() in SPLIT_ALIASES for parent in folder.parents if self.root in parent.parents
        )
        siblings = sum(1 for other in self._image_dirs if other.parent == folder.parent)
        return folder.name if below_split or siblings > 1 else None

    def guess(self, unpaired: Sequence[Path], total: int) -> str:
        """One sentence on annotation files that paired with no image: the biggest group, and the folder where
        images of their names are, if any."""
        head = f"{len(unpaired)} of {total} annotation files pair with no image"
        refusals = registry.refusals()
        others = [path for path in unpaired if self.unread.get(path, ("", ""))[1] in refusals]
        labels = [path for path in unpaired if path not in others]
        if not labels:
            return f"{head}: {_unsupported(others, self.unread, self.root)}"
        folder, count = Counter(path.parent for path in labels).most_common(1)[0]
        group = [path for path in labels if path.parent == folder]
        kind = f"{_KINDS.get(group[0].suffix.lower(), group[0].suffix)} files in {_rel(folder, self.root) or '.'}/"
        stems = self.index.by_loose_stem()
        places = Counter(image.parent for path in group for image in stems.get(path.stem.lower(), ())[:1])
        if not places:
            return (
                f"{head}: {count} {kind} name no image under {self.root} (e.g. {group[0].name}; images pair by "
                "file stem, or by the VOC <filename>)"
            )
        where, matched = places.most_common(1)[0]
        example = next(p for p in group if any(i.parent == where for i in stems.get(p.stem.lower(), ())))
        return (
            f"{head}: {count} {kind} name images that are in {_rel(where, self.root) or '.'}/ ({matched} match by "
            f"name, e.g. {example.name}), a folder no layout pairs them with: put each label beside its image, or "
            "name the folders like images/ + labels/"
        )

    @property
    def formats(self) -> list[str]:
        return sorted({label.format for label in self.labels})


def discover(
    folder: str | Path,
    fmt: FormatName = "auto",
    classes: Sequence[str] | None = None,
    follow_links: bool = False,
    names: tuple[Names, Path] | None = None,
) -> Discovery:
    """Walk ``folder`` and pair every annotation with its image by the rules of its layout (links to files
    outside ``folder`` are refused unless ``follow_links``). ``names``: the class names (and their file) every
    YOLO label uses (``--names``), instead of the names files found.

    Raises:
        FormatDetectionError: ``folder`` is not a folder, or holds no annotation at all (the message names the
            layouts tried and what was found instead).
    """
    root = Path(folder).resolve()
    if not root.is_dir():
        raise FormatDetectionError(f"{root}: not a folder")
    files, dirs, refused = walk(root, follow_links)
    found = Discovery(root=root, errors=refused, files=files)
    found.images = [path for path in files if is_image(path)]
    found._image_dirs = {path.parent for path in found.images}
    found.index = ImageIndex(found.images, dirs)
    resolver = TreePaths(root, files, dirs)
    configs = _read_configs(files, found)
    consumed, described = _apply_configs(configs, resolver, found)
    class_names = ClassNames(root, configs, resolver, classes, described, found.images, names)
    _classify(files, consumed, class_names, fmt, found)
    if not found.labels and not found.errors:
        raise FormatDetectionError(_nothing_found(root, found, fmt))
    return found


def _structural(name: str) -> bool:
    return name.lower() in SPLIT_ALIASES or name.lower() in STRUCTURAL_DIRS or folder_role(name)[0] is not None


def _split_from_folders(image: Path, root: Path) -> str | None:
    relative = image.parent.relative_to(root).parts
    for name in (*reversed(relative), root.name):
        split = SPLIT_ALIASES.get(name.lower())
        role, affix = folder_role(name)
        if split is None and role is not None:
            split = SPLIT_ALIASES.get(affix)
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
            if config.kind == "darknet":
                found.layout_files.append(path)  # a data.yaml is layout once its folders or names are used
    return configs


def _apply_configs(
    configs: Sequence[LayoutConfig], resolver: TreePaths, found: Discovery
) -> tuple[set[Path], dict[Path, set[Path]]]:
    """Splits from list files and data.yaml folders; returns the files the configs consumed and, per config,
    the folders it names (split folders, folders of the images its list files list)."""
    consumed: set[Path] = set()
    described: dict[Path, set[Path]] = {}
    for config in configs:
        bases = config.bases()
        named = described.setdefault(config.path, set())
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
                    named |= _apply_list(target, split, bases, resolver, found)
                elif target in resolver.dirs:
                    found._split_dirs.setdefault(target, (split, where))
                    named.add(target)
        if named and config.path not in found.layout_files:
            found.layout_files.append(config.path)
    return consumed, described


def _apply_list(path: Path, split: str, bases: Sequence[Path], resolver: TreePaths, found: Discovery) -> set[Path]:
    """Tags the images a list file lists; returns their folders."""
    try:
        entries = read_list_file(path)
    except AnnotationError as exc:
        found.errors.append(exc)
        return set()
    source = f"list file {_rel(path, found.root)}"
    missing = 0
    folders: set[Path] = set()
    for entry in entries:
        image = resolver.resolve(entry, (*bases, path.parent))
        if image is None or not is_image(image):
            missing += 1
            if missing <= 3:
                found.warnings.append(f"{path}: lists {entry!r}, which is not in the folder")
            continue
        found._listed.setdefault(image, (split, source))
        folders.add(image.parent)
    if missing > 3:
        found.warnings.append(f"{path}: {missing - 3} more listed images are not in the folder")
    return folders


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


# --- annotation files ---------------------------------------------------------------------------------------


def _classify(
    files: Sequence[Path],
    consumed: set[Path],
    names: ClassNames,
    fmt: FormatName,
    found: Discovery,
) -> None:
    layout = set(found.layout_files) | set(names.sources)
    for path in files:
        if is_image(path) or path in consumed or path in layout:
            continue  # names files are read when a label needs one
        owner = registry.owner(path, found)
        if owner is None:
            refusal = registry.unsupported(path)
            if refusal is None:
                found.ignored.append(path)
            else:
                found.unread[path] = ("refused", refusal)
                found.warnings.append(f"{path}: {refusal}")
        elif fmt not in ("auto", owner.name):
            found.skipped.setdefault(owner.name, path.parent)
        else:
            label = owner.locate(path, found, names)
            if label is not None:
                found.labels.append(label)
    found.layout_files.extend(path for path in names.used if path not in found.layout_files)
    for path in names.unused():
        if path == found.root / CLASS_ORDER_FILE:  # the class order of the dataset (import reads it)
            found.layout_files.append(path)
        elif path not in found.layout_files:
            found.ignored.append(path)
            found.notes[path] = "class names that no label here was proven to use"
    for path in found.orphans:
        found.warnings.append(f"{path}: label without an image")
        found.unread[path] = ("ignored", "label without an image")
    found.errors.extend(names.errors())


def _unsupported(paths: Sequence[Path], unread: dict[Path, tuple[str, str]], root: Path) -> str:
    """``2 COCO detection JSON file(s): not supported yet (...), e.g. a.json``: the refusal of the most such files."""
    reason, count = Counter(unread[path][1] for path in paths).most_common(1)[0]
    example = next(path for path in paths if unread[path][1] == reason)
    return f"{count} {reason.replace(':', ' file(s):', 1)}, e.g. {_rel(example, root)}"


def _nothing_found(root: Path, found: Discovery, fmt: str) -> str:
    what = "annotations" if fmt == "auto" else f"{fmt} annotations"
    lines = [f"{root}: no {what} found at any depth; layouts tried: " + "; ".join(layouts_tried())]
    for other, folder in sorted(found.skipped.items()):
        lines.append(f"{other} annotations found in {_rel(folder, root) or '.'} (use --format {other} or auto)")
    if found.images:
        lines.append(f"{len(found.images)} image(s) without labels, e.g. {_rel(found.images[0], root)}")
    refusals = registry.refusals()
    others = [path for path, (_, reason) in found.unread.items() if reason in refusals]
    if others:
        lines.append(_unsupported(others, found.unread, root))
    elif found.warnings:
        lines.append(found.warnings[0])
    return ". ".join(lines)


__all__ = ["Discovery", "LabelFile", "Placement", "discover", "layouts_tried"]
