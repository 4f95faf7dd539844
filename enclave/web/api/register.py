"""The public transparency register (entries, and the HDR UK Data Use Register feed in
JSON and CSV) and the admin dashboard's numbers."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from enclave.db.session import unit_of_work
from enclave.enums import ProjectStatus
from enclave.register import feed
from enclave.register import service as register_service
from enclave.register.policy import load_register_policy
from enclave.register.schemas import RegisterAboutOut, RegisterEntryOut
from enclave.web import readmodels
from enclave.web.api.me import ERRORS
from enclave.web.auth import Identity
from enclave.web.context import acting, check_console, signed_in, web
from enclave.web.schemas import DashboardOut

router = APIRouter(tags=["register"])

SEARCH = Query(None, max_length=1000, description="Words that must all appear in a project's title, summaries, "
                                                   "purpose, organisations or datasets")
STATUS = Query(None, description="Only projects in this status (approved, active, suspended or closed)")
FEED_ERRORS = {400: {"description": "The search is too long or names a status the register does not list"}}


def _entries(request: Request, q: str | None, status: ProjectStatus | None) -> list[RegisterEntryOut]:
    with unit_of_work(web(request).settings) as session:
        return register_service.search_register(session, q, status)


@router.get("/register", response_model=list[RegisterEntryOut], responses=FEED_ERRORS)
def public_register(request: Request, q: str | None = SEARCH,
                    status: ProjectStatus | None = STATUS) -> list[RegisterEntryOut]:
    """Approved, active, suspended and finished projects, for anyone (no sign-in). Nothing
    about the people on a project is published."""
    return _entries(request, q, status)


@router.get("/register/about", response_model=RegisterAboutOut)
def register_about(request: Request) -> RegisterAboutOut:
    """Who publishes the register, its contact, and how to opt out (no sign-in)."""
    return register_service.about(load_register_policy(web(request).settings.policies_dir))


@router.get("/register/data-use.json", response_model=list[feed.DataUseOut], responses=FEED_ERRORS)
def data_use_json(request: Request, q: str | None = SEARCH,
                  status: ProjectStatus | None = STATUS) -> list[feed.DataUseOut]:
    """The register with the fields of the HDR UK Data Use Register (no sign-in)."""
    policy = load_register_policy(web(request).settings.policies_dir)
    return [feed.data_use(e, policy) for e in _entries(request, q, status)]


@router.get("/register/data-use.csv", response_class=Response, responses={
    200: {"description": "The HDR UK Data Use Register as CSV: the template's column titles, one row per project, "
                         "lists joined by '; '",
          "content": {"text/csv": {"schema": {"type": "string"}}}}, **FEED_ERRORS})
def data_use_csv(request: Request, q: str | None = SEARCH, status: ProjectStatus | None = STATUS) -> Response:
    """The register as CSV with the HDR UK Data Use Register's column titles (no sign-in)."""
    policy = load_register_policy(web(request).settings.policies_dir)
    body = feed.to_csv([feed.data_use(e, policy) for e in _entries(request, q, status)])
    return Response(body, media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="data-use-register.csv"'})


@router.get("/register/{slug}", response_model=RegisterEntryOut,
            responses={404: {"description": "No such project on the register"}})
def register_entry(request: Request, slug: str) -> RegisterEntryOut:
    """One project on the register (no sign-in); unpublished projects are not found."""
    with unit_of_work(web(request).settings) as session:
        return register_service.get_entry(session, slug)


@router.get("/dashboard", response_model=DashboardOut, responses=ERRORS)
async def dashboard(request: Request, ident: Identity = Depends(signed_in)) -> DashboardOut:
    """Running servers, requests by state, decisions and releases by week, grants near expiry (admins)."""
    check_console(ident, "admin")
    running = await web(request).auth.running_servers()
    with acting(request, ident) as (session, actor):
        return readmodels.dashboard(session, actor, running)
