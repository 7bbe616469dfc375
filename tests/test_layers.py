"""The house's plan, enforced: each concept package imports only the layers below it.

core <- formats <- store <- prepare | review | assist <- loop <- app <- cli (and the package face: ``fabricdata``,
``fabricdata.api``); finetune, the model side,
imports only ``fabricdata.core`` so that it runs on a CUDA box without FiftyOne. Every import statement counts,
also those inside functions (the CLI's lazy imports).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: what each layer may import, besides itself
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "formats": {"core"},
    "store": {"core", "formats"},
    "prepare": {"core", "formats", "store"},
    "review": {"core", "formats", "store"},
    "assist": {"core", "formats", "store", "finetune"},
    # the loop: workflows that compose several stages and the model side (audit's out-of-fold runs)
    "loop": {"core", "formats", "store", "prepare", "review", "assist", "finetune"},
    # the FiftyOne App plugin: operators and panels over the same library functions as the CLI
    "app": {"core", "formats", "store", "prepare", "review", "assist", "loop", "finetune", "face"},
    "cli": {"core", "formats", "store", "prepare", "review", "assist", "loop", "app", "finetune", "face"},
    "face": {"core", "formats", "store", "prepare", "review", "assist", "loop", "finetune"},
    "finetune": {"core"},
}

#: modules allowed at the package root: the face, the Python API and the entry point
ROOT_MODULES = {"__init__.py", "__main__.py", "api.py"}


def layer_of(module: str) -> str | None:
    """``fabricdata.store.writeback`` -> ``store``; ``finetune.train`` -> ``finetune``; other packages -> None."""
    parts = module.split(".")
    if parts[0] == "finetune":
        return "finetune"
    if parts[0] != "fabricdata":
        return None
    if len(parts) > 1 and parts[1] == "__main__":
        return "cli"  # the entry point
    if len(parts) == 1 or parts[1] in {"api", "__version__"}:
        return "face"
    return parts[1] if parts[1] in ALLOWED else "face"


def imported_modules(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            # ``from fabricdata import store`` names a layer through the attribute
            if node.module in {"fabricdata", "finetune"}:
                found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def own_modules() -> list[Path]:
    return sorted(
        p for package in ("fabricdata", "finetune") for p in (ROOT / package).rglob("*.py") if "_data" not in p.parts
    )


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


@pytest.mark.parametrize("path", own_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_import_goes_down_the_layers(path: Path) -> None:
    own = layer_of(module_name(path))
    assert own is not None
    wrong = []
    for line, module in imported_modules(path):
        target = layer_of(module)
        if target is None or target == own or (own != "face" and module in {"fabricdata", "finetune"}):
            continue
        if target not in ALLOWED[own]:
            wrong.append(f"{path.relative_to(ROOT)}:{line} ({own}) imports {module} ({target})")
    assert wrong == []


def test_the_package_root_holds_only_the_face_the_api_and_the_entry_point() -> None:
    loose = {p.name for p in (ROOT / "fabricdata").glob("*.py")} - ROOT_MODULES
    assert loose == set()


def test_no_concept_folder_holds_more_than_twelve_modules() -> None:
    for folder in (ROOT / "fabricdata").iterdir():
        if folder.is_dir() and (folder / "__init__.py").exists():
            modules = [p for p in folder.glob("*.py") if p.name not in {"__init__.py", "__main__.py"}]
            assert len(modules) <= 12, f"{folder.name}/ holds {len(modules)} modules"


def test_the_rule_catches_an_upward_import(tmp_path: Path) -> None:
    """The walker sees imports inside functions too (the check would pass vacuously otherwise)."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from fabricdata.store.dataset import GT_FIELD\n    import fabricdata.cli.main\n")
    assert [m for _, m in imported_modules(module)] == ["fabricdata.store.dataset", "fabricdata.cli.main"]
    assert {layer_of(m) for _, m in imported_modules(module)} - ALLOWED["core"] == {"store", "cli"}
