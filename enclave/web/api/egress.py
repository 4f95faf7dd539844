"""Egress requests: create, add outbox files, submit, withdraw, vote, release, download."""

from __future__ import annotations

import datetime as dt
import io
import tempfile
import zipfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Path as PathParam, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from enclave.egress import inbox, queues, release, review, service
from enclave.egress.policy import EgressEnv
from enclave.egress.schemas import EgressRequestDetail, EgressRequestOut, request_detail, rows
from enclave.enums import EgressStatus, ReviewDecision
from enclave.web import egress_views
from enclave.web.api.me import ERRORS
from enclave.web.auth import Identity
from enclave.web.context import acting, check_console, signed_in, web

router = APIRouter(prefix="/egress", tags=["egress"])

ID = PathParam(ge=1, le=2**31 - 1, description="The egress request's number")
CHANGE_ERRORS = {**ERRORS, 400: {"description": "Invalid input"}, 404: {"description": "No such request or file"},
                 409: {"description": "Not possible in the request's current state"}}


class CreateIn(BaseModel):
    project: str = Field(min_length=1, max_length=40)
    title: str = Field(default="", max_length=200)
    cited_runs: list[Annotated[int, Field(ge=1, le=2**31 - 1)]] = Field(
        default_factory=list, max_length=50, description="Job runs of the project that produced the outputs")


class ReplyIn(BaseModel):
    path: str = Field(min_length=1, max_length=1000, description="The file whose comments are answered")
    message: str = Field(min_length=1, max_length=5000)


class FilesIn(BaseModel):
    paths: list[str] = Field(min_length=1, max_length=100, description="Paths relative to the project's outbox/")
    group: str = Field(min_length=1, max_length=100, description="A group of files sharing context and controls")
    context: str | None = Field(default=None, max_length=5000)
    controls: str | None = Field(default=None, max_length=5000)


class SubmitIn(BaseModel):
    exception: str | None = Field(default=None, max_length=5000,
                                  description="Why a file that fails the checks should still be reviewed")


class VoteIn(BaseModel):
    path: str = Field(min_length=1, max_length=1000)
    decision: ReviewDecision
    comment: str = Field(default="", max_length=5000)


class InboxCountsOut(BaseModel):
    reviews_waiting: int = Field(description="Requests in review waiting for my vote")
    changes_requested: int = Field(description="My requests returned to me for changes")
    released: int = Field(description="Released requests of my projects I have not downloaded")
    waiting_release: int = Field(description="Approved requests waiting for a release I may make")


class InboxUpdateOut(BaseModel):
    request: int
    title: str
    project: str | None
    to: EgressStatus
    actor: str
    at: dt.datetime


class InboxOut(BaseModel):
    total: int
    counts: InboxCountsOut
    reviews_waiting: list[EgressRequestOut]
    changes_requested: list[EgressRequestOut]
    released: list[EgressRequestOut]
    waiting_release: list[EgressRequestOut]
    updates: list[InboxUpdateOut]


class OutboxFileOut(BaseModel):
    path: str
    size: int
    evidence: bool = Field(False, description="An evidence sidecar (.evidence.json) goes with this table at submission")
    unusable: str | None = Field(None, description="Why this file cannot be added (its name is not UTF-8: the "
                                 "path shows such bytes as \\xNN); rename it first")


def env_of(request: Request) -> EgressEnv:
    return EgressEnv.load(web(request).settings)


@router.get("/requests", response_model=list[EgressRequestOut], responses=ERRORS)
def list_requests(request: Request, project: str | None = Query(None, max_length=40),
                  status: EgressStatus | None = None, ident: Identity = Depends(signed_in)):
    """Requests of my projects (reviewers and admins: all)."""
    with acting(request, ident) as (session, actor):
        return rows(session, env_of(request), service.list_requests(session, actor, project=project, status=status))


@router.get("/queue", response_model=list[EgressRequestOut], responses=ERRORS)
def queue(request: Request, ident: Identity = Depends(signed_in)):
    """What waits on me as a reviewer, oldest first."""
    check_console(ident, "review")
    with acting(request, ident) as (session, actor):
        return rows(session, env_of(request), queues.review_queue(session, actor))


@router.get("/release-queue", response_model=list[EgressRequestOut], responses=ERRORS)
def release_queue(request: Request, ident: Identity = Depends(signed_in)):
    """Approved requests waiting for a release I may make (reviewers and admins outside the project)."""
    with acting(request, ident) as (session, actor):
        return rows(session, env_of(request), queues.release_queue(session, actor))


@router.get("/inbox", response_model=InboxOut, responses=ERRORS)
def my_inbox(request: Request, ident: Identity = Depends(signed_in)):
    """What waits on me (counts and requests), and the latest changes to requests I follow."""
    env = env_of(request)
    with acting(request, ident) as (session, actor):
        box = inbox.inbox(session, actor)
        lists = {name: rows(session, env, getattr(box, name)) for name in box.counts}
        return InboxOut(total=box.total, counts=InboxCountsOut(**box.counts), **lists,
                        updates=[InboxUpdateOut(**{k: u[k] for k in InboxUpdateOut.model_fields})
                                 for u in box.updates])


