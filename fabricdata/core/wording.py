"""Words for people: counts with the right plural."""

from __future__ import annotations


def plural(count: int, word: str, many: str | None = None) -> str:
    """``1 image``, ``2 images``, ``3 boxes`` (``many`` where adding an s is wrong)."""
    return f"{count} {word if count == 1 else (many or word + 's')}"
