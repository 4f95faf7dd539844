"""The evidence sidecar: what the safe-statistics library knew when it built an output.

Saved beside the output as ``<name>.evidence.json``; it records, per cell, the count and the
dominance figures, the rules and policy applied, the dataset views read (version and
checksum), the query that produced the table (``enclave.safe.query``; None when the table
was built from a frame of unknown origin) and the sha256 of the output's bytes.

The researcher can write anything into a sidecar, so nothing in it is trusted as such: the
enclave re-runs the recorded query in a fresh container (``enclave.egress.replay``) and
hands the checker an :class:`Evidence` only when the table comes out the same. The sidecar
itself holds exact small counts, so it never leaves the enclave.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, ValidationError

from enclave.disclosure.rules import MISSING, NEGATIVES, TOP1, TOP2, TOPN, TOTAL, N
from enclave.disclosure.verdict import Verdict
from enclave.errors import InvalidInput

EVIDENCE_SUFFIX = ".evidence.json"
FORMAT = "enclave-sdc-evidence/1"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OutputRef(_Strict):
    file: str
    sha256: str
    bytes: int


class DatasetRef(_Strict):
    name: str
    version: str | None = None
    # The view's checksum (the ``sha256`` of /data/<name>/manifest.json) as the table was made.
    view_sha256: str | None = None


class EvidenceCell(_Strict):
    """One cell as the library computed it, before suppression."""

    row: list[Any]
    column: list[Any]
    margin: bool = False
    n: int | None = None
    total: float | None = None
    top1: float | None = None
    top2: float | None = None
    topn: float | None = None
    negatives: int = 0
    missing: int = 0
    nk_share: float | None = None
    p_ratio: float | None = None
    verdicts: dict[str, Verdict] = {}
    status: Verdict = Verdict.PASS
    suppressed: bool = False


class Evidence(_Strict):
    format: Literal["enclave-sdc-evidence/1"] = FORMAT
    output: OutputRef
    analysis: dict[str, Any]
    policy_version: str
    policy: dict[str, Any]
    rules: list[str]
    datasets: list[DatasetRef]
    status: Verdict
    findings: list[dict[str, Any]]
    cells: list[EvidenceCell]
    created: str
    library: str
    # The reproducible query (``enclave.safe.query.Query.record()``); None: not reproducible.
    query: dict[str, Any] | None = None


def sidecar_path(output: Path) -> Path:
    """Where the evidence of ``output`` lives."""
    return output.with_name(output.name + EVIDENCE_SUFFIX)


def is_sidecar(path: Path) -> bool:
    return path.name.endswith(EVIDENCE_SUFFIX)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_evidence(path: Path, evidence: Evidence) -> None:
    path.write_text(evidence.model_dump_json(indent=1), encoding="utf-8")


def read_evidence(path: Path) -> Evidence:
    """Parse a sidecar; raise InvalidInput (one line) when it is not valid evidence."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Evidence.model_validate(data)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInput(f"{path.name}: evidence cannot be read ({type(exc).__name__}); save the output again") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise InvalidInput(f"{path.name}: not valid evidence ({key}: {first['msg']}); save the output again") from None


def stats_of(evidence: Evidence) -> pl.DataFrame:
    """The cells' figures as the frame of statistics the rules read."""
    return pl.DataFrame(
        {
            N: [c.n for c in evidence.cells],
            TOTAL: [c.total for c in evidence.cells],
            TOP1: [c.top1 for c in evidence.cells],
            TOP2: [c.top2 for c in evidence.cells],
            TOPN: [c.topn for c in evidence.cells],
            NEGATIVES: [c.negatives for c in evidence.cells],
            MISSING: [c.missing for c in evidence.cells],
        },
        schema={N: pl.Int64, TOTAL: pl.Float64, TOP1: pl.Float64, TOP2: pl.Float64, TOPN: pl.Float64,
                NEGATIVES: pl.Int64, MISSING: pl.Int64},
    )
