"""The admin console: dashboard, application queue, projects and members, audit log and
incidents (the catalogue and grants: ``pages/admin_data.py``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from enclave.applications import wanted_datasets
from enclave.audit import event_types, read_events, read_events_page, verify_chain
from enclave.db.models import User
from enclave.enums import IncidentStatus, ProjectStatus
from enclave.errors import EnclaveError, InvalidInput
from enclave.incidents import IncidentOut, clear_incident, enable_user, list_incidents
from enclave.metrics import load_service_levels, service_metrics
from enclave.permissions import check_admin
from enclave.projects import retention, service
from enclave.projects.lifecycle import ProjectAction
from enclave.register.details import register_choices
from enclave.users import list_users
from enclave.web import readmodels
from enclave.web.api.audit import AuditFilters, readable_details, to_csv
from enclave.web.api.incidents import egress_view
from enclave.web.auth import Identity
from enclave.web.confirm import check_confirmed
from enclave.web.context import acting, check_console, render, signed_in, web
from enclave.web.pages import register_form
from enclave.web.pages.forms import FormState, correctable, done_message, failed, form_fields
from enclave.web.schemas import AuditEventOut

AUDIT_PAGE_SIZE = 50

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
    levels = load_service_levels(web(request).settings.policies_dir)  # read afresh: an edit applies at once
    with acting_admin(request, ident) as (session, actor):
        board = readmodels.dashboard(session, actor, running)
        queue = readmodels.application_queue(session, actor)
        metrics = service_metrics(session, actor, levels)
        open_incidents = [IncidentOut.of(i) for i in list_incidents(session, actor, status=IncidentStatus.OPEN)]
    return render(request, "admin/dashboard.html", board=board, queue_size=len(queue), metrics=metrics,
                  egress=egress_view(web(request).settings), incidents=open_incidents)


def _incidents_page(request: Request, ident: Identity, form: FormState | None = None,
                    status: int = 200):  # type: ignore[no-untyped-def]
    with acting_admin(request, ident) as (session, actor):
        rows = [IncidentOut.of(i) for i in list_incidents(session, actor, limit=200)]
        disabled = [u for u in list_users(session) if u.disabled_at is not None]
        disabled_rows = [(u.name, u.disabled_reason or "") for u in disabled]
    return render(request, "admin/incidents.html", status_code=status, incidents=rows, disabled=disabled_rows,
                  egress=egress_view(web(request).settings), form=form, done=done_message(request))


@router.get("/incidents")
def incidents(request: Request, ident: Identity = Depends(admin)):
    return _incidents_page(request, ident)


async def _incidents_form(request: Request, ident: Identity, form: str,
                          change: Callable[[Session, User, str], object], done: str) -> Response:
    """A change on the incidents page made with a note: done, back to the page with
    ``done``; refused, the page again with the message beside the note."""
    typed = {"form": form, "note": (await form_fields(request)).get("note", "")}
    try:
        with acting_admin(request, ident) as (session, actor):
            change(session, actor, typed["note"])
    except EnclaveError as exc:
        if not correctable(exc):
            raise
        return _incidents_page(request, ident, failed(typed, exc, {"note"}), status=400)
    return RedirectResponse(f"{web(request).prefix}/admin/incidents?done={done}", status_code=303)


@router.post("/incidents/{incident_id}/clear")
async def clear(request: Request, incident_id: int, ident: Identity = Depends(admin)):
    return await _incidents_form(request, ident, f"incident-{incident_id}",
                                 lambda session, actor, note: clear_incident(session, actor, incident_id, note),
                                 "incident_cleared")


@router.post("/users/{name}/enable")
async def enable(request: Request, name: str, ident: Identity = Depends(admin)):
    return await _incidents_form(request, ident, f"enable-{name}",
                                 lambda session, actor, note: enable_user(session, actor, name, note), "user_enabled")


def _applications_page(request: Request, ident: Identity, form: FormState | None = None,
                       status: int = 200):  # type: ignore[no-untyped-def]
    hub = web(request).hub_prefix
    with acting_admin(request, ident) as (session, actor):
        queue = [readmodels.project_detail(session, actor, p.slug, hub)
                 for p in readmodels.application_queue(session, actor)]
        wanted = {p.slug: wanted_datasets(session, p.datasets_wanted) for p in queue}
    needed = register_form.required(request)
    missing = {p.slug: register_form.missing_words(p, needed) for p in queue}
    return render(request, "admin/applications.html", status_code=status, queue=queue, wanted=wanted,
                  missing=missing, form=form, done=done_message(request))


@router.get("/applications")
def applications(request: Request, ident: Identity = Depends(admin)):
    return _applications_page(request, ident)


def next_steps(detail, wanted, researchers: list[str]) -> list[dict[str, str]]:  # type: ignore[no-untyped-def]
    """What an admin does next with an approved or active project: activate it, add the
    proposed team, grant each dataset the application asked for."""
    if detail.status not in (ProjectStatus.APPROVED, ProjectStatus.ACTIVE):
        return []
    steps: list[dict[str, str]] = []
    if detail.status is ProjectStatus.APPROVED:
        steps.append({"kind": "activate", "text": "Activate the project so its members can start servers."})
    for name in detail.proposed_team:
        if name not in detail.members and name in researchers:
            steps.append({"kind": "member", "user": name, "text": f"Add {name}, proposed in the application."})
    granted = {g.dataset for g in detail.grants if g.live}
    for item in wanted:
        if item.name in granted:
            continue
        if item.in_catalogue:
            steps.append({"kind": "grant", "dataset": item.name,
                          "text": f"Grant {item.name}: only the tables, columns and rows the project needs."})
        else:
            steps.append({"kind": "missing", "dataset": item.name,
                          "text": f"{item.name} was asked for but is not in the catalogue."})
    if not wanted and not granted:
        steps.append({"kind": "grant-any", "text": "Grant data from the catalogue."})
    return steps


def _project_page(request: Request, ident: Identity, slug: str, form: FormState | None = None,
                  status: int = 200):  # type: ignore[no-untyped-def]
    with acting_admin(request, ident) as (session, actor):
        detail = readmodels.project_detail(session, actor, slug)
        researchers = [u.name for u in list_users(session) if "researcher" in u.roles and u.name not in detail.members]
        wanted = wanted_datasets(session, detail.datasets_wanted)
    # The register details form starts from what the project states now.
    register = form if form and form.value("form") == "register" else FormState(
        values=register_form.current_values(detail))
    return render(request, "admin/project.html", status_code=status, project=detail, researchers=researchers,
                  wanted=wanted, steps=next_steps(detail, wanted, researchers), form=form,
                  missing=register_form.missing_words(detail, register_form.required(request)), register_form=register,
                  register_choices=register_choices(), done=done_message(request))


@router.get("/projects")
def projects(request: Request, ident: Identity = Depends(admin)):
    with acting_admin(request, ident) as (session, actor):
        rows = service.list_projects(session, actor)
        projects = [readmodels.project_detail(session, actor, p.slug) for p in rows]
    return render(request, "admin/projects.html", projects=projects, done=done_message(request))


@router.get("/projects/{slug}")
def project(request: Request, slug: str, ident: Identity = Depends(admin)):
    return _project_page(request, ident, slug)


@router.post("/projects/{slug}/transition")
async def transition(request: Request, slug: str, ident: Identity = Depends(admin)):
    data = await form_fields(request)
    from_queue = data.get("back") == "applications"
    typed = {"slug": slug, "action": data.get("action", ""), "reason": data.get("reason", "")}
    try:
        try:
            action = ProjectAction(typed["action"])
        except ValueError:
            raise InvalidInput("choose one of approve, reject, activate, suspend or close") from None
        if action is ProjectAction.CLOSE:
            check_confirmed(data, "close the project")
        with acting_admin(request, ident) as (session, actor):
            retention.move_project(session, actor, web(request).settings, slug, action, typed["reason"] or None)
    except EnclaveError as exc:
        if not correctable(exc):
            raise
        form = failed(typed, exc, {"reason"})
        if from_queue:
            return _applications_page(request, ident, form, status=400)
        return _project_page(request, ident, slug, form, status=400)
    # A rejection goes back to the queue; anything else to the project, whose next steps follow.
    back = "applications" if from_queue and action is ProjectAction.REJECT else f"projects/{slug}"
    return RedirectResponse(f"{web(request).prefix}/admin/{back}?done={action.value}", status_code=303)


@router.post("/projects/{slug}/register")
async def register_details(request: Request, slug: str, ident: Identity = Depends(admin)):
    """Add or change what the public register will publish of a proposed project; a field
    left empty keeps its value."""
    data = await form_fields(request)
    typed = register_form.typed_values(data)
    try:
        changes = register_form.changes_of(typed)
        with acting_admin(request, ident) as (session, actor):
            service.amend_register(session, actor, slug, changes)
    except EnclaveError as exc:
        if not correctable(exc):
            raise
        return _project_page(request, ident, slug, failed(typed, exc, register_form.FIELDS), status=400)
    return RedirectResponse(f"{web(request).prefix}/admin/projects/{slug}?done=register_saved#register",
                            status_code=303)


@router.post("/projects/{slug}/members")
async def add_member(request: Request, slug: str, ident: Identity = Depends(admin)):
    data = await form_fields(request)
    typed = {"user": data.get("user", "").strip(), "form": "member"}
    try:
        with acting_admin(request, ident) as (session, actor):
            service.add_member(session, actor, slug, typed["user"])
    except EnclaveError as exc:
        if not correctable(exc):
            raise
        return _project_page(request, ident, slug, failed(typed, exc, {"user"}), status=400)
    return RedirectResponse(f"{web(request).prefix}/admin/projects/{slug}?done=member_added", status_code=303)


@router.post("/projects/{slug}/members/{user}/remove")
def remove_member(request: Request, slug: str, user: str, ident: Identity = Depends(admin)):
    with acting_admin(request, ident) as (session, actor):
        service.remove_member(session, actor, slug, user)
    return RedirectResponse(f"{web(request).prefix}/admin/projects/{slug}?done=member_removed", status_code=303)


@router.get("/audit")
def audit(request: Request, filters: AuditFilters = Depends(), page: int = Query(1, ge=1, le=10**9),
          ident: Identity = Depends(admin)):
    """The audit log, newest first, a page at a time; events of one type chosen from a list."""
    shown = {k: v for k, v in filters.values.items() if k != "limit"}
    with acting_admin(request, ident) as (session, actor):
        found = read_events_page(session, actor, page=page, per_page=AUDIT_PAGE_SIZE, **shown)
        events = [(AuditEventOut.of(e), readable_details(e.details or {})) for e in found.events]
        types = event_types(session, actor)
    groups = sorted({t.split(".", 1)[0] + "." for t in types if "." in t})
    kept = [(k, v) for k, v in request.query_params.multi_items() if k != "page"]
    query = urlencode(kept)
    return render(request, "admin/audit.html", events=events, filters=filters.values, found=found,
                  types=types, groups=groups, query=query,
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
