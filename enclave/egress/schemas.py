"""Read models of egress requests: what ``--json`` and the web API show, per viewer."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel
from sqlalchemy.orm import Session

from enclave.db.models import EgressRequest, User
from enclave.egress.policy import EgressEnv
from enclave.egress import access
from enclave.egress.queues import waiting_on
from enclave.egress.review import project_history, review_state
from enclave.egress.service import replies_of, view_request
from enclave.egress.votes import current_round, required_reviews
from enclave.egress.workflow import EDITABLE, OWNERS, WITHDRAWABLE
from enclave.enums import EgressStatus, ReviewDecision


class EgressRequestOut(BaseModel):
    id: int
    project: str
    author: str
    title: str
    status: EgressStatus
    owner: str | None
    files: int
    created_at: dt.datetime
    submitted_at: dt.datetime | None
    released_at: dt.datetime | None
    # Who must act next, in words (filled in by enclave.egress.queues; None once final).
    waiting_on: str | None = None

    @classmethod
    def of(cls, request: EgressRequest) -> EgressRequestOut:
        owner = OWNERS[request.status]
        return cls(id=request.id, project=request.project.slug, author=request.author.name, title=request.title,
                   status=request.status, owner=owner.value if owner else None, files=len(request.files),
                   created_at=request.created_at, submitted_at=request.submitted_at, released_at=request.released_at)


class VoteOut(BaseModel):
    reviewer: str
    decision: ReviewDecision
    comment: str
    round: int
    at: dt.datetime


class ReplyOut(BaseModel):
    """A researcher's answer to the comments on a file (names no reviewer and no vote)."""

    author: str
    round: int
    message: str
    at: dt.datetime


class FileOut(BaseModel):
    path: str
    group: str | None
    sha256: str | None
    size: int | None
    check_status: str | None
    findings: list[dict[str, Any]]
    # What the enclave made of the file's evidence: {"status": "reproduced" |
    # "not_reproducible" | "absent", "reason": "..."}; None before the first submit.
    evidence: dict[str, str] | None = None
    votes: list[VoteOut]
    hidden_votes: int
    outcome: ReviewDecision | None
    replies: list[ReplyOut] = []


class GroupOut(BaseModel):
    name: str
    context: str
    controls: str


class HistoryOut(BaseModel):
    id: int
    status: EgressStatus
    title: str
    files: list[dict[str, Any]]


class EgressRequestDetail(EgressRequestOut):
    round: int
    reviews_required: int
    exception_justification: str | None
    cited_runs: list[Any]
    groups: list[GroupOut]
    file_list: list[FileOut]
    release_record: str | None
    may_review: bool
    may_edit: bool = False
    may_withdraw: bool = False
    may_release: bool = False
    project_history: list[HistoryOut]


def rows(session: Session, env: EgressEnv, requests: list[EgressRequest]) -> list[EgressRequestOut]:
    """List rows of ``requests``, each saying who it waits on."""
    return [EgressRequestOut.of(r).model_copy(update={"waiting_on": waiting_on(session, env, r)}) for r in requests]


def request_detail(session: Session, actor: User, env: EgressEnv, request_id: int) -> EgressRequestDetail:
    """Everything about one request that ``actor`` may see (votes follow the independence rule)."""
    request = view_request(session, actor, request_id)
    groups = {g.id: g.name for g in request.groups}
    replies: dict[int, list[ReplyOut]] = {}
    for r in replies_of(session, request):
        replies.setdefault(r.file_id, []).append(ReplyOut(author=r.author.name, round=r.round, message=r.message,
                                                          at=r.created_at))
    files = [FileOut(
        path=d.file.relpath, group=groups.get(d.file.group_id) if d.file.group_id else None, sha256=d.file.sha256,
        size=d.file.size, check_status=d.file.check_status, findings=list((d.file.check_json or {}).get("findings", [])),
        evidence=(d.file.check_json or {}).get("evidence"),
        votes=[VoteOut(reviewer=v.reviewer.name, decision=v.decision, comment=v.comment, round=v.round, at=v.created_at)
               for v in d.votes],
        hidden_votes=d.hidden_votes, outcome=d.outcome, replies=replies.get(d.file.id, []),
    ) for d in review_state(session, env, actor, request)]
    history = [HistoryOut(id=r.id, status=r.status, title=r.title, files=[
        {"path": f.relpath, "sha256": f.sha256, "size": f.size} for f in r.files])
        for r in project_history(session, actor, request)]
    base = EgressRequestOut.of(request).model_dump() | {"waiting_on": waiting_on(session, env, request)}
    return EgressRequestDetail(
        **base, round=current_round(request), reviews_required=required_reviews(env, request),
        exception_justification=request.exception_justification,
        cited_runs=list(request.details_json.get("cited_runs", [])),
        groups=[GroupOut(name=g.name, context=g.context, controls=g.controls) for g in request.groups],
        file_list=files, release_record=request.release_record_path, may_review=access.can_review(actor, request),
        may_edit=request.status in EDITABLE and access.can_edit(actor, request),
        may_withdraw=request.status in WITHDRAWABLE and access.can_withdraw(actor, request),
        may_release=request.status is EgressStatus.APPROVED and access.can_release(actor, request),
        project_history=history,
    )
