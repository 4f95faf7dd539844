"""The differencing check as the egress workflow runs it (host side; reads the database).

On submit (``record=True``) and in ``enclave egress check --project`` (``record=False``):

1. each reproduced table's populations (the replay's pseudonyms per cell) are mapped to
   the dataset's patient indices through the project's map (built from the source version
   with the project's pseudonym key and the enclave-wide key; both stay on the host);
2. its cells, margins and totals are compared with every stored output of the same dataset
   that is released or under review now, in any project (``compare``), plus the other
   files of the same submit; pairs become one ``differencing`` finding;
3. on submit the table is recorded in the store for later outputs to be compared with;
4. an output without fingerprints gets a ``differencing`` finding (``unfingerprinted``,
   review) listing the project's earlier releases, when it has any.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from enclave.disclosure.differencing.compare import Pair, compare
from enclave.disclosure.differencing.keys import enclave_key
from enclave.disclosure.differencing.policy import DifferencingPolicy
from enclave.disclosure.differencing.store import DifferencingStore, EntryInfo
from enclave.disclosure.differencing.table import Table, build_table
from enclave.disclosure.verdict import Verdict

RULE = "differencing"
CELL_KEY_RULE = "cell_key"


def patient_columns(session: Any, views: Mapping[str, Any]) -> dict[str, str]:
    """"dataset/table" -> the patient key column, for every table of the project's views
    that has one (as the data dictionary declares it and the view holds it)."""
    from enclave.catalog.service import get_version, version_dictionary

    found: dict[str, str] = {}
    for name, view in views.items():
        try:
            version = get_version(session, name, int(view.version)) if view.version is not None else None
        except Exception:  # noqa: BLE001 - an unknown version fingerprints nothing
            continue
        if version is None:
            continue
        for table, spec in version_dictionary(version).tables.items():
            column = spec.patient_column
            path = Path(view.path) / f"{table}.parquet"
            try:
                if column is not None and column in pl.read_parquet_schema(path):
                    found[f"{name}/{table}"] = column
            except (OSError, pl.exceptions.PolarsError):
                continue
    return found


def population_map(session: Any, settings: Any, store: DifferencingStore, slug: str, dataset: str,
                   version: int) -> pl.DataFrame:
    """pseudonym -> (idx, rkey) for every patient of ``dataset`` version ``version`` as project
    ``slug`` sees them; built once per project and version, then read from the store."""
    cached = store.load_map(dataset, slug, version)
    if cached is not None:
        return cached
    from enclave.catalog.pseudonym import PSEUDONYM_HEX, project_key
    from enclave.catalog.service import get_version, version_dictionary

    import hmac

    row = get_version(session, dataset, version)
    sources: list[pl.Series] = []
    for table, spec in version_dictionary(row).tables.items():
        column = spec.patient_column
        path = Path(row.storage_path) / f"{table}.parquet"
        if column is not None and path.exists():
            sources.append(pl.scan_parquet(path).select(pl.col(column).drop_nulls().cast(pl.String).unique())
                           .collect()[column].rename("source"))
    values = pl.concat(sources).unique().to_list() if sources else []
    keyed = hmac.new(project_key(settings.keys_dir, slug), b"patient\x1f", "sha256")
    pseudonyms = []
    for value in values:
        mac = keyed.copy()
        mac.update(value.encode())
        pseudonyms.append(mac.hexdigest()[:PSEUDONYM_HEX])
    indexed = store.index_patients(dataset, enclave_key(settings.keys_dir), values)
    frame = (pl.DataFrame({"source": values, "pseudonym": pseudonyms}, schema={"source": pl.String, "pseudonym": pl.String})
             .join(indexed, on="source").select("pseudonym", "idx", "rkey"))
    store.save_map(dataset, slug, version, frame)
    return frame


def members_of(populations: list[list[str] | None], mapping: pl.DataFrame) -> tuple[list[np.ndarray | None], list[np.ndarray | None]]:
    """Per cell: the sorted patient indices and their record keys (None for margins)."""
    lengths = [len(p) if p is not None else 0 for p in populations]
    long = pl.DataFrame({"cell": np.repeat(np.arange(len(populations), dtype=np.uint32), lengths),
                         "pseudonym": [x for p in populations if p is not None for x in p]},
                        schema={"cell": pl.UInt32, "pseudonym": pl.String})
    mapped = long.join(mapping, on="pseudonym").unique(["cell", "idx"]).sort("cell", "idx")
    idx: list[np.ndarray | None] = [None if p is None else np.empty(0, dtype=np.uint32) for p in populations]
    rkeys: list[np.ndarray | None] = [None if p is None else np.empty(0, dtype=np.uint8) for p in populations]
    for (cell,), part in mapped.group_by(["cell"], maintain_order=True):
        idx[int(cell)] = part["idx"].to_numpy()
        rkeys[int(cell)] = part["rkey"].to_numpy()
    return idx, rkeys


@dataclass(frozen=True)
class Output:
    """One file being checked: its name, bytes and their sha256, and its evidence outcome."""

    relpath: str
    sha256: str
    outcome: Any | None  # enclave.egress.replay.EvidenceOutcome
    data: bytes = b""


@dataclass(frozen=True)
class Fingerprinted:
    """An output's populations: the table of cells, its base dataset and version, and per
    evidence cell the patients' indices and record keys (None for margins)."""

    table: Table
    dataset: str
    version: int
    idx: list[np.ndarray | None]
    rkeys: list[np.ndarray | None]