@router.get("/outbox/{project}", response_model=list[OutboxFileOut], responses=CHANGE_ERRORS)
def outbox(request: Request, project: str = PathParam(min_length=1, max_length=40),
           ident: Identity = Depends(signed_in)):
    """Files in a project's outbox that may be added to a request (members)."""
    with acting(request, ident) as (session, actor):
        return egress_views.outbox_files(session, actor, web(request).settings, project)


@router.post("/requests", response_model=EgressRequestOut, status_code=201, responses=CHANGE_ERRORS)
def create(body: CreateIn, request: Request, ident: Identity = Depends(signed_in)):
    """Start a draft request for one of my active projects."""
    env = env_of(request)
    with acting(request, ident) as (session, actor):
        return EgressRequestOut.of(service.create_request(session, actor, env, body.project, body.title,
                                                          cited_runs=body.cited_runs))


@router.get("/requests/{request_id}", response_model=EgressRequestDetail, responses=CHANGE_ERRORS)
def show(request: Request, request_id: int = ID, ident: Identity = Depends(signed_in)):
    """One request with files, findings and the votes the caller may see."""
    env = env_of(request)
    with acting(request, ident) as (session, actor):
        return request_detail(session, actor, env, request_id)


@router.post("/requests/{request_id}/files", response_model=EgressRequestDetail, responses=CHANGE_ERRORS)
def add_files(body: FilesIn, request: Request, request_id: int = ID, ident: Identity = Depends(signed_in)):
    """Add outbox files to a draft (or returned) request, in a group."""
    env = env_of(request)
    with acting(request, ident) as (session, actor):
        service.add_files(session, actor, env, request_id, body.paths, body.group, body.context, body.controls)
        return request_detail(session, actor, env, request_id)


@router.delete("/requests/{request_id}/files", status_code=204, responses=CHANGE_ERRORS)
def remove_file(request: Request, request_id: int = ID, path: str = Query(min_length=1, max_length=1000),
                ident: Identity = Depends(signed_in)) -> Response:
    """Take a file out of a draft (or returned) request."""
    env = env_of(request)
    with acting(request, ident) as (session, actor):
        service.remove_file(session, actor, env, request_id, path)
    return Response(status_code=204)


@router.post("/requests/{request_id}/submit", response_model=EgressRequestOut, responses=CHANGE_ERRORS)
def submit(body: SubmitIn, request: Request, request_id: int = ID, ident: Identity = Depends(signed_in)):
    """Quarantine and check the files, then send the request to review (or resubmit it)."""
    env = env_of(request)
    with acting(request, ident) as (session, actor):
        return EgressRequestOut.of(service.submit_request(session, actor, env, request_id, body.exception))


@router.post("/requests/{request_id}/replies", response_model=EgressRequestDetail, status_code=201,
             responses=CHANGE_ERRORS)
def reply(body: ReplyIn, request: Request, request_id: int = ID, ident: Identity = Depends(signed_in)):
    """Answer the reviewers' comments on a file of a request returned for changes (author and members)."""
    env = env_of(request)
    with acting(request, ident) as (session, actor):
        service.reply_to_comment(session, actor, env, request_id, body.path, body.message)
        return request_detail(session, actor, env, request_id)


@router.post("/requests/{request_id}/withdraw", response_model=EgressRequestOut, responses=CHANGE_ERRORS)
def withdraw(request: Request, request_id: int = ID, ident: Identity = Depends(signed_in)):
    """Withdraw my request."""
    env = env_of(request)
    with acting(request, ident) as (session, actor):
        return EgressRequestOut.of(service.withdraw_request(session, actor, env, request_id))


@router.post("/requests/{request_id}/votes", response_model=EgressRequestOut, responses=CHANGE_ERRORS)
def vote(body: VoteIn, request: Request, request_id: int = ID, ident: Identity = Depends(signed_in)):
    """Vote on one file (reviewers who are independent of the project)."""
    check_console(ident, "review")
    env = env_of(request)
    with acting(request, ident) as (session, actor):
        review.vote(session, actor, env, request_id, body.path, body.decision, body.comment)
        return EgressRequestOut.of(service.get_request(session, request_id))


@router.post("/requests/{request_id}/release", response_model=EgressRequestOut, responses=CHANGE_ERRORS)
def release_request(request: Request, request_id: int = ID, ident: Identity = Depends(signed_in)):
    """Release an approved request: signed record plus files in the export area."""
    if not (ident.is_reviewer or ident.is_admin):
        check_console(ident, "review")
    env = env_of(request)
    with acting(request, ident) as (session, actor):
        return EgressRequestOut.of(release.release_request(session, actor, env, request_id))


@router.get("/requests/{request_id}/download", responses={**CHANGE_ERRORS, 200: {"content": {"application/zip": {}}}})
def download(request: Request, request_id: int = ID, ident: Identity = Depends(signed_in)) -> Response:
    """A released request's files and signed release record, as one zip (project members)."""
    env = env_of(request)
    with tempfile.TemporaryDirectory(prefix="enclave-download-") as tmp:
        dest = Path(tmp) / "release"
        with acting(request, ident) as (session, actor):
            written = release.download_release(session, actor, env, request_id, dest)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in written:
                archive.write(path, path.relative_to(dest).as_posix())
    return Response(buffer.getvalue(), media_type="application/zip",
                    headers={"Content-Disposition": f'attachment; filename="egress-{request_id}.zip"'})
