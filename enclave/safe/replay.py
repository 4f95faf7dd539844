"""The container side of evidence replay: re-run a table's recorded query, print the result.

Run by the enclave as ``python -m enclave.safe.replay`` in a fresh job container that
mounts only the project's views (read-only, at /data) and has no network. It reads one
JSON object on standard input (:class:`ReplayInput`: the evidence sidecar as data and the
enclave's disclosure policy), re-runs the query and the table with this library, and writes
one JSON object on standard output (:class:`ReplayOutput`): the table's bytes as ``save``
writes them and every cell's figures. The host compares them with what was submitted.

Every failure, whatever its kind, becomes ``ok: false`` with a one-line ``error``: the host
then checks the file with no trust in its evidence.

The output is versioned and may gain fields: per cell, the contributing patients (as the
project's pseudonyms, for the host to map to keyed hashes) is the planned next one.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from enclave.disclosure.evidence import Evidence, EvidenceCell
from enclave.disclosure.policy import DisclosurePolicy
from enclave.disclosure.verdict import Verdict
from enclave.errors import EnclaveError
from enclave.safe.query import parse_query

INPUT_FORMAT = "enclave-replay-input/1"
OUTPUT_FORMAT = "enclave-replay/1"
MAX_INPUT_BYTES = 64 * 1024 * 1024
SEPARATORS = {".csv": ",", ".tsv": "\t"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReplayInput(_Strict):
    """What the host sends: the sidecar as submitted and the policy to apply."""

    format: Literal["enclave-replay-input/1"] = INPUT_FORMAT
    evidence: dict[str, Any]
    policy: dict[str, Any]


class ReplayOutput(_Strict):
    """What the container prints: the recomputed table and its cells, or why not."""

    format: Literal["enclave-replay/1"] = OUTPUT_FORMAT
    ok: bool
    error: str | None = None
    # The table exactly as SafeResult.save writes it (UTF-8 text).
    table: str | None = None
    cells: list[EvidenceCell] = []
    status: Verdict | None = None
    findings: list[dict[str, Any]] = []


def recompute(request: ReplayInput, root: Path) -> ReplayOutput:
    """Re-run the evidence's query over the views under ``root``; never raises."""
    try:
        evidence = Evidence.model_validate(request.evidence)
        policy = DisclosurePolicy.model_validate(request.policy)
        if evidence.query is None:
            return ReplayOutput(ok=False, error="the evidence records no query")
        sep = SEPARATORS.get(Path(evidence.output.file).suffix.lower())
        if sep is None:
            return ReplayOutput(ok=False, error="only .csv and .tsv tables are re-run")
        from enclave.safe.tables import tabulate

        frame = parse_query(evidence.query).lazy(root).collect()
        result = tabulate(evidence.analysis, frame, policy)
        return ReplayOutput(ok=True, table=result.render(sep).decode("utf-8"), cells=result.evidence_cells(),
                            status=result.status, findings=[f.to_dict() for f in result.findings])
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        return ReplayOutput(ok=False, error=f"the evidence is malformed ({key}: {first['msg'][:160]})")
    except EnclaveError as exc:
        return ReplayOutput(ok=False, error=str(exc).splitlines()[0][:300])
    except Exception as exc:  # noqa: BLE001 - researcher-controlled input: any failure is a refusal
        return ReplayOutput(ok=False, error=f"the query failed: {type(exc).__name__}: {str(exc).splitlines()[0][:240] if str(exc) else ''}")


def main() -> int:
    raw = sys.stdin.buffer.read(MAX_INPUT_BYTES + 1)
    if len(raw) > MAX_INPUT_BYTES:
        out = ReplayOutput(ok=False, error="the replay input is too large")
    else:
        try:
            request = ReplayInput.model_validate_json(raw)
        except ValidationError:
            out = ReplayOutput(ok=False, error="the replay input is not valid")
        else:
            out = recompute(request, Path("/data"))
    sys.stdout.write(out.model_dump_json())
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
