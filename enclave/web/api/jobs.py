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
from enclave.egress.policy import EgressEnv
from enclave.jobs import service
from enclave.jobs.egress import request_egress_for_run
from enclave.jobs.parameters import ParamKind
from enclave.jobs.states import FINAL, JobStatus
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


class LiveOut(BaseModel):
    """What the run page needs to follow a run: its status and the log's new lines."""

    id: int
    status: JobStatus
    final: bool = Field(description="The run has ended: nothing will change any more")
    error: str | None
    log: str = Field(description="The log after the offset asked for (at most its last 256 KiB)")
    next_offset: int = Field(description="The offset to ask from next time")


@router.get("/{run_id}/live", response_model=LiveOut, responses=CHANGE_ERRORS)
def live(request: Request, run_id: int = ID, offset: int = Query(0, ge=0, le=2**53),
         ident: Identity = Depends(signed_in)):
    """The run's status and the log's lines after byte ``offset`` (poll it while the run is not final)."""
    with acting(request, ident) as (session, actor):
        run = service.get_job(session, actor, run_id)
        chunk = jobs_views.log_since(session, actor, web(request).settings, run_id, offset)
        return LiveOut(id=run.id, status=run.status, final=run.status in FINAL, error=run.error,
                       log=chunk.text, next_offset=chunk.next_offset)


class ParameterOut(BaseModel):
    name: str
    kind: ParamKind
    default: Any = Field(description="The default as JSON (null when it is not a literal)")
    default_text: str = Field(description="The default as written in the notebook")
    comment: str


@router.get("/parameters/{project}", response_model=list[ParameterOut] | None, responses=CHANGE_ERRORS)
def parameters(request: Request, project: str = PathParam(min_length=1, max_length=40),
               notebook: str = Query(..., min_length=1, max_length=1000), ident: Identity = Depends(signed_in)):
    """The parameters a workspace notebook declares in its cell tagged ``parameters`` (null
    when it has none); submissions are checked against them (members)."""
    with acting(request, ident) as (session, actor):
        declared = service.notebook_parameters(session, actor, web(request).settings, project, notebook)
    return None if declared is None else [ParameterOut(name=p.name, kind=p.kind, default=p.default,
                                                       default_text=p.default_text, comment=p.comment) for p in declared]


class EgressStartedOut(BaseModel):
    request: int = Field(description="The draft egress request's number")
    files: list[str] = Field(description="The outbox paths added (jobs/<run>/...)")


class EgressFromRunIn(BaseModel):
    context: str | None = Field(None, max_length=5000, description="What the files show, and for which population")
    controls: str | None = Field(None, max_length=5000, description="The disclosure controls applied")


@router.post("/{run_id}/egress", response_model=EgressStartedOut, status_code=201, responses=CHANGE_ERRORS)
def start_egress(request: Request, run_id: int = ID, body: EgressFromRunIn | None = None,
                 ident: Identity = Depends(signed_in)):
    """A draft egress request citing the run, holding its output files (not the executed
    notebook; evidence sidecars go with their tables at submission) in the group ``run-<id>``."""
    env = EgressEnv.load(web(request).settings)
    given = body or EgressFromRunIn()
    with acting(request, ident) as (session, actor):
        created = request_egress_for_run(session, actor, env, run_id, given.context, given.controls)
        return EgressStartedOut(request=created.id, files=[f.relpath for f in created.files])


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