def fingerprint(session: Any, settings: Any, store: DifferencingStore, slug: str, output: Output,
                views: Mapping[str, Any]) -> Fingerprinted | None:
    """The output's populations; None when the replay named no patients."""
    outcome = output.outcome
    if outcome is None or outcome.evidence is None or outcome.populations is None:
        return None
    query = outcome.evidence.query or {}
    dataset = query.get("dataset")
    view = views.get(dataset) if isinstance(dataset, str) else None
    if view is None or view.version is None:
        return None
    mapping = population_map(session, settings, store, slug, dataset, int(view.version))
    idx, rkeys = members_of(outcome.populations, mapping)
    return Fingerprinted(build_table(outcome.evidence.cells, idx), dataset, int(view.version), idx, rkeys)


@dataclass
class Outcome:
    """Per relpath: the findings to add, and the perturbed bytes of tables given cell-key noise."""

    findings: dict[str, list[dict[str, Any]]]
    perturbed: dict[str, bytes]


def _cell_key(policy: DifferencingPolicy, project: Any, output: Output, made: Fingerprinted | None,
              disclosure: Any) -> tuple[dict[str, Any] | None, bytes | None]:
    """The cell-key finding and perturbed bytes of one output (nothing when the method is off)."""
    from enclave.disclosure.differencing.perturb import CannotPerturb, perturb_counts
    from enclave.safe.replay import SEPARATORS

    datasets = [made.dataset] if made is not None else []
    if policy.ptable is None or not policy.cell_key.applies(getattr(project, "tier", None), datasets):
        return None, None
    if made is None:
        return ({"rule": CELL_KEY_RULE, "status": str(Verdict.REVIEW), "locations": [],
                 "message": "the cell-key method applies to this project, but this output was not reproduced by the "
                            "enclave, so it carries no noise: save tables with enclave.safe from a query, or check by hand"},
                None)
    evidence = output.outcome.evidence
    separator = SEPARATORS.get(Path(output.relpath).suffix.lower(), ",")
    rounding = disclosure.rounding.base if disclosure.rounding.required else None
    try:
        done = perturb_counts(output.data, separator, evidence.analysis, evidence.cells, made.idx, made.rkeys,
                              policy.ptable, rounding)
    except CannotPerturb as exc:
        return ({"rule": CELL_KEY_RULE, "status": str(Verdict.FAIL), "locations": [],
                 "message": f"the cell-key method applies to this project but cannot be applied here ({exc}): "
                            "make it a count table of enclave.safe.crosstab"}, None)
    made.table.perturbed = True
    return ({"rule": CELL_KEY_RULE, "status": str(Verdict.PASS),
             "locations": done.data.decode("utf-8").splitlines(),
             "message": f"published with cell-key noise ({policy.ptable.name}): {done.changed} of {done.shown} shown "
                        "counts changed. Reviewers see, and the release carries, this table"}, done.data)


def live_entries(session: Any, store: DifferencingStore, dataset: str) -> list[EntryInfo]:
    """Stored outputs of ``dataset`` whose file is, with the same bytes, in a request that
    is under review or released now."""
    from sqlalchemy import select

    from enclave.db.models import EgressFile, EgressRequest
    from enclave.enums import EgressStatus

    # Outputs other outputs are compared with: whatever may still leave, or has left.
    live_states = {EgressStatus.SUBMITTED, EgressStatus.IN_REVIEW, EgressStatus.APPROVED, EgressStatus.RELEASED}
    entries = [e for e in store.entries(dataset) if e.request_id is not None]
    if not entries:
        return []
    rows = session.execute(
        select(EgressFile.request_id, EgressFile.relpath, EgressFile.sha256, EgressRequest.status)
        .join(EgressRequest, EgressRequest.id == EgressFile.request_id)
        .where(EgressFile.request_id.in_({e.request_id for e in entries}))
    ).all()
    live = {(r, p, s) for r, p, s, status in rows if status in live_states}
    return [e for e in entries if (e.request_id, e.relpath, e.sha256) in live]


