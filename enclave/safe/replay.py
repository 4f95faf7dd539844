"""The container side of evidence replay: re-run a table's recorded query, print the result.

Run by the enclave as ``python -m enclave.safe.replay`` in a fresh job container that
mounts only the project's views (read-only, at /data) and has no network. It reads one
JSON object on standard input (:class:`ReplayInput`: the evidence sidecar as data and the
enclave's disclosure policy), re-runs the query and the table with this library, and writes
one JSON object on standard output (:class:`ReplayOutput`): the table's bytes as ``save``
writes them and every cell's figures. The host compares them with what was submitted.

Every failure, whatever its kind, becomes ``ok: false`` with a one-line ``error``: the host
then checks the file with no trust in its evidence.

When the host names the patient key column of the query's base table
(``patient_columns``), the output also lists, per cell of the grid, the contributing
patients as the project's pseudonyms (``populations``; margins are unions of their cells,
so they are left to the host). The host maps them to keyed hashes for the differencing
check and never passes them on; this container never sees any key.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, ValidationError

from enclave.disclosure.evidence import Evidence, EvidenceCell
from enclave.disclosure.policy import DisclosurePolicy
from enclave.disclosure.verdict import Verdict
from enclave.errors import EnclaveError
from enclave.safe.query import CARRIED, parse_query

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
    # "dataset/table" -> the column holding the patient key (the project's pseudonym).
    patient_columns: dict[str, str] = {}


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
    # Per entry of ``cells``: the distinct pseudonyms of the patients contributing to it
    # (None for margins); None when the base table has no patient key.
    populations: list[list[str] | None] | None = None


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

        query = parse_query(evidence.query)
        carry = request.patient_columns.get(f"{query.dataset}/{query.table}")
        frame = query.lazy(root, carry=carry).collect()
        result = tabulate(evidence.analysis, frame, policy)
        populations = cell_populations(result, frame) if carry is not None else None
        return ReplayOutput(ok=True, table=result.render(sep).decode("utf-8"), cells=result.evidence_cells(),
                            status=result.status, findings=[f.to_dict() for f in result.findings],
                            populations=populations)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        return ReplayOutput(ok=False, error=f"the evidence is malformed ({key}: {first['msg'][:160]})")
    except EnclaveError as exc:
        return ReplayOutput(ok=False, error=str(exc).splitlines()[0][:300])
    except Exception as exc:  # noqa: BLE001 - researcher-controlled input: any failure is a refusal
        return ReplayOutput(ok=False, error=f"the query failed: {type(exc).__name__}: {str(exc).splitlines()[0][:240] if str(exc) else ''}")


def _label(values: tuple[Any, ...]) -> Any:
    return values[0] if len(values) == 1 else tuple(values)


def cell_populations(result: Any, frame: pl.DataFrame) -> list[list[str] | None]:
    """Per cell of ``result`` (a SafeResult of ``frame``, which carries the patient key as
    CARRIED), the distinct patients counted in it: rows dropped by the table (missing
    labels, missing values of a statistic) and rows without a patient key count nobody."""
    analysis = result.analysis
    index, columns, values = list(analysis["index"]), list(analysis["columns"]), analysis.get("values")
    labels = index + columns
    rows = frame.lazy().drop_nulls(labels + [CARRIED])
    if values is not None:
        rows = rows.filter(pl.col(values).is_not_null() & ~pl.col(values).cast(pl.Float64).is_nan())
    grouped = rows.group_by(labels).agg(pl.col(CARRIED).cast(pl.String).unique().sort()).collect()
    members: dict[Any, list[str]] = {}
    for record in grouped.iter_rows():
        key = record[:-1]
        label = (_label(key[: len(index)]), _label(key[len(index):])) if columns else _label(key)
        members[label] = record[-1]
    out: list[list[str] | None] = []
    for (row, column), margin in zip(result.cells, result.margin_flags):
        if margin:
            out.append(None)
        else:
            out.append(members.get((row, column) if columns else row, []))
    return out


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
