"""The small files that describe a published dataset's layout: ``data.yaml``, darknet ``obj.data``, list files,
class-name files; and sniffing whether a text or JSON file is an annotation at all.

Each reader returns plain data or raises a typed error naming the file; none of them touches images.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fabricdata.core.errors import InvalidValueError
from fabricdata.core.fileio import read_limited

#: split names authors use for folders, list-file keys and data.yaml keys -> our split tags
SPLIT_ALIASES: dict[str, str] = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}
#: a layout file larger than this is not a layout file (and is never read whole)
MAX_LAYOUT_BYTES = 8 * 1024 * 1024
#: class-name files LabelImg and YOLO tools write beside labels (``*.names`` too)
CLASS_FILES = ("classes.txt",)
_SNIFF_BYTES = 4096


@dataclass(frozen=True, slots=True)
class LayoutConfig:
    """What a ``data.yaml`` or ``obj.data`` says: class names and, per split, the paths it lists."""

    path: Path
    kind: str  # "data.yaml" or "darknet"
    names: tuple[str, ...] | None = None
    #: the raw ``names`` path of an obj.data (resolved by the caller: darknet paths are relative to its cwd)
    names_file: str | None = None
    splits: dict[str, list[str]] = field(default_factory=dict)
    #: data.yaml's ``path`` key (the dataset root the split paths are relative to)
    base: str | None = None

    def bases(self) -> list[Path]:
        """Folders this file's relative paths may start from: darknet runs from the folder above ``data/``."""
        here = self.path.parent
        bases = [here.parent, here] if self.kind == "darknet" else [here]
        if self.base:
            bases.insert(0, Path(posixpath.normpath(posixpath.join(str(here), self.base))))
        return bases


def _read_text(path: Path) -> str:
    try:
        return read_limited(path, MAX_LAYOUT_BYTES).decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidValueError(path, "document", f"invalid UTF-8 at byte {exc.start}") from None


def read_names(path: Path) -> tuple[str, ...]:
    """A class-name file (``classes.txt``, ``obj.names``): one name a line, blank lines ignored, order kept."""
    names = tuple(line.strip() for line in _read_text(path).splitlines() if line.strip())
    if not names:
        raise InvalidValueError(path, "document", "no class names")
    return names


def read_data_yaml(path: Path) -> LayoutConfig | None:
    """An Ultralytics/Roboflow ``data.yaml``; None when the YAML has no ``names`` (not a dataset file)."""
    import yaml

    try:
        data = yaml.safe_load(_read_text(path))
    except yaml.YAMLError as exc:
        raise InvalidValueError(path, "document", f"malformed YAML ({exc.__class__.__name__})") from None
    if not isinstance(data, dict) or "names" not in data:
        return None
    names = _yaml_names(path, data["names"])
    if "nc" in data and data["nc"] != len(names):
        raise InvalidValueError(path, "nc", f"says {data['nc']} classes but names lists {len(names)}", data["nc"])
    splits: dict[str, list[str]] = {}
    for key, value in data.items():
        split = SPLIT_ALIASES.get(str(key).lower())
        if split is None or value is None:
            continue
        entries = value if isinstance(value, list) else [value]
        splits.setdefault(split, []).extend(str(entry) for entry in entries)
    base = data.get("path")
    return LayoutConfig(path, "data.yaml", names=names, splits=splits, base=str(base) if base else None)


def _yaml_names(path: Path, raw: Any) -> tuple[str, ...]:
    if isinstance(raw, list):
        names = [str(name) for name in raw]
    elif isinstance(raw, dict):
        try:
            indices = sorted(int(key) for key in raw)
        except (TypeError, ValueError):
            raise InvalidValueError(path, "names", "dict keys must be class indices", list(raw)) from None
        if indices != list(range(len(indices))):
            raise InvalidValueError(path, "names", "class indices must run 0..n-1 without gaps", indices)
        by_index = {int(key): str(value) for key, value in raw.items()}
        names = [by_index[index] for index in indices]
    else:
        raise InvalidValueError(path, "names", "expected a list or a dict of class names", raw)
    if not names or any(not name.strip() for name in names):
        raise InvalidValueError(path, "names", "class names must be non-empty", raw)
    return tuple(name.strip() for name in names)


