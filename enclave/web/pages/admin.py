"""The admin console: dashboard, application queue, projects and members, audit log."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from enclave.audit import read_events, verify_chain
from enclave.catalog import service as catalog
from enclave.clock import utcnow
from enclave.db.models import User
from enclave.enums import IncidentStatus
from enclave.errors import InvalidInput
from enclave.incidents import IncidentOut, clear_incident, enable_user, list_incidents
from enclave.permissions import check_admin
from enclave.projects import retention, service
from enclave.projects.lifecycle import ProjectAction
from enclave.users import list_users
from enclave.web import readmodels
from enclave.web.api.audit import AuditFilters, to_csv
from enclave.web.api.catalog import dataset_detail, dataset_out, grant_out
from enclave.web.api.incidents import egress_view
from enclave.web.auth import Identity
from enclave.web.context import acting, check_console, render, signed_in, web
from enclave.web.pages.forms import done_message, form_fields
from enclave.web.schemas import AuditEventOut

router = APIRouter(prefix="/admin")


def admin(ident: Identity = Depends(signed_in)) -> Identity:
    check_console(ident, "admin")
    return ident


@contextmanager
def acting_admin(request: Request, ident: Identity) -> Iterator[tuple[Session, User]]:
    """Every admin page needs the enclave's admin role too, not only the hub's."""
    with acting(request, ident) as (session, actor):
        check_admin(actor, "open the admin console")
        yield session, actor


@router.get("")
async def dashboard(request: Request, ident: Identity = Depends(admin)):
    running = await web(request).auth.running_servers()
    with acting_admin(request, ident) as (session, actor):
        board = readmodels.dashboard(session, actor, running)
        queue = readmodels.application_queue(session, actor)
        open_incidents = [IncidentOut.of(i) for i in list_incidents(session, actor, status=IncidentStatus.OPEN)]
    return render(request, "admin/dashboard.html", board=board, queue_size=len(queue),
                  egress=egress_view(web(request).settings), incidents=open_incidents)


@router.get("/incidents")
def incidents(request: Request, ident: Identity = Depends(admin)):
    with acting_admin(request, ident) as (session, actor):
        rows = [IncidentOut.of(i) for i in list_incidents(session, actor, limit=200)]
        disabled = [u for u in list_users(session) if u.disabled_at is not None]
        disabled_rows = [(u.name, u.disabled_reason or "") for u in disabled]
    return render(request, "admin/incidents.html", incidents=rows, disabled=disabled_rows,
                  egress=egress_view(web(request).settings), done=done_message(request))


@router.post("/incidents/{incident_id}/clear")
async def clear(request: Request, incident_id: int, ident: Identity = Depends(admin)):
    data = await form_fields(request)
    with acting_admin(request, ident) as (session, actor):
        clear_incident(session, actor, incident_id, data.get("note", ""))
    return RedirectResponse(f"{web(request).prefix}/admin/incidents?done=incident_cleared", status_code=303)


@router.post("/users/{name}/enable")
async def enable(request: Request, name: str, ident: Identity = Depends(admin)):
    data = await form_fields(request)
    with acting_admin(request, ident) as (session, actor):
        enable_user(session, actor, name, data.get("note", ""))
    return RedirectResponse(f"{web(request).prefix}/admin/incidents?done=user_enabled", status_code=303)


@router.get("/applications")
def applications(request: Request, ident: Identity = Depends(admin)):
    hub = web(request).hub_prefix
    with acting_admin(request, ident) as (session, actor):
        queue = [readmodels.project_detail(session, actor, p.slug, hub)
                 for p in readmodels.application_queue(session, actor)]
    return render(request, "admin/applications.html", queue=queue, done=done_message(request))


@router.get("/projects")
def projects(request: Request, ident: Identity = Depends(admin)):
    with acting_admin(request, ident) as (session, actor):
        rows = service.list_projects(session, actor)
        projects = [readmodels.project_detail(session, actor, p.slug) for p in rows]
    return render(request, "admin/projects.html", projects=projects, done=done_message(request))


@router.get("/projects/{slug}")
def project(request: Request, slug: str, ident: Identity = Depends(admin)):
    with acting_admin(request, ident) as (session, actor):
        detail = readmodels.project_detail(session, actor, slug)
        researchers = [u.name for u in list_users(session) if "researcher" in u.roles and u.name not in detail.members]
    return render(request, "admin/project.html", project=detail, researchers=researchers,
                  done=done_message(request))


@router.post("/projects/{slug}/transition")
async def transition(request: Request, slug: str, ident: Identity = Depends(admin)):
    data = await form_fields(request)
    try:
        action = ProjectAction(data.get("action", ""))
    except ValueError:
        raise InvalidInput("choose one of approve, reject, activate, suspend or close") from None
    with acting_admin(request, ident) as (session, actor):
        retention.move_project(session, actor, web(request).settings, slug, action, data.get("reason") or None)
    back = "applications" if data.get("back") == "applications" else f"projects/{slug}"
    return RedirectResponse(f"{web(request).prefix}/admin/{back}?done={action.value}", status_code=303)


@router.post("/projects/{slug}/members")
async def add_member(request: Request, slug: str, ident: Identity = Depends(admin)):
    data = await form_fields(request)
    with acting_admin(request, ident) as (session, actor):
        service.add_member(session, actor, slug, data.get("user", "").strip())
    return RedirectResponse(f"{web(request).prefix}/admin/projects/{slug}?done=member_added", status_code=303)


@router.post("/projects/{slug}/members/{user}/remove")
def remove_member(request: Request, slug: str, user: str, ident: Identity = Depends(admin)):
    with acting_admin(request, ident) as (session, actor):
        service.remove_member(session, actor, slug, user)
    return RedirectResponse(f"{web(request).prefix}/admin/projects/{slug}?done=member_removed", status_code=303)


@router.get("/audit")
def audit(request: Request, filters: AuditFilters = Depends(), ident: Identity = Depends(admin)):
    shown = dict(filters.values)
    shown["limit"] = shown["limit"] or 500
    with acting_admin(request, ident) as (session, actor):
        events = [AuditEventOut.of(e) for e in read_events(session, actor, **shown)]
    query = request.url.query
    return render(request, "admin/audit.html", events=list(reversed(events)), filters=filters.values,
                  csv_url=f"{web(request).prefix}/admin/audit.csv" + (f"?{query}" if query else ""))


@router.get("/audit.csv")
def audit_csv(request: Request, filters: AuditFilters = Depends(), ident: Identity = Depends(admin)):
    with acting_admin(request, ident) as (session, actor):
        events = [AuditEventOut.of(e) for e in read_events(session, actor, **filters.values)]
    return Response(to_csv(events), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="enclave-audit.csv"'})


@router.post("/audit/verify")
def verify(request: Request, ident: Identity = Depends(admin)):
    with acting_admin(request, ident) as (session, actor):
        check_admin(actor, "verify the audit log")
        report = verify_chain(session)
    return render(request, "admin/verify.html", report=report)


@router.get("/datasets")
def datasets(request: Request, ident: Identity = Depends(admin)):
    with acting_admin(request, ident) as (session, actor):
        rows = [dataset_out(d) for d in catalog.list_datasets(session, actor)]
    return render(request, "admin/datasets.html", datasets=rows, done=done_message(request))


@router.get("/datasets/{name}")
def dataset(request: Request, name: str, version: int | None = None, ident: Identity = Depends(admin)):
    with acting_admin(request, ident) as (session, actor):
        detail = dataset_detail(session, actor, name, version)
        grants = [grant_out(g, utcnow()) for g in catalog.list_grants(session, actor) if g.dataset_version.dataset.name == name]
        projects = [p.slug for p in service.list_projects(session, actor) if p.status.value in ("approved", "active")]
    return render(request, "admin/dataset.html", ds=detail, grants=grants, projects=projects, done=done_message(request))


@router.post("/datasets/{name}/grants")
async def grant(request: Request, name: str, ident: Identity = Depends(admin)):
    data = await form_fields(request)
    try:
        expires = dt.date.fromisoformat(data.get("expires", ""))
        version = int(data["version"]) if data.get("version") else None
    except ValueError:
        raise InvalidInput("give the last day of access as a date (YYYY-MM-DD) and a version number") from None
    with acting_admin(request, ident) as (session, actor):
        catalog.add_grant(session, actor, web(request).settings, data.get("project", ""), name, expires=expires,
                          version=version)
    return RedirectResponse(f"{web(request).prefix}/admin/datasets/{name}?done=granted", status_code=303)


@router.post("/grants/{grant_id}/revoke")
async def revoke(request: Request, grant_id: int, ident: Identity = Depends(admin)):
    data = await form_fields(request)
    with acting_admin(request, ident) as (session, actor):
        grant = catalog.revoke_grant(session, actor, grant_id, data.get("reason", ""))
        name = grant.dataset_version.dataset.name
    return RedirectResponse(f"{web(request).prefix}/admin/datasets/{name}?done=revoked", status_code=303)
