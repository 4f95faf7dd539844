"""The public transparency register and the admin dashboard's numbers."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from enclave.db.session import unit_of_work
from enclave.web import readmodels
from enclave.web.api.me import ERRORS
from enclave.web.auth import Identity
from enclave.web.context import acting, check_console, signed_in, web
from enclave.web.schemas import DashboardOut, RegisterEntryOut

router = APIRouter(tags=["register"])


@router.get("/register", response_model=list[RegisterEntryOut])
def public_register(request: Request) -> list[RegisterEntryOut]:
    """Approved and active projects, for anyone (no sign-in)."""
    with unit_of_work(web(request).settings) as session:
        return readmodels.register(session)


@router.get("/dashboard", response_model=DashboardOut, responses=ERRORS)
async def dashboard(request: Request, ident: Identity = Depends(signed_in)) -> DashboardOut:
    """Running servers, requests by state, decisions and releases by week, grants near expiry (admins)."""
    check_console(ident, "admin")
    running = await web(request).auth.running_servers()
    with acting(request, ident) as (session, actor):
        return readmodels.dashboard(session, actor, running)
