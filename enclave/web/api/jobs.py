"""Jobs: submit a workspace notebook with parameters, list, show provenance, log, cancel, rerun.

A submitted run waits in the queue until the worker (``enclave job worker``) starts it.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any

from fastapi import APIRouter, Depends, Path as PathParam, Query, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field, field_validator
from pydantic.dataclasses import dataclass as pydantic_dataclass

from enclave.db.models import JobRun
from enclave.jobs import service
from enclave.jobs.states import JobStatus
from enclave.web import jobs_views
from enclave.web.api.me import ERRORS
from enclave.web.auth import Identity
from enclave.web.context import acting, signed_in, web

router = APIRouter(prefix="/jobs", tags=["jobs"])

ID = PathParam(ge=1, le=2**31 - 1, description="The job run's number")
CHANGE_ERRORS = {**ERRORS, 400: {"description": "Invalid input"}, 404: {"description": "No such project, run or notebook"},
                 409: {"description": "Not possible in the run's or project's current state"}}


def _text(value: str) -> str:
    """Refuse text a file name cannot hold (NUL, unpaired surrogates) with one line."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid UTF-8 text") from None
    return value


class SubmitIn(BaseModel):
    project: str = Field(min_length=1, max_length=40)
    notebook: str = Field(min_length=1, max_length=1000,
                          description="Path of an .ipynb inside the project workspace, e.g. notebooks/analysis.ipynb")
    parameters: dict[str, Any] = Field(default_factory=dict, max_length=100,
                                       description="Papermill parameters: names are Python identifiers, values JSON")

    @field_validator("project", "notebook")
    @classmethod
    def _plain_text(cls, value: str) -> str:
        return _text(value)


class JobOut(BaseModel):
    id: int
    project: str
    submitted_by: str
    status: JobStatus
    notebook: str
    parameters: dict[str, Any]
    created_at: str
    started_at: str | None
    finished_at: str | None
    error: str | None
    rerun_of: int | None
    reproduced: bool | None = Field(description="For a finished rerun: whether every output matched the original")

    @classmethod
    def of(cls, run: JobRun) -> JobOut:
        p = service.provenance_of(run)
        return cls(id=p.run_id, project=p.project, submitted_by=p.submitted_by, status=p.status, notebook=p.notebook,
                   parameters=p.parameters, created_at=p.created_at, started_at=p.started_at,
                   finished_at=p.finished_at, error=p.error, rerun_of=p.rerun_of,
                   reproduced=None if p.comparison is None else bool(p.comparison.get("matches")))


@pydantic_dataclass(frozen=True)
class ProvenanceOut(service.RunProvenance):
    """Everything recorded about a run (see docs/jobs.md), and its reruns."""

    reruns: list[JobOut] = field(default_factory=list)


@router.get("", response_model=list[JobOut], responses=CHANGE_ERRORS)
def list_runs(request: Request, project: str | None = Query(None, min_length=1, max_length=40),
              ident: Identity = Depends(signed_in)):
    """Runs of a project (or of all my projects; reviewers and admins: all), newest first."""
    with acting(request, ident) as (session, actor):
        return [JobOut.of(r) for r in service.list_jobs(session, actor, project)]


@router.get("/notebooks/{project}", response_model=list[str], responses=CHANGE_ERRORS)
def notebooks(request: Request, project: str = PathParam(min_length=1, max_length=40),
              ident: Identity = Depends(signed_in)):
    """The notebooks of a project's workspace that may be submitted (members)."""
    with acting(request, ident) as (session, actor):
        return jobs_views.workspace_notebooks(session, actor, web(request).settings, project)


@router.post("", response_model=JobOut, status_code=201, responses=CHANGE_ERRORS)
def submit(body: SubmitIn, request: Request, ident: Identity = Depends(signed_in)):
    """Queue a run of a workspace notebook (members of an active project); the worker starts it."""
    with acting(request, ident) as (session, actor):
        run = service.submit_job(session, actor, web(request).settings, body.project, body.notebook, body.parameters)
        return JobOut.of(run)


@router.get("/{run_id}", response_model=ProvenanceOut, responses=CHANGE_ERRORS)
def show(request: Request, run_id: int = ID, ident: Identity = Depends(signed_in)):
    """A run's provenance: notebook sha256, parameters, image digest, views, times, outputs, reruns."""
    with acting(request, ident) as (session, actor):
        prov = service.get_run_provenance(session, actor, run_id)
        reruns = [JobOut.of(r) for r in service.reruns_of(session, actor, run_id)]
    return ProvenanceOut(**prov.as_json(), reruns=reruns)


@router.get("/{run_id}/log", response_class=PlainTextResponse,
            responses={**CHANGE_ERRORS, 200: {"content": {"text/plain": {}}}})
def log(request: Request, run_id: int = ID, ident: Identity = Depends(signed_in)) -> PlainTextResponse:
    """The end of the run's log (papermill's progress and every cell's output)."""
    with acting(request, ident) as (session, actor):
        text = jobs_views.run_log(session, actor, web(request).settings, run_id)
    return PlainTextResponse(text)


@router.post("/{run_id}/cancel", response_model=JobOut, responses=CHANGE_ERRORS)
def cancel(request: Request, run_id: int = ID, ident: Identity = Depends(signed_in)):
    """Cancel a queued or running run (the worker stops its container within a second)."""
    with acting(request, ident) as (session, actor):
        return JobOut.of(service.cancel_job(session, actor, run_id))


@router.post("/{run_id}/rerun", response_model=JobOut, status_code=201, responses=CHANGE_ERRORS)
def rerun(request: Request, run_id: int = ID, ident: Identity = Depends(signed_in)):
    """Queue the same record again and compare its outputs with the original's when it ends."""
    with acting(request, ident) as (session, actor):
        return JobOut.of(service.rerun_job(session, actor, web(request).settings, run_id))
