"""Walking an import folder: the regular files below it, and one error for each entry refused without being
opened (FIFOs, devices, sockets, broken or looping links, links leaving the folder unless ``follow_links``).
Hidden entries and macOS litter are skipped; symlinked folders are not entered (no loops, nothing outside)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from fabricdata.core.errors import AnnotationError, FormatDetectionError, InvalidValueError
from fabricdata.core.fileio import cannot_read, file_kind
from fabricdata.core.images import is_image

#: folders deeper than this below the import folder are not walked
MAX_DEPTH = 24


def image_files(folder: str | Path, follow_links: bool = False) -> list[Path]:
    """The images below ``folder`` at any depth, sorted, by the same rules as import's walk (hidden entries,
    macOS litter, symlinked folders and refused entries skipped)."""
    root = Path(folder).resolve()
    if not root.is_dir():
        raise FormatDetectionError(f"{root}: not a folder")
    return [path for path in walk(root, follow_links)[0] if is_image(path)]


def walk(root: Path, follow_links: bool = False) -> tuple[list[Path], set[Path], list[AnnotationError]]:
    """Regular files below ``root`` (sorted), skipping hidden entries and macOS litter; symlinked folders are
    not entered (no loops, nothing outside the tree). Entries that are not regular files (FIFOs, devices,
    broken or looping links) and, unless ``follow_links``, links to files outside ``root`` are refused: one
    error each, never opened. A folder that cannot be listed is one error too."""
    files: list[Path] = []
    dirs: set[Path] = {root}
    refused: list[AnnotationError] = []
    stack: list[tuple[Path, int]] = [(root, 0)]
    while stack:
        folder, depth = stack.pop()
        try:
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda entry: entry.name)
        except OSError as exc:  # listed like a bad file: the rest of the tree is still walked
            why = exc.strerror or exc.__class__.__name__
            refused.append(InvalidValueError(folder, "folder", f"cannot be listed ({why}); nothing below it is read"))
            continue
        for entry in entries:
            if entry.name.startswith(".") or entry.name == "__MACOSX":
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    if depth < MAX_DEPTH:
                        dirs.add(Path(entry.path))
                        stack.append((Path(entry.path), depth + 1))
                    continue
                problem = _refusal(Path(entry.path), entry, root, follow_links)
            except OSError as exc:
                problem = cannot_read(exc)
            if problem is None:
                files.append(Path(entry.path))
            elif problem:
                refused.append(InvalidValueError(entry.path, "file", problem))
    files.sort()
    refused.sort(key=lambda error: error.path)
    return files, dirs, refused


def _refusal(path: Path, entry: os.DirEntry[str], root: Path, follow_links: bool) -> str | None:
    """Why an entry is not read (None: a regular file to read; "": skipped without a word, as a symlinked
    folder)."""
    if entry.is_symlink():
        try:
            target = path.resolve(strict=True)
        except (OSError, RuntimeError):
            return "broken or looping symbolic link"
        if target.is_dir():
            return ""
        if not follow_links and not target.is_relative_to(root):
            return f"symbolic link to {target}, outside the import folder (--follow-links to read it)"
        mode = target.stat().st_mode
    else:
        mode = entry.stat(follow_symlinks=False).st_mode
    if not stat.S_ISREG(mode):
        return f"not a regular file ({file_kind(mode)})"
    return None
