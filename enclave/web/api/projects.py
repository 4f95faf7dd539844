"""Projects: list, apply (Five Safes), show, lifecycle moves and members."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Request, Response

from enclave.applications import ProjectApplication, apply_for_project
from enclave.projects import retention, service
from enclave.web import readmodels
from enclave.web.api.me import ERRORS
from enclave.web.auth import Identity
from enclave.web.context import acting, check_console, signed_in, tiers, web
from enclave.web.schemas import MemberIn, ProjectDetailOut, ProjectOut, TransitionIn

router = APIRouter(prefix="/projects", tags=["projects"])

SLUG = Path(min_length=1, max_length=40, description="The project's slug")
CHANGE_ERRORS = {**ERRORS, 400: {"description": "Invalid input"}, 404: {"description": "No such project or user"},
                 409: {"description": "Not possible in the project's current state"}}


@router.get("", response_model=list[ProjectOut], responses=ERRORS)
def list_projects(request: Request, ident: Identity = Depends(signed_in)) -> list[ProjectOut]:
    """Researchers see their own projects; admins and reviewers see all."""
    with acting(request, ident) as (session, actor):
        return [ProjectOut.of(p) for p in service.list_projects(session, actor)]


@router.post("", response_model=ProjectOut, status_code=201, responses=CHANGE_ERRORS)
def apply(form: ProjectApplication, request: Request, ident: Identity = Depends(signed_in)) -> ProjectOut:
    """Apply for a new project, led by the caller; it waits for an admin's decision."""
    policy = tiers(request)
    with acting(request, ident) as (session, actor):
        return ProjectOut.of(apply_for_project(session, actor, policy, form))


@router.get("/queue", response_model=list[ProjectOut], responses=ERRORS)
def application_queue(request: Request, ident: Identity = Depends(signed_in)) -> list[ProjectOut]:
    """Proposed projects waiting for a decision, oldest first (admins)."""
    check_console(ident, "admin")
    with acting(request, ident) as (session, actor):
        return readmodels.application_queue(session, actor)


@router.get("/{slug}", response_model=ProjectDetailOut, responses={**ERRORS, 404: {"description": "No such project"}})
def get_project(request: Request, slug: str = SLUG, ident: Identity = Depends(signed_in)) -> ProjectDetailOut:
    """One project with its members, grants and application (members, admins, reviewers)."""
    with acting(request, ident) as (session, actor):
        return readmodels.project_detail(session, actor, slug, web(request).hub_prefix)


@router.post("/{slug}/transitions", response_model=ProjectOut, responses=CHANGE_ERRORS)
def transition(body: TransitionIn, request: Request, slug: str = SLUG,
               ident: Identity = Depends(signed_in)) -> ProjectOut:
    """Approve, reject, activate, suspend or close a project (admins; reasons where required)."""
    check_console(ident, "admin")
    with acting(request, ident) as (session, actor):
        return ProjectOut.of(retention.move_project(session, actor, web(request).settings, slug, body.action, body.reason))


@router.post("/{slug}/members", response_model=ProjectOut, status_code=201, responses=CHANGE_ERRORS)
def add_member(body: MemberIn, request: Request, slug: str = SLUG,
               ident: Identity = Depends(signed_in)) -> ProjectOut:
    """Add a researcher with current training to a project (admins)."""
    check_console(ident, "admin")
    with acting(request, ident) as (session, actor):
        service.add_member(session, actor, slug, body.user)
        return ProjectOut.of(service.get_project(session, slug))


@router.delete("/{slug}/members/{user}", status_code=204, responses=CHANGE_ERRORS)
def remove_member(request: Request, slug: str = SLUG, user: str = Path(min_length=1, max_length=64),
                  ident: Identity = Depends(signed_in)) -> Response:
    """Remove a member from a project (admins; the PI stays)."""
    check_console(ident, "admin")
    with acting(request, ident) as (session, actor):
        service.remove_member(session, actor, slug, user)
    return Response(status_code=204)
