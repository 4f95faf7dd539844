"""Who each request waits on, and the queues of the people it waits on.

Every request that is not final waits on someone: its author (draft, returned for
changes), the automated checks (submitted), independent reviewers (in review) or an
independent releaser (approved). The reviewer console, the release queue, the CLI and
the inbox all read these functions, so no request can fall out of every queue.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from enclave.db.models import EgressRequest, User
from enclave.egress import access
from enclave.egress.policy import EgressEnv
from enclave.egress.votes import current_votes, has_completed_review, outcomes_of, required_reviews
from enclave.enums import EgressStatus
from enclave.projects.lifecycle import WORKING


def _in_status(session: Session, status: EgressStatus) -> list[EgressRequest]:
    found = session.scalars(select(EgressRequest).where(EgressRequest.status == status))
    return sorted(found, key=lambda r: (r.submitted_at or r.created_at, r.id))


def review_queue(session: Session, actor: User) -> list[EgressRequest]:
    """Requests in review that ``actor`` may review and has not finished reviewing, oldest first."""
    access.check_reviewer(actor)
    return [r for r in _in_status(session, EgressStatus.IN_REVIEW)
            if access.can_review(actor, r) and not has_completed_review(session, actor, r)]


def release_queue(session: Session, actor: User) -> list[EgressRequest]:
    """Approved requests waiting for a release that ``actor`` may make, oldest first."""
    access.check_releaser(actor)
    return [r for r in _in_status(session, EgressStatus.APPROVED) if access.can_release(actor, r)]


def waiting_on(session: Session, env: EgressEnv, request: EgressRequest) -> str | None:
    """Who must act next on ``request``, in words (None once it is final)."""
    status = request.status
    author = request.author.name
    if status is EgressStatus.DRAFT:
        return f"{author} (author): add files and submit"
    if status is EgressStatus.CHANGES_REQUESTED:
        return f"{author} (author): change and resubmit, or withdraw"
    if status is EgressStatus.SUBMITTED:
        return "the automated checks"
    if status is EgressStatus.IN_REVIEW:
        required = required_reviews(env, request)
        done = min((len(current_votes(request, f, session)) for f in request.files), default=0)
        if done >= required and None in outcomes_of(session, env, request):
            return "a further independent reviewer: the reviewers disagree"
        return f"independent reviewers ({done} of {required} reviews of every file)"
    if status is EgressStatus.APPROVED:
        who = f"a releaser (a reviewer or admin outside project {request.project.slug})"
        if request.project.status not in WORKING:
            return f"{who}, once the project is active again (it is {request.project.status.value})"
        return who
    return None
