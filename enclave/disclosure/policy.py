"""The disclosure policy: thresholds of the rules and limits of the output file checker.

Every default follows the published output-checking guidance (the SDC handbook used by UK
trusted research environments). ``policies/disclosure.yaml`` is the commented copy that
sites edit; :func:`load_disclosure_policy` reads it strictly.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from enclave.disclosure.verdict import Verdict
from enclave.policy import load_policy_file

POLICY_ENV = "ENCLAVE_DISCLOSURE_POLICY"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NKDominance(_Strict):
    """The n largest contributors to a cell may not make up k (a fraction) or more of it."""

    n: int = Field(2, ge=1, le=10)
    k: float = Field(0.9, gt=0.0, le=1.0)


class Rounding(_Strict):
    """Whether counts must be shown rounded, and to which base."""

    required: bool = False
    base: int = Field(5, ge=2, le=1000)


class CheckerLimits(_Strict):
    """What the output file checker lets through at all, before any rule runs."""

    allowed_types: tuple[str, ...] = ("csv", "tsv", "txt", "md", "json", "png", "jpeg", "ipynb")
    max_file_bytes: int = Field(256 * 1024 * 1024, ge=1)
    max_rows: int = Field(100_000, ge=1)
    # A table with at least this many rows, where rows look like one person each, is microdata.
    microdata_min_rows: int = Field(50, ge=2)
    # Runs of base64/hex this long inside text or notebook outputs are smuggled data.
    max_encoded_run: int = Field(256, ge=32)
    # Column names that mark counts; matched case-insensitively as whole words.
    count_column_words: tuple[str, ...] = (
        "n", "count", "counts", "freq", "frequency", "number", "num", "patients", "people",
        "persons", "cases", "events", "deaths", "admissions", "total", "size",
    )

    @model_validator(mode="after")
    def _known_types(self) -> CheckerLimits:
        unknown = sorted(set(self.allowed_types) - KNOWN_TYPES)
        if unknown:
            raise ValueError(f"unknown file type(s) {unknown}; choose from {sorted(KNOWN_TYPES)}")
        return self


KNOWN_TYPES = frozenset({"csv", "tsv", "txt", "md", "json", "png", "jpeg", "ipynb"})


class DisclosurePolicy(BaseModel):
    """Thresholds and limits for every disclosure rule; defaults follow the guidance."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str = "2026.1"
    threshold: int = Field(10, ge=1)
    zeros_disclosive: bool = True
    nk_dominance: NKDominance = NKDominance()
    p_percent: float = Field(0.1, ge=0.0, le=1.0)
    dof: int = Field(10, ge=1)
    # Dominance is undefined for cells holding negative or missing values.
    negative_values: Verdict = Verdict.REVIEW
    missing_values: Verdict = Verdict.REVIEW
    rounding: Rounding = Rounding()
    suppressed_markers: tuple[str, ...] = ("*", "c", "[c]", "x", "<10", "suppressed", "redacted", "-")
    checker: CheckerLimits = CheckerLimits()


def load_disclosure_policy(path: Path | str | None = None) -> DisclosurePolicy:
    """The policy at ``path``, else at ``$ENCLAVE_DISCLOSURE_POLICY``, else the defaults.

    Raises ``enclave.errors.PolicyError`` (one line) when the file is missing or invalid.
    """
    if path is None:
        path = os.environ.get(POLICY_ENV) or None
    if path is None:
        return DisclosurePolicy()
    return load_policy_file(Path(path), DisclosurePolicy)
