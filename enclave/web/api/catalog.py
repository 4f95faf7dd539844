"""The dataset catalogue: datasets, versions, data dictionaries; grants with an end date."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, Field

from enclave.catalog import service as catalog
from enclave.clock import utcnow
from enclave.db.models import Dataset, DatasetVersion, Grant
from enclave.web.api.me import ERRORS
from enclave.web.auth import Identity
from enclave.web.context import acting, check_console, signed_in, web
from enclave.web.schemas import GrantOut

router = APIRouter(tags=["catalogue"])

NAME = Path(min_length=1, max_length=64, description="The dataset's name")
CHANGE_ERRORS = {**ERRORS, 400: {"description": "Invalid input"}, 404: {"description": "No such dataset, project or grant"},
                 409: {"description": "Not possible now"}}


class ColumnOut(BaseModel):
    name: str
    type: str
    description: str
    identifier: str


class TableOut(BaseModel):
    name: str
    description: str
    columns: list[ColumnOut]


class VersionOut(BaseModel):
    version: int
    tier: str
    rows: int
    sha256: str
    created_at: dt.datetime


class DatasetOut(BaseModel):
    name: str
    description: str
    tier: str
    versions: list[VersionOut]


class DatasetDetailOut(DatasetOut):
    shown_version: int | None
    dictionary: list[TableOut]


class ProjectGrantOut(GrantOut):
    project: str


class GrantIn(BaseModel):
    project: str = Field(min_length=1, max_length=40)
    dataset: str = Field(min_length=1, max_length=64)
    version: int | None = Field(default=None, ge=1, le=2**31 - 1, description="Latest when omitted")
    expires: dt.date = Field(description="Last day of access (UTC)")
    columns: list[str] | None = Field(default=None, max_length=1000,
                                      description="table.column, table.* or (one-table datasets) column; "
                                                  "omitted: every column but direct identifiers")
    where: list[str] = Field(default_factory=list, max_length=100,
                             description="Row filters, 'table: SQL condition' (one per table)")


class RevokeIn(BaseModel):
    reason: str = Field(default="", max_length=2000)


def _version(v: DatasetVersion) -> VersionOut:
    return VersionOut(version=v.version, tier=v.tier, rows=v.row_count, sha256=v.sha256, created_at=v.created_at)


def dataset_out(d: Dataset) -> DatasetOut:
    return DatasetOut(name=d.name, description=d.description, tier=d.tier, versions=[_version(v) for v in d.versions])


def grant_out(g: Grant, now: dt.datetime) -> ProjectGrantOut:
    return ProjectGrantOut(id=g.id, project=g.project.slug, dataset=g.dataset_version.dataset.name,
                           version=g.dataset_version.version, granted_at=g.granted_at, expires_at=g.expires_at,
                           revoked_at=g.revoked_at, live=g.is_live(now))


def dataset_detail(session, actor, name: str, version: int | None) -> DatasetDetailOut:  # type: ignore[no-untyped-def]
    dataset = catalog.show_dataset(session, actor, name)
    tables: list[TableOut] = []
    shown = None
    if dataset.versions:
        v = catalog.get_version(session, name, version)
        shown = v.version
        dictionary = catalog.version_dictionary(v)
        tables = [TableOut(name=t, description=spec.description, columns=[
            ColumnOut(name=c, type=str(col.type), description=col.description, identifier=str(col.identifier))
            for c, col in spec.columns.items()]) for t, spec in dictionary.tables.items()]
    return DatasetDetailOut(**dataset_out(dataset).model_dump(), shown_version=shown, dictionary=tables)


@router.get("/datasets", response_model=list[DatasetOut], responses=ERRORS)
def list_datasets(request: Request, ident: Identity = Depends(signed_in)):
    """Every dataset in the catalogue with its versions (metadata only)."""
    with acting(request, ident) as (session, actor):
        return [dataset_out(d) for d in catalog.list_datasets(session, actor)]


@router.get("/datasets/{name}", response_model=DatasetDetailOut, responses={**ERRORS, 404: {"description": "No such dataset"}})
def show_dataset(request: Request, name: str = NAME, version: int | None = Query(None, ge=1, le=2**31 - 1),
                 ident: Identity = Depends(signed_in)):
    """One dataset with the data dictionary of a version (the latest by default)."""
    with acting(request, ident) as (session, actor):
        return dataset_detail(session, actor, name, version)


@router.get("/grants", response_model=list[ProjectGrantOut], responses=CHANGE_ERRORS)
def list_grants(request: Request, project: str | None = Query(None, max_length=40), ident: Identity = Depends(signed_in)):
    """Grants, newest first (admins)."""
    check_console(ident, "admin")
    with acting(request, ident) as (session, actor):
        return [grant_out(g, utcnow()) for g in catalog.list_grants(session, actor, project)]


@router.post("/grants", response_model=ProjectGrantOut, status_code=201, responses=CHANGE_ERRORS)
def add_grant(body: GrantIn, request: Request, ident: Identity = Depends(signed_in)):
    """Grant a project a dataset version until a date; its view is materialised at once (admins)."""
    check_console(ident, "admin")
    with acting(request, ident) as (session, actor):
        grant = catalog.add_grant(session, actor, web(request).settings, body.project, body.dataset,
                                  expires=body.expires, version=body.version, columns=body.columns,
                                  where=body.where)
        return grant_out(grant, utcnow())


@router.post("/grants/{grant_id}/revoke", response_model=ProjectGrantOut, responses=CHANGE_ERRORS)
def revoke_grant(body: RevokeIn, request: Request, grant_id: int = Path(ge=1, le=2**31 - 1),
                 ident: Identity = Depends(signed_in)):
    """Revoke a grant and delete its view at once (admins)."""
    check_console(ident, "admin")
    with acting(request, ident) as (session, actor):
        return grant_out(catalog.revoke_grant(session, actor, grant_id, body.reason), utcnow())
