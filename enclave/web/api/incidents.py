"""Incidents and the egress meter's view (admins): list and clear incidents, bytes per server."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, Field

from enclave.config import Settings
from enclave.enums import IncidentStatus
from enclave.incidents import IncidentOut, clear_incident, list_incidents
from enclave.meter.client import meter_state
from enclave.permissions import check_admin
from enclave.web.api.me import ERRORS
from enclave.web.auth import Identity
from enclave.web.context import acting, check_console, signed_in, web

router = APIRouter(tags=["incidents"])


class ServerEgressOut(BaseModel):
    """What one server sent to browsers, as the meter counted it outside the container."""

    user: str
    server: str
    running: bool
    tripped: bool
    tier: str | None
    window_seconds: int
    max_bytes_per_window: int
    sent_window: int
    sent_hour: int
    sent_day: int
    received_day: int

    @property
    def window_share(self) -> float:
        return self.sent_window / self.max_bytes_per_window if self.max_bytes_per_window else 1.0


class EgressOut(BaseModel):
    """The meter's last saved state (it saves every few seconds); ``at`` None: no state."""

    at: dt.datetime | None
    servers: list[ServerEgressOut]


class ClearIn(BaseModel):
    note: str = Field(min_length=1, max_length=2000)


def egress_view(settings: Settings) -> EgressOut:
    """Bytes per server from the meter's state, busiest window first."""
    state: dict[str, Any] | None = meter_state(settings)
    if not state:
        return EgressOut(at=None, servers=[])
    servers = [ServerEgressOut.model_validate({k: row.get(k) for k in ServerEgressOut.model_fields})
               for row in state.get("servers", [])]
    servers.sort(key=lambda s: (not s.running, -s.window_share, s.user, s.server))
    return EgressOut(at=dt.datetime.fromtimestamp(float(state["at"]), dt.UTC), servers=servers)


@router.get("/incidents", response_model=list[IncidentOut], responses=ERRORS)
def incidents(request: Request, status: IncidentStatus | None = None, ident: Identity = Depends(signed_in)):
    """Incidents, newest first (admins); ``status`` open or cleared."""
    check_console(ident, "admin")
    with acting(request, ident) as (session, actor):
        return [IncidentOut.of(i) for i in list_incidents(session, actor, status=status)]


@router.post("/incidents/{incident_id}/clear", response_model=IncidentOut, responses=ERRORS)
def clear(request: Request, body: ClearIn, incident_id: int = Path(ge=1, le=2**31 - 1),
          ident: Identity = Depends(signed_in)):
    """Clear an open incident after review (admins, never about themselves); audited."""
    check_console(ident, "admin")
    with acting(request, ident) as (session, actor):
        return IncidentOut.of(clear_incident(session, actor, incident_id, body.note))


@router.get("/meter", response_model=EgressOut, responses=ERRORS)
def meter(request: Request, ident: Identity = Depends(signed_in)):
    """Bytes each server sent to browsers in its window, the last hour and day."""
    check_console(ident, "admin")
    with acting(request, ident) as (_session, actor):
        check_admin(actor, "read the egress meter")
    return egress_view(web(request).settings)
