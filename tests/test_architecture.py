"""docs/ARCHITECTURE.md stays true: its table names every sample field, tag and box attribute the code declares
(the constants of fabricdata/store/dataset.py), with the right kind, and nothing the code does not declare."""

from __future__ import annotations

import re
from pathlib import Path

from fabricdata.store import dataset

DOC = Path(__file__).resolve().parents[1] / "docs" / "ARCHITECTURE.md"
KINDS = {"F_": "field", "GT_": "field", "TAG_": "tag", "ATTR_": "box attribute"}


def declared() -> set[tuple[str, str]]:
    """(name, kind) of every field, tag and attribute constant of the data model."""
    found = set()
    for constant, value in vars(dataset).items():
        kind = next((k for prefix, k in KINDS.items() if constant.startswith(prefix)), None)
        if kind is not None and isinstance(value, str):
            found.add((value, kind))
    return found


def documented() -> set[tuple[str, str]]:
    """(name, kind) of every row of the table under 'Sample fields, tags and box attributes'."""
    section = DOC.read_text(encoding="utf-8").split("### Sample fields, tags and box attributes", 1)[1]
    rows = re.findall(r"^\| `([^`]+)` \| ([a-z ]+?)(?: \([^)]*\))? \|", section, flags=re.M)
    return {(name, kind.strip()) for name, kind in rows}


def test_the_field_table_names_every_field_tag_and_attribute_of_the_code() -> None:
    assert documented() == declared()


def test_the_check_sees_a_missing_row() -> None:
    assert ("ground_truth", "field") in documented() and ("prelabeled", "tag") in documented()
    assert len(documented()) == len(declared()) > 20
