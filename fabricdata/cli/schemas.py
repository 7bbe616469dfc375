"""JSON Schemas of the project's records, generated from the typed models (``python -m fabricdata.cli.schemas``).

CI fails when a checked-in schema in ``schemas/`` differs from the generated one.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from fabricdata.core.contracts import shipped

SCHEMA_DIR = shipped("schemas")


def models() -> dict[str, type[BaseModel]]:
    from fabricdata.core.contracts import (
        ExportManifest,
        ExportRecord,
        LabelDiff,
        LabelVersion,
        PredictionRecord,
        ValidationReport,
    )
    from finetune.config import TrainConfig

    return {
        "validation-report": ValidationReport,
        "export-record": ExportRecord,
        "export-manifest": ExportManifest,
        "prediction-record": PredictionRecord,
        "label-version": LabelVersion,
        "label-diff": LabelDiff,
        "train-config": TrainConfig,
    }


def generate() -> dict[str, str]:
    """File name -> schema text for every model."""
    out = {}
    for name, model in models().items():
        schema: dict[str, Any] = model.model_json_schema()
        schema = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"{name}.schema.json",
            **schema,
        }
        out[f"{name}.schema.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return out


def differences(folder: Path = SCHEMA_DIR) -> list[str]:
    """Schema files that are missing or differ from the generated ones."""
    return [
        name
        for name, text in generate().items()
        if not (folder / name).is_file() or (folder / name).read_text(encoding="utf-8") != text
    ]


def write(folder: Path = SCHEMA_DIR) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in generate().items():
        (folder / name).write_text(text, encoding="utf-8")
    return sorted(generate())


if __name__ == "__main__":
    if "--check" in sys.argv:
        stale = differences()
        if stale:
            print(
                f"schemas out of date: {', '.join(stale)} (run: python -m fabricdata.cli.schemas)",
                file=sys.stderr,
            )
            sys.exit(1)
        print("schemas up to date")
    else:
        print("\n".join(write()))
