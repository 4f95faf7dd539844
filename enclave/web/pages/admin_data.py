"""The admin console's catalogue: datasets, their data dictionaries, and grants that
approve only the tables, columns and rows a project needs (data minimisation), through
the same service function as ``enclave grant add``."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse

from enclave.catalog import service as catalog
from enclave.catalog.dictionary import IdentifierKind
from enclave.clock import utcnow
from enclave.enums import ProjectStatus
from enclave.errors import EnclaveError, InvalidInput
from enclave.projects import service
from enclave.web.api.catalog import dataset_detail, dataset_out, grant_out
from enclave.web.auth import Identity
from enclave.web.confirm import check_confirmed
from enclave.web.context import render, web
from enclave.web.pages.admin import acting_admin, admin
from enclave.web.pages.forms import FormState, correctable, done_message, failed, form_fields, form_lists

router = APIRouter(prefix="/admin")

GRANTABLE = (ProjectStatus.APPROVED, ProjectStatus.ACTIVE)
FILTER_PREFIX = "filter."


@dataclass(frozen=True)
class GrantColumn:
    table: str
    name: str
    type: str
    description: str
    identifier: str
    grantable: bool  # direct identifiers never go into a view
    pseudonymised: bool  # key columns reach the project as its own pseudonyms


@dataclass(frozen=True)
class GrantTable:
    name: str
    description: str
    columns: list[GrantColumn]


def grant_tables(session, actor, name: str, version: int | None) -> list[GrantTable]:  # type: ignore[no-untyped-def]
    """The tables and columns a grant of ``name`` may approve, with which are identifiers."""
    dataset = catalog.show_dataset(session, actor, name)
    if not dataset.versions:
        return []
    dictionary = catalog.version_dictionary(catalog.get_version(session, name, version))
    return [GrantTable(t, spec.description, [
        GrantColumn(t, c, str(col.type), col.description, str(col.identifier),
                    grantable=col.identifier is not IdentifierKind.DIRECT or col.key is not None,
                    pseudonymised=col.key is not None)
        for c, col in spec.columns.items()]) for t, spec in dictionary.tables.items()]


def _dataset_page(request: Request, ident: Identity, name: str, version: int | None, form: FormState,
                  status: int = 200):  # type: ignore[no-untyped-def]
    with acting_admin(request, ident) as (session, actor):
        detail = dataset_detail(session, actor, name, version)
        tables = grant_tables(session, actor, name, detail.shown_version)
        grants = [grant_out(g, utcnow()) for g in catalog.list_grants(session, actor)
                  if g.dataset_version.dataset.name == name]
        projects = [p.slug for p in service.list_projects(session, actor) if p.status in GRANTABLE]
    shown = {"project", "version", "expires", "columns", *(FILTER_PREFIX + t.name for t in tables)}
    form.errors = {(k if k in shown else ""): v for k, v in form.errors.items()}  # unknown field: above the form
    return render(request, "admin/dataset.html", status_code=status, ds=detail, tables=tables, grants=grants,
                  projects=projects, form=form, done=done_message(request))


@router.get("/datasets")
def datasets(request: Request, ident: Identity = Depends(admin)):
    with acting_admin(request, ident) as (session, actor):
        rows = [dataset_out(d) for d in catalog.list_datasets(session, actor)]
    return render(request, "admin/datasets.html", datasets=rows, done=done_message(request))


@router.get("/datasets/{name}")
def dataset(request: Request, name: str, version: int | None = Query(None, ge=1, le=2**31 - 1),
            project: str | None = Query(None, max_length=40), ident: Identity = Depends(admin)):
    """A dataset's versions, dictionary and grants, and the form to grant it (the project
    may be chosen already, e.g. from a project's next steps)."""
    return _dataset_page(request, ident, name, version, FormState(values={"project": project or ""}))


@router.post("/datasets/{name}/grants")
async def grant(request: Request, name: str, ident: Identity = Depends(admin)):
    fields = await form_fields(request)
    lists = await form_lists(request)
    columns = lists.get("columns", [])
    filters = {k.removeprefix(FILTER_PREFIX): v.strip() for k, v in fields.items()
               if k.startswith(FILTER_PREFIX) and v.strip()}
    typed = {"project": fields.get("project", ""), "version": fields.get("version", ""),
             "expires": fields.get("expires", ""), "columns": columns,
             **{FILTER_PREFIX + t: e for t, e in filters.items()}}
    version: int | None = None
    try:
        try:
            expires = dt.date.fromisoformat(typed["expires"])
        except ValueError:
            raise InvalidInput("give the last day of access as a date (YYYY-MM-DD)", field="expires",
                               web="give the last day of access as a date") from None
        try:
            version = int(typed["version"]) if typed["version"] else None
        except ValueError:
            raise InvalidInput("give a version number", field="version", web="choose a version") from None
        with acting_admin(request, ident) as (session, actor):
            catalog.add_grant(session, actor, web(request).settings, typed["project"], name, expires=expires,
                              version=version, columns=columns, where=[f"{t}: {e}" for t, e in filters.items()])
    except EnclaveError as exc:
        if not correctable(exc):
            raise
        return _dataset_page(request, ident, name, version, failed(typed, exc), status=400)
    return RedirectResponse(f"{web(request).prefix}/admin/datasets/{name}?done=granted", status_code=303)


@router.post("/grants/{grant_id}/revoke")
async def revoke(request: Request, grant_id: int, ident: Identity = Depends(admin)):
    data = await form_fields(request)
    check_confirmed(data, "revoke the grant")
    with acting_admin(request, ident) as (session, actor):
        grant = catalog.revoke_grant(session, actor, grant_id, data.get("reason", ""))
        name = grant.dataset_version.dataset.name
    return RedirectResponse(f"{web(request).prefix}/admin/datasets/{name}?done=revoked", status_code=303)
