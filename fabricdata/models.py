"""Typed records that leave the program as JSON; the schemas in ``schemas/`` are generated from them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Severity = Literal["error", "warning", "info"]


class Finding(BaseModel):
    """One problem (or fact) ``fabricdata validate`` found."""

    model_config = ConfigDict(extra="forbid")

    check: str = Field(description="Machine name of the check, e.g. 'degenerate-boxes'.")
    severity: Severity = Field(description="'error' fails --strict; 'warning' and 'info' do not.")
    message: str = Field(description="What was found, for people.")
    count: int = Field(ge=0, description="How many samples, boxes or classes are concerned.")
    samples: list[str] = Field(default_factory=list, description="Ids of the samples concerned.")
    labels: list[str] = Field(default_factory=list, description="Ids of the boxes concerned, if box-level.")
    classes: list[str] = Field(default_factory=list, description="Classes concerned, if class-level.")
    view: str | None = Field(default=None, description="Saved view that opens these samples in the App.")


class ValidationReport(BaseModel):
    """The output of ``fabricdata validate --json``."""

    model_config = ConfigDict(extra="forbid")

    dataset: str
    samples: int = Field(ge=0)
    errors: int = Field(ge=0, description="Number of findings with severity 'error'.")
    warnings: int = Field(ge=0)
    findings: list[Finding]
