"""Which class-name file describes a YOLO label folder: proven, never guessed.

A names source is a ``data.yaml`` (any YAML with ``names``), a darknet ``obj.data``'s names file, a
``classes.txt`` or a ``*.names`` file. For a label folder (and its image folder) a source is used when

1. it **names them**: a ``data.yaml`` whose split paths are that folder or one above it, an ``obj.data`` whose
   list files list images of that folder; or, where none does,
2. it is **the only one on the path** from the labels to the import folder (counting the folders on that path
   and configuration folders beside them that hold no data, such as ``config/data.yaml``); sources that list
   the very same names count once.

Several sources that could apply and disagree are an error listing them with ``--names FILE`` to choose one;
``--names`` replaces discovery for every label. ``--classes`` gives names only where no file does.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fabricdata.core.errors import AnnotationError, InvalidValueError, MissingFieldError
from fabricdata.formats.layouts import (
    CLASS_FILES,
    LayoutConfig,
    TreePaths,
    read_darknet_data,
    read_data_yaml,
    read_names,
)

Names = tuple[str, ...]


@dataclass(slots=True)
class NamesSource:
    """One file that lists class names, where it sits, and the folders it says it describes."""

    path: Path
    home: Path
    names: Names | None = None
    describes: set[Path] = field(default_factory=set)
    problem: AnnotationError | None = None


def is_class_file(path: Path) -> bool:
    """``classes.txt`` or ``*.names`` (hidden files excluded)."""
    name = path.name.lower()
    return name in CLASS_FILES or (name.endswith(".names") and not name.startswith("."))


class ClassNames:
    """YOLO class names for each label folder (see the module docstring for the rules)."""

    def __init__(
        self,
        root: Path,
        configs: Sequence[LayoutConfig],
        resolver: TreePaths,
        given: Sequence[str] | None,
        described: dict[Path, set[Path]] | None = None,
        images: Iterable[Path] = (),
        chosen: tuple[Names, Path] | None = None,
    ) -> None:
        self.root = root
        self.given = tuple(given) if given else None
        self.chosen = chosen
        self._images = images
        self._files = resolver.files
        self.problems: list[AnnotationError] = []
        self.sources: dict[Path, NamesSource] = {}
        self.used: list[Path] = []
        self.without: dict[Path, int] = defaultdict(int)
        self.ambiguous: dict[Path, tuple[int, list[NamesSource]]] = {}
        self._cache: dict[tuple[Path, Path], tuple[Names | None, Path | None]] = {}
        self._collect(configs, resolver, described or {})

    # --- the sources of the tree ---

    def _collect(self, configs: Sequence[LayoutConfig], resolver: TreePaths, described: dict[Path, set[Path]]) -> None:
        for config in configs:
            if config.kind == "data.yaml" and config.names:
                source = NamesSource(config.path, config.path.parent, config.names)
                self.sources[config.path] = source
            elif config.kind == "darknet" and config.names_file:
                target = resolver.resolve(config.names_file, config.bases())
                if target is None:
                    problem = InvalidValueError(config.path, "names", "class-name file not found", config.names_file)
                    self.problems.append(problem)
                    continue
                source = self.sources.setdefault(target, NamesSource(target, config.path.parent))
            else:
                continue
            source.describes |= described.get(config.path, set())
        for path in sorted(path for path in resolver.files if is_class_file(path)):
            if path not in self.sources:
                self.sources[path] = NamesSource(path, path.parent)

    @functools.cached_property
    def data_dirs(self) -> set[Path]:
        """Folders holding images or label-like files at any depth (configuration folders hold neither)."""
        suffixes = (".txt", ".xml", ".json")
        labels = (p for p in self._files if p.suffix.lower() in suffixes and not is_class_file(p))
        out: set[Path] = set()
        for folder in {path.parent for path in self._images} | {path.parent for path in labels}:
            while folder not in out and folder != self.root and self.root in folder.parents:
                out.add(folder)
                folder = folder.parent
        return out

    def _names_of(self, source: NamesSource) -> Names | None:
        if source.names is None and source.problem is None:
            try:
                source.names = read_names(source.path)
            except AnnotationError as exc:
                source.problem = exc
                self.problems.append(exc)
        return source.names

    # --- the names of one label folder ---

    def for_label(self, label: Path, image: Path | None = None) -> tuple[Names | None, Path | None]:
        """Class names for the YOLO file ``label`` (paired with ``image``) and the file they came from."""
        key = (label.parent, image.parent if image is not None else label.parent)
        if key not in self._cache:
            self._cache[key] = self._lookup(*key)
        names, source = self._cache[key]
        if names is None and self.given is None and label.parent not in self.ambiguous:
            self.without[label.parent] += 1
        elif label.parent in self.ambiguous:
            count, candidates = self.ambiguous[label.parent]
            self.ambiguous[label.parent] = (count + 1, candidates)
        return names, source

    def _lookup(self, folder: Path, image_folder: Path) -> tuple[Names | None, Path | None]:
        if self.chosen is not None:
            return self._use(*self.chosen)
        chain = self._chain(folder)
        around = set(chain) | set(self._chain(image_folder))
        proven = [s for s in self.sources.values() if s.describes & around]
        candidates = proven or self._on_path(chain)
        readable = [s for s in candidates if self._names_of(s) is not None]
        if len(candidates) > len(readable):
            return None, None  # an unreadable names file on the way: its error says so
        distinct = {source.names for source in readable}
        if len(distinct) == 1:
            return self._use(readable[0].names, readable[0].path)
        if len(distinct) > 1:
            self.ambiguous.setdefault(folder, (0, readable))
            return None, None
        return (self.given, None) if self.given else (None, None)

    def _on_path(self, chain: Sequence[Path]) -> list[NamesSource]:
        """Sources in the folders of ``chain`` or in configuration folders beside them, nearest first."""
        depth = {folder: index for index, folder in enumerate(chain)}
        found = []
        for source in self.sources.values():
            home = source.home
            if home in depth:
                found.append((depth[home], str(source.path), source))
            elif home.parent in depth and home not in self.data_dirs:
                found.append((depth[home.parent], str(source.path), source))
        return [source for _, _, source in sorted(found, key=lambda row: row[:2])]

    def _use(self, names: Names | None, path: Path) -> tuple[Names | None, Path | None]:
        if path not in self.used:
            self.used.append(path)
        return names, path

    def _chain(self, folder: Path) -> list[Path]:
        chain = [folder]
        while chain[-1] != self.root and self.root in chain[-1].parents:
            chain.append(chain[-1].parent)
        return chain

    def errors(self) -> list[AnnotationError]:
        """Problems of names files; one error per label folder without names, or with several that disagree."""
        out = list(self.problems)
        for folder, (count, candidates) in sorted(self.ambiguous.items()):
            listed = ", ".join(f"{_rel(s.path, self.root)} ({len(s.names or ())} names)" for s in candidates)
            out.append(
                InvalidValueError(
                    folder,
                    "classes",
                    f"{count} YOLO label file(s) and {len(candidates)} class-name files that could describe them: "
                    f"{listed}; choose one with --names FILE",
                )
            )
        for folder, count in sorted(self.without.items()):
            out.append(
                InvalidValueError(
                    folder,
                    "classes",
                    f"{count} YOLO label file(s) but no class names: give --classes or --names FILE, or add "
                    "classes.txt, data.yaml or obj.names",
                )
            )
        return out

    def unused(self) -> list[Path]:
        """Names files no label used."""
        return [path for path in self.sources if path not in self.used]


def read_names_file(path: str | Path) -> tuple[Names, Path]:
    """The class names a ``--names`` file gives, and the file they are in: a ``data.yaml`` (its ``names``), an
    ``obj.data`` (its names file, relative to the folder above it or its own), ``classes.txt`` or ``*.names``.

    Raises:
        MissingFieldError: the file does not exist, or a YAML or obj.data names no classes.
        InvalidValueError: the file is unreadable or its names are malformed.
    """
    source = Path(path).resolve()
    if not source.is_file():
        raise MissingFieldError(source, "file")
    lowered = source.name.lower()
    if lowered.endswith((".yaml", ".yml")):
        config = read_data_yaml(source)
        if config is None or not config.names:
            raise MissingFieldError(source, "names")
        return config.names, source
    if lowered.endswith(".data"):
        darknet = read_darknet_data(source)
        if darknet is None or not darknet.names_file:
            raise MissingFieldError(source, "names")
        for base in darknet.bases():
            target = (base / darknet.names_file).resolve()
            if target.is_file():
                return read_names(target), target
        raise InvalidValueError(source, "names", "class-name file not found", darknet.names_file)
    return read_names(source), source


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


__all__ = ["ClassNames", "NamesSource", "is_class_file", "read_names_file"]
