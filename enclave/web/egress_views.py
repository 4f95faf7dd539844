"""Read-only egress views for the consoles: the outbox to pick files from and the reviewer's
queue (one file as it would leave is ``enclave.web.preview``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from enclave.config import Settings
from enclave.db.models import User
from enclave.egress.quarantine import open_outbox
from enclave.egress.schemas import EgressRequestOut
from enclave.egress.service import is_reviewer_for, list_requests, view_request
from enclave.enums import EgressStatus
from enclave.errors import NotFound, PermissionDenied
from enclave.permissions import check_member
from enclave.projects.service import get_project
from enclave.workspace_fs import EntryKind


def outbox_files(session: Session, actor: User, settings: Settings, slug: str) -> list[dict[str, Any]]:
    """Files in a project's outbox (members only): path and size; links and hidden files are left out."""
    project = get_project(session, slug)
    check_member(actor, project, f"see the outbox of project {slug}")
    found: list[dict[str, Any]] = []
    try:
        outbox = open_outbox(settings, slug)
    except NotFound:
        return found
    with outbox:
        for path, entry in outbox.walk(enter=lambda folder: not folder.name.startswith(".")):
            if entry.kind is EntryKind.FILE and not entry.name.startswith("."):
                found.append({"path": path.as_posix(), "size": entry.size})
    return found


def review_queue(session: Session, actor: User) -> list[EgressRequestOut]:
    """Requests in review that ``actor`` may review, oldest submission first."""
    waiting = [r for r in list_requests(session, actor, status=EgressStatus.IN_REVIEW) if is_reviewer_for(actor, r)]
    waiting.sort(key=lambda r: (r.submitted_at or r.created_at, r.id))
    return [EgressRequestOut.of(r) for r in waiting]


def check_may_review(actor: User, session: Session, request_id: int) -> None:
    """The reviewer console shows only requests this reviewer may vote on."""
    request = view_request(session, actor, request_id)
    if not is_reviewer_for(actor, request):
        raise PermissionDenied(f"{actor.name} may not review egress request {request_id}: "
                               "it is their own, their project's, or they are not a reviewer")