def _describe_pairs(pairs: list[Pair], policy: DifferencingPolicy, threshold: int) -> dict[str, Any]:
    earlier = sorted({p.earlier.describe() for p in pairs})
    first = pairs[0]
    message = (f"{len(pairs)} cell(s) differ from cells of earlier outputs by fewer than {threshold} people, so "
               f"subtracting the published counts reveals a small group: e.g. cell {first.cell} (n={first.n}) and "
               f"cell {first.earlier_cell} (n={first.earlier_n}) of {first.earlier.describe()} differ by "
               f"{first.difference} ({first.only_new} only here, {first.only_earlier} only there). Earlier outputs: "
               f"{', '.join(earlier[:policy.max_listed])}. Coarsen or drop these cells, or align the table with the earlier one")
    locations = [f"{p.cell} (n={p.n}) vs {p.earlier_cell} (n={p.earlier_n}) of {p.earlier.describe()}: "
                 f"difference {p.difference}" for p in pairs[:policy.max_listed]]
    if len(pairs) > policy.max_listed:
        locations.append(f"... and {len(pairs) - policy.max_listed} more")
    return {"rule": RULE, "status": str(policy.status), "message": message, "locations": locations,
            "pairs": [{"cell": p.cell, "n": p.n, "earlier": {"project": p.earlier.project, "request": p.earlier.request_id,
                                                             "file": p.earlier.relpath},
                       "earlier_cell": p.earlier_cell, "earlier_n": p.earlier_n, "difference": p.difference,
                       "only_here": p.only_new, "only_earlier": p.only_earlier} for p in pairs[:policy.max_listed]]}


def earlier_releases(session: Any, project: Any, exclude_request: int | None, limit: int) -> list[str]:
    """The project's released outputs, newest first, as 'request N: outbox/FILE'."""
    from sqlalchemy import select

    from enclave.db.models import EgressFile, EgressRequest
    from enclave.enums import EgressStatus

    rows = session.execute(
        select(EgressRequest.id, EgressFile.relpath).join(EgressFile, EgressFile.request_id == EgressRequest.id)
        .where(EgressRequest.project_id == project.id, EgressRequest.status == EgressStatus.RELEASED)
        .order_by(EgressRequest.id.desc(), EgressFile.relpath)
    ).all()
    return [f"request {rid}: outbox/{path}" for rid, path in rows if rid != exclude_request][:limit + 1]


def differencing_findings(session: Any, settings: Any, policy: DifferencingPolicy, disclosure: Any,
                          project: Any, outputs: list[Output], views: Mapping[str, Any],
                          request_id: int | None, record: bool) -> Outcome:
    """The ``differencing`` (and ``cell_key``) findings of the outputs, and the perturbed
    bytes of each table the cell-key method applies to."""
    store = DifferencingStore.of_home(settings.home)
    threshold = policy.threshold or disclosure.threshold
    made_of: dict[str, Fingerprinted] = {}
    result = Outcome({}, {})
    for output in outputs:
        made = fingerprint(session, settings, store, project.slug, output, views)
        if made is not None:
            made_of[output.relpath] = made
        note, data = _cell_key(policy, project, output, made, disclosure)
        if note is not None:
            result.findings.setdefault(output.relpath, []).append(note)
        if data is not None:
            result.perturbed[output.relpath] = data
    tables = {p: (m.table, m.dataset, m.version) for p, m in made_of.items()}
    infos: dict[str, EntryInfo] = {}
    for output in outputs:
        if output.relpath in tables:
            table, dataset, version = tables[output.relpath]
            entry = (DifferencingStore.entry_id(project.slug, request_id, output.relpath) if request_id is not None
                     else f"check-{output.sha256[:16]}")
            infos[output.relpath] = EntryInfo(entry, dataset, project.slug, request_id, output.relpath, output.sha256,
                                              version, table.perturbed)
            if record and request_id is not None:
                store.record(infos[output.relpath], table)
    for output in outputs:
        if output.relpath not in tables:
            released = earlier_releases(session, project, request_id, policy.max_listed)
            if released:
                shown = released[:policy.max_listed] + (["..."] if len(released) > policy.max_listed else [])
                result.findings.setdefault(output.relpath, []).append({
                    "rule": RULE, "status": str(policy.unfingerprinted), "locations": shown,
                    "message": "the enclave could not record who is in this output's cells (no reproduced evidence), "
                               "so it cannot be compared with earlier outputs automatically: compare it by hand with "
                               f"the project's releases ({'; '.join(shown)}) for cells that differ by a few people"})
            continue
        table, dataset, _ = tables[output.relpath]
        earlier = [e for e in live_entries(session, store, dataset)
                   if not (e.request_id == request_id and request_id is not None)]
        if record and request_id is not None:  # the other files of this submit count too
            earlier += [infos[p] for p in tables if p != output.relpath and tables[p][1] == dataset]
        pairs, _ = compare(table, earlier, store, threshold)
        if pairs:
            result.findings.setdefault(output.relpath, []).append(_describe_pairs(pairs, policy, threshold))
    return result


def with_findings(results: dict[str, dict[str, Any]], findings: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Check results (relpath -> {status, findings, ...}) with these findings added."""
    from enclave.disclosure.verdict import worst

    out = {}
    for relpath, result in results.items():
        extra = findings.get(relpath, [])
        if not extra:
            out[relpath] = result
            continue
        status = worst([Verdict(result["status"])] + [Verdict(f["status"]) for f in extra])
        out[relpath] = {**result, "status": str(status), "findings": [*result.get("findings", []), *extra]}
    return out
