"""FHIR bulk-export NDJSON flattened into tables.

A bulk export is a directory of NDJSON files, one resource per line. Five resource types
become five tables (``patient``, ``encounter``, ``condition``, ``observation``,
``medication_request``) whose columns are declared in ``fhir_dictionary.yaml`` next to this
module. Values are flattened to text (dates normalised to UTC) and staged as Parquet with
the line each row came from, so that validation can name ``Patient.ndjson line 17``.
Any other resource type, a line that is not JSON, or an over-long line is a problem: the
export is refused rather than partly ingested.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from rich.progress import Progress

from enclave.catalog.dictionary import DataDictionary, load_dictionary
from enclave.catalog.readers import ROW, WHERE
from enclave.catalog.report import Problem, ValidationReport

DICTIONARY_PATH = Path(__file__).with_name("fhir_dictionary.yaml")
DEFAULT_MAX_LINE_BYTES = 8 * 1024 * 1024
_BATCH = 50_000
NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"

Resource = dict[str, Any]


def builtin_dictionary() -> DataDictionary:
    """The dictionary of the flattened tables (an admin may pass their own, same columns)."""
    return load_dictionary(DICTIONARY_PATH)


def _ref(value: Any) -> str | None:
    """"Patient/123" or "urn:uuid:123" -> "123"."""
    if not isinstance(value, dict) or not isinstance(value.get("reference"), str):
        return None
    return value["reference"].rsplit("/", 1)[-1].removeprefix("urn:uuid:")


def _coding(concept: Any) -> dict[str, Any]:
    if isinstance(concept, dict):
        codings = concept.get("coding") or []
        if codings and isinstance(codings[0], dict):
            first = dict(codings[0])
            first.setdefault("display", concept.get("text"))
            return first
        if concept.get("text"):
            return {"display": concept["text"]}
    return {}


def _first(items: Any) -> Any:
    return items[0] if isinstance(items, list) and items else None


def _when(value: Any) -> str | None:
    """A FHIR date/dateTime/instant as naive UTC text; unparsable text is kept as is
    so that validation reports it."""
    if value is None:
        return None
    text = str(value)
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        return text
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
    return parsed.isoformat(sep=" ")


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _patient(r: Resource) -> dict[str, str | None]:
    idents = r.get("identifier") or []
    nhs = next((i.get("value") for i in idents if isinstance(i, dict) and i.get("system") == NHS_NUMBER_SYSTEM), None)
    name = _first(r.get("name")) or {}
    address = _first(r.get("address")) or {}
    postal = address.get("postalCode") if isinstance(address, dict) else None
    return {
        "patient_id": _text(r.get("id")),
        "nhs_number": _text(nhs),
        "family_name": _text(name.get("family")) if isinstance(name, dict) else None,
        "given_name": _text(_first(name.get("given"))) if isinstance(name, dict) else None,
        "gender": _text(r.get("gender")),
        "birth_date": _text(r.get("birthDate")),
        "deceased_datetime": _when(r.get("deceasedDateTime")),
        "postal_code": _text(postal),
        "postcode_district": postal.split()[0].upper() if isinstance(postal, str) and postal.split() else None,
    }


def _encounter(r: Resource) -> dict[str, str | None]:
    klass = r.get("class")
    klass = _coding(_first(klass)) if isinstance(klass, list) else (klass or {})  # R5 list / R4 Coding
    period = r.get("period") or {}
    return {
        "encounter_id": _text(r.get("id")),
        "patient_id": _ref(r.get("subject")),
        "status": _text(r.get("status")),
        "class_code": _text(klass.get("code")),
        "type_code": _text(_coding(_first(r.get("type"))).get("code")),
        "period_start": _when(period.get("start")),
        "period_end": _when(period.get("end")),
    }


def _condition(r: Resource) -> dict[str, str | None]:
    code = _coding(r.get("code"))
    return {
        "condition_id": _text(r.get("id")),
        "patient_id": _ref(r.get("subject")),
        "encounter_id": _ref(r.get("encounter")),
        "clinical_status": _text(_coding(r.get("clinicalStatus")).get("code")),
        "code_system": _text(code.get("system")),
        "code": _text(code.get("code")),
        "display": _text(code.get("display")),
        "onset_datetime": _when(r.get("onsetDateTime")),
        "recorded_date": _when(r.get("recordedDate")),
    }


def _observation(r: Resource) -> dict[str, str | None]:
    code = _coding(r.get("code"))
    quantity = r.get("valueQuantity") or {}
    text = r.get("valueString")
    if text is None and r.get("valueCodeableConcept") is not None:
        text = _coding(r.get("valueCodeableConcept")).get("display")
    return {
        "observation_id": _text(r.get("id")),
        "patient_id": _ref(r.get("subject")),
        "encounter_id": _ref(r.get("encounter")),
        "status": _text(r.get("status")),
        "category": _text(_coding(_first(r.get("category"))).get("code")),
        "code_system": _text(code.get("system")),
        "code": _text(code.get("code")),
        "display": _text(code.get("display")),
        "effective_datetime": _when(r.get("effectiveDateTime")),
        "value": _text(quantity.get("value")),
        "unit": _text(quantity.get("unit")),
        "value_text": _text(text),
    }


def _medication_request(r: Resource) -> dict[str, str | None]:
    med = r.get("medicationCodeableConcept")
    if med is None and isinstance(r.get("medication"), dict):  # R5: CodeableReference
        med = r["medication"].get("concept")
    code = _coding(med)
    dosage = _first(r.get("dosageInstruction")) or {}
    return {
        "medication_request_id": _text(r.get("id")),
        "patient_id": _ref(r.get("subject")),
        "encounter_id": _ref(r.get("encounter")),
        "status": _text(r.get("status")),
        "intent": _text(r.get("intent")),
        "medication_system": _text(code.get("system")),
        "medication_code": _text(code.get("code")),
        "medication_display": _text(code.get("display")),
        "authored_on": _when(r.get("authoredOn")),
        "dosage_text": _text(dosage.get("text")) if isinstance(dosage, dict) else None,
    }


FLATTENERS: dict[str, tuple[str, Callable[[Resource], dict[str, str | None]]]] = {
    "Patient": ("patient", _patient),
    "Encounter": ("encounter", _encounter),
    "Condition": ("condition", _condition),
    "Observation": ("observation", _observation),
    "MedicationRequest": ("medication_request", _medication_request),
}


def _lines(path: Path, max_bytes: int) -> Iterator[tuple[int, bytes | None, int]]:
    """(line number, line or None if over-long, bytes consumed), never holding a huge line."""
    with open(path, "rb") as fh:
        number = 0
        while True:
            line = fh.readline(max_bytes + 1)
            if not line:
                return
            number += 1
            if len(line) > max_bytes:
                consumed = len(line)
                while not line.endswith(b"\n"):
                    line = fh.readline(1024 * 1024)
                    if not line:
                        break
                    consumed += len(line)
                yield number, None, consumed
            else:
                yield number, line, len(line)


class _TableWriter:
    """Buffers flattened rows of one table and streams them to a text Parquet file."""

    def __init__(self, path: Path, columns: list[str]) -> None:
        self.path = path
        self.columns = columns
        self.schema = pa.schema([(ROW, pa.int64()), (WHERE, pa.string())] + [(c, pa.string()) for c in columns])
        self.writer = pq.ParquetWriter(path, self.schema)
        self.buffer: list[dict[str, Any]] = []
        self.rows = 0

    def add(self, where: str, values: dict[str, str | None]) -> None:
        self.rows += 1
        self.buffer.append({ROW: self.rows, WHERE: where, **values})
        if len(self.buffer) >= _BATCH:
            self.flush()

    def flush(self) -> None:
        if self.buffer:
            self.writer.write_table(pa.Table.from_pylist(self.buffer, schema=self.schema))
            self.buffer = []

    def close(self) -> None:
        self.flush()
        self.writer.close()


def flatten_export(
    source: Path,
    dictionary: DataDictionary,
    workdir: Path,
    report: ValidationReport,
    *,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    progress: Progress | None = None,
) -> dict[str, Path]:
    """Flatten every NDJSON file of ``source`` into one text Parquet per table in ``workdir``.

    Problems (bad JSON, unknown types, over-long lines, undeclared tables) go to ``report``.
    """
    files = sorted(source.glob("*.ndjson")) if source.is_dir() else [source]
    writers: dict[str, _TableWriter] = {}
    for table in dictionary.tables:
        if table not in {t for t, _ in FLATTENERS.values()}:
            report.add(Problem(table, "dictionary", None, "not a table that FHIR flattening produces"))
    for table, spec in dictionary.tables.items():
        writers[table] = _TableWriter(workdir / f"{table}.text.parquet", list(spec.columns))
    task = progress.add_task("flattening FHIR", total=sum(f.stat().st_size for f in files)) if progress else None
    try:
        for path in files:
            for number, line, consumed in _lines(path, max_line_bytes):
                if progress is not None and task is not None:
                    progress.advance(task, consumed)
                _flatten_line(path.name, number, line, max_line_bytes, writers, report)
    finally:
        for w in writers.values():
            w.close()
    return {t: w.path for t, w in writers.items()}


def _flatten_line(
    name: str, number: int, line: bytes | None, max_bytes: int, writers: dict[str, _TableWriter], report: ValidationReport
) -> None:
    where = f"{name} line {number}"
    if line is None:
        report.add(Problem("fhir", where, None, f"line longer than {max_bytes} bytes"))
        return
    if not line.strip():
        return
    try:
        resource = json.loads(line)
    except UnicodeDecodeError:
        report.add(Problem("fhir", where, None, "not valid UTF-8"))
        return
    except json.JSONDecodeError as exc:
        hint = " (the file looks truncated)" if not line.endswith(b"\n") else ""
        report.add(Problem("fhir", where, None, f"not valid JSON: {exc.msg}{hint}"))
        return
    kind = resource.get("resourceType") if isinstance(resource, dict) else None
    if kind not in FLATTENERS:
        report.add(Problem("fhir", where, None, f"resource type {kind!r} is not one this enclave ingests"))
        return
    table, flatten = FLATTENERS[kind]
    writer = writers.get(table)
    if writer is None:
        report.add(Problem(table, where, None, f"the dictionary declares no table {table!r} for {kind}"))
        return
    values = flatten(resource)
    unknown = [c for c in writer.columns if c not in values]
    if unknown:
        report.add(Problem(table, where, unknown[0], "the dictionary declares a column FHIR flattening does not produce"))
        return
    writer.add(where, {c: values[c] for c in writer.columns})