def read_darknet_data(path: Path) -> LayoutConfig | None:
    """A darknet ``obj.data`` (``classes = 3``, ``names = data/obj.names``, ``train = data/train.txt``, ...)."""
    values: dict[str, str] = {}
    for line in _read_text(path).splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip():
            values[key.strip().lower()] = value.strip()
    if "names" not in values and not any(key in SPLIT_ALIASES for key in values):
        return None
    splits = {SPLIT_ALIASES[key]: [value] for key, value in values.items() if key in SPLIT_ALIASES and value}
    return LayoutConfig(path, "darknet", names_file=values.get("names") or None, splits=splits)


def read_list_file(path: Path) -> list[str]:
    """A darknet/Ultralytics list file: one image path a line (comments and blank lines skipped)."""
    lines = (line.strip() for line in _read_text(path).splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def _head(path: Path) -> str:
    with path.open("rb") as handle:
        return handle.read(_SNIFF_BYTES).decode("utf-8", errors="replace")


def looks_like_yolo_label(path: Path) -> bool:
    """True for an empty file or one whose first lines read ``class cx cy w h`` (numbers)."""
    try:
        lines = [line for line in _head(path).splitlines() if line.strip()]
    except OSError:
        return False
    if not lines:
        return True
    for line in lines[:5]:
        fields = line.split()
        if len(fields) < 5 or not fields[0].lstrip("-").isdigit():
            return False
        try:
            [float(value) for value in fields[1:5]]
        except ValueError:
            return False
    return True


def looks_like_createml(path: Path) -> bool:
    """True for a JSON list whose first entry has an ``image`` name (LabelImg's CreateML file)."""
    try:
        if path.stat().st_size > MAX_LAYOUT_BYTES:
            return _head(path).lstrip().startswith("[")
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return _head(path).lstrip().startswith("[") if path.is_file() else False
    return isinstance(data, list) and (not data or (isinstance(data[0], dict) and "image" in data[0]))


def looks_like_coco(path: Path) -> bool:
    """True for a COCO detection JSON: an object with ``annotations`` and ``images`` or ``categories`` (large
    files are judged by their first kilobytes)."""
    try:
        if path.stat().st_size > MAX_LAYOUT_BYTES:
            head = _head(path)
            return head.lstrip().startswith("{") and ('"annotations"' in head or '"images"' in head)
        data = json.loads(path.read_bytes().decode("utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(data, dict) and "annotations" in data and ("images" in data or "categories" in data)


def split_in_name(path: Path) -> str | None:
    """The split a label file's name says (``instances_train2017.json`` -> train, ``val.json``), or None."""
    words = re.split(r"[^a-z]+", path.name.lower())
    return next((SPLIT_ALIASES[word] for word in words if word in SPLIT_ALIASES), None)


# --- reading layout files inside a tree ---------------------------------------------------------------------


class TreePaths:
    """Finds the file or folder a layout file means, also when the authors wrote paths of their own machine
    (``/content/darknet/data/obj/a.jpg``, ``../train/images``, ``C:\\data\\obj\\a.jpg``): by the longest unique
    trailing part of the path that exists in the tree."""

    def __init__(self, root: Path, files: Iterable[Path], dirs: Iterable[Path]) -> None:
        self.root = root
        self.dirs = set(dirs)
        self.files = set(files)
        self.paths: set[Path] = self.files | self.dirs
        self._suffixes: dict[bool, dict[str, list[Path]]] = {}

    def resolve(self, entry: str, bases: Sequence[Path]) -> Path | None:
        text = entry.strip().replace("\\", "/")
        if not text:
            return None
        for base in bases:
            candidate = Path(posixpath.normpath(posixpath.join(str(base), text)))
            if candidate in self.paths:
                return candidate
        parts = [part for part in text.split("/") if part not in ("", ".", "..") and not part.endswith(":")]
        suffixes = self._suffix_index(is_file=bool(posixpath.splitext(text)[1]))
        for start in range(len(parts)):
            matches = suffixes.get("/".join(parts[start:]), [])
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                return None  # ambiguous: a shorter suffix is only more so
        return None

    def _suffix_index(self, is_file: bool) -> dict[str, list[Path]]:
        """Every trailing part of the files' (or folders') paths -> the paths that end so."""
        if is_file not in self._suffixes:
            index: dict[str, list[Path]] = defaultdict(list)
            for path in self.files if is_file else self.dirs:
                parts = path.relative_to(self.root).parts
                for start in range(len(parts)):
                    index["/".join(parts[start:])].append(path)
            self._suffixes[is_file] = dict(index)
        return self._suffixes[is_file]
