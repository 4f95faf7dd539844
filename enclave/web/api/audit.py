"""The audit log: filtered reads, CSV export and chain verification (admins)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from enclave.audit import read_events, verify_chain
from enclave.errors import InvalidInput
from enclave.permissions import check_admin
from enclave.web.api.me import ERRORS
from enclave.web.auth import Identity
from enclave.web.context import acting, check_console, signed_in
from enclave.web.schemas import AuditEventOut, ChainOut

router = APIRouter(prefix="/audit", tags=["audit"])

CSV_COLUMNS = ("seq", "at", "actor", "action", "project", "target", "details", "hash")


class AuditFilters:
    """The audit log's filters, shared by the JSON, CSV and page views."""

    def __init__(
        self,
        project: str | None = Query(None, max_length=40),
        user: str | None = Query(None, max_length=64),
        action: str | None = Query(None, max_length=64, description="Event name or its prefix, e.g. 'project.'"),
        since: str | None = Query(None, max_length=10, description="From this day (UTC, YYYY-MM-DD), inclusive"),
        until: str | None = Query(None, max_length=10, description="Up to this day (UTC, YYYY-MM-DD), inclusive"),
        limit: int | None = Query(None, ge=1, le=100_000),
    ) -> None:
        # Empty fields (as an HTML form sends them) mean "no filter".
        self.values = {"project": project or None, "user": user or None, "action": action or None,
                       "since": _day(since, "from"), "until": _day(until, "to"), "limit": limit}


def _day(value: str | None, name: str) -> dt.date | None:
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"the '{name}' date {value!r} is not a date: write it as YYYY-MM-DD") from None


_HEX_DIGEST = re.compile(r"^[0-9a-f]{40,128}$")


def _readable_value(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return value[:12] + "…" if _HEX_DIGEST.match(value) else value
    if isinstance(value, dict):
        # Keys of a nested record are names (tables, files), shown as they are.
        return "; ".join(f"{k}: {_readable_value(v)}" for k, v in sorted(value.items()) if v not in (None, "", [], {}))
    if isinstance(value, (list, tuple)):
        return ", ".join(_readable_value(v) for v in value if v not in (None, "", [], {}))
    return str(value)


def readable_details(details: dict[str, Any]) -> list[tuple[str, str]]:
    """An event's details as (label, text) pairs a person reads: words for keys, lists
    joined, nested records spelt out, digests shortened; empty values left out."""
    return [(str(key).replace("_", " ").capitalize(), _readable_value(value))
            for key, value in sorted(details.items()) if value not in (None, "", [], {})]


def read(request: Request, ident: Identity, filters: AuditFilters) -> list[AuditEventOut]:
    check_console(ident, "admin")
    with acting(request, ident) as (session, actor):
        return [AuditEventOut.of(e) for e in read_events(session, actor, **filters.values)]


def to_csv(events: list[AuditEventOut]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for e in events:
        row = [e.seq, e.at.isoformat(), e.actor, e.action, e.project or "", e.target or "",
               json.dumps(e.details, sort_keys=True), e.hash]
        # Cells starting with = + - @ would run as formulas in a spreadsheet.
        writer.writerow(["'" + c if isinstance(c, str) and c[:1] in "=+-@\t\r" else c for c in row])
    return out.getvalue()


@router.get("/events", response_model=list[AuditEventOut], responses=ERRORS)
def events(request: Request, filters: AuditFilters = Depends(), ident: Identity = Depends(signed_in)):
    """Audit events matching every filter, oldest first."""
    return read(request, ident, filters)


@router.get("/events.csv", responses={**ERRORS, 200: {"content": {"text/csv": {}}}})
def events_csv(request: Request, filters: AuditFilters = Depends(), ident: Identity = Depends(signed_in)) -> Response:
    """The same events as CSV, for a spreadsheet or an auditor."""
    return Response(to_csv(read(request, ident, filters)), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="enclave-audit.csv"'})


@router.get("/verify", response_model=ChainOut, responses=ERRORS)
def verify(request: Request, ident: Identity = Depends(signed_in)) -> ChainOut:
    """Walk the hash chain and report the first event that does not verify."""
    check_console(ident, "admin")
    with acting(request, ident) as (session, actor):
        check_admin(actor, "verify the audit log")
        report = verify_chain(session)
    return ChainOut(ok=report.ok, checked=report.checked, first_bad=report.first_bad, problem=report.problem)
