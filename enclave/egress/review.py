"""Independent two-person (or more) review of every file of a request.

Rules (see docs/egress.md):
- a reviewer holds the reviewer role and is neither the author nor a member of the project;
- each votes per file: approve, request changes or reject, with a comment; a comment is
  required to approve a file the checker failed or to reject one it passed;
- votes are independent: a reviewer sees others' votes only once they have voted on every
  file themselves;
- a file is decided when the required number of reviewers agree; if they disagree, a
  further reviewer is needed and a strict majority decides;
- when every file is decided: all approved -> approved; any "request changes" ->
  changes requested; otherwise rejected.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from enclave.audit import append_event
from enclave.db.models import EgressFile, EgressRequest, EgressReview, User
from enclave.disclosure.verdict import Verdict
from enclave.egress.crash import crash_point
from enclave.egress.policy import EgressEnv
from enclave.egress.quarantine import normalise_relpath
from enclave.egress.service import (
    EgressAudit,
    check_can_view,
    current_round,
    current_votes,
    file_round,
    get_request,
    move,
    target_of,
)
from enclave.egress.workflow import Owner
from enclave.enums import EgressStatus, ReviewDecision, Role
from enclave.errors import Conflict, InvalidInput, InvalidTransition, NotFound, PermissionDenied
from enclave.permissions import can, check_role, is_member

def required_reviews(env: EgressEnv, request: EgressRequest) -> int:
    """Independent reviews each file needs, by the project's tier (policies/egress.yaml)."""
    return env.policy.reviews.required_for(request.project.tier)


def file_outcome(votes: list[ReviewDecision], required: int) -> ReviewDecision | None:
    """The decision on one file, or None while more reviews are needed."""
    if len(votes) < required:
        return None
    counts = Counter(votes)
    if len(counts) == 1:
        return votes[0]
    # Disagreement: wait for a further reviewer; then a strict majority decides.
    if len(votes) > required:
        decision, count = counts.most_common(1)[0]
        if 2 * count > len(votes):
            return decision
    return None


def request_outcome(outcomes: list[ReviewDecision | None]) -> EgressStatus | None:
    """The request's next status once every file is decided (None while any is open)."""
    if not outcomes or any(o is None for o in outcomes):
        return None
    if all(o is ReviewDecision.APPROVE for o in outcomes):
        return EgressStatus.APPROVED
    if any(o is ReviewDecision.REQUEST_CHANGES for o in outcomes):
        return EgressStatus.CHANGES_REQUESTED
    return EgressStatus.REJECTED


def check_reviewer(actor: User, request: EgressRequest) -> None:
    """Separation of duties: reviewers never review their own or their project's outputs."""
    check_role(actor, {Role.REVIEWER}, "review egress requests")
    if actor.id == request.author_id:
        raise PermissionDenied(f"{actor.name} may not review egress request {request.id}: it is their own request")
    if is_member(actor, request.project):
        raise PermissionDenied(
            f"{actor.name} may not review egress request {request.id}: they are a member of project {request.project.slug}"
        )


def has_completed_review(session: Session, actor: User, request: EgressRequest) -> bool:
    """The reviewer has voted on every file in its current round."""
    if not request.files:
        return False
    voted = {v.file_id for f in request.files for v in current_votes(request, f, session) if v.reviewer_id == actor.id}
    return all(f.id in voted for f in request.files)


def vote(
    session: Session, actor: User, env: EgressEnv, request_id: int, relpath: str,
    decision: ReviewDecision, comment: str = "",
) -> EgressReview:
    """Record one reviewer's vote on one file; decide the request when every file is decided.

    Retrying the very same vote (after a crash) returns the recorded one; a different
    vote on a file already voted on in this round is a conflict.
    """
    request = get_request(session, request_id, for_update=True)
    check_reviewer(actor, request)
    if request.status is not EgressStatus.IN_REVIEW:
        raise InvalidTransition(f"egress request {request.id} is {request.status.value}: votes are taken only while it is in review")
    relpath = normalise_relpath(relpath)
    file = next((f for f in request.files if f.relpath == relpath), None)
    if file is None:
        names = ", ".join(f.relpath for f in request.files)
        raise NotFound(f"egress request {request.id} has no file {relpath}: its files are {names}")
    comment = (comment or "").strip()
    checked = Verdict(file.check_status or Verdict.REVIEW)
    if decision is ReviewDecision.APPROVE and checked is Verdict.FAIL and not comment:
        raise InvalidInput(f"outbox/{relpath} failed the automated checks: say why it is safe with --comment to approve it")
    if decision is ReviewDecision.REJECT and checked is Verdict.PASS and not comment:
        raise InvalidInput(f"outbox/{relpath} passed the automated checks: say why it is disclosive with --comment to reject it")
    if decision is ReviewDecision.REQUEST_CHANGES and not comment:
        raise InvalidInput("say what must change with --comment when requesting changes")
    mine = [v for v in current_votes(request, file, session) if v.reviewer_id == actor.id]
    if mine:
        if mine[0].decision is decision and mine[0].comment == comment:
            return mine[0]
        raise Conflict(f"{actor.name} already voted {mine[0].decision.value} on outbox/{relpath} in this round: votes cannot be changed")
    review = EgressReview(request_id=request.id, file_id=file.id, reviewer_id=actor.id, round=current_round(request),
                          decision=decision, comment=comment)
    session.add(review)
    session.flush()
    crash_point("review.vote")
    append_event(session, actor, EgressAudit.VOTE, project=request.project, target=target_of(request), details={
        "file": relpath, "sha256": file.sha256, "decision": decision, "comment": comment, "round": review.round,
    })
    _decide(session, actor, env, request)
    return review


def _decide(session: Session, actor: User, env: EgressEnv, request: EgressRequest) -> None:
    required = required_reviews(env, request)
    outcomes = [file_outcome([v.decision for v in current_votes(request, f, session)], required) for f in request.files]
    target = request_outcome(outcomes)
    if target is not None:
        move(session, env, actor, request, target, Owner.REVIEWER,
             files={f.relpath: (o.value if o else None) for f, o in zip(request.files, outcomes)})


def review_queue(session: Session, actor: User) -> list[EgressRequest]:
    """Requests in review that ``actor`` may review and has not finished reviewing."""
    check_role(actor, {Role.REVIEWER}, "review egress requests")
    in_review = session.scalars(
        select(EgressRequest).where(EgressRequest.status == EgressStatus.IN_REVIEW).order_by(EgressRequest.submitted_at)
    )
    return [r for r in in_review
            if actor.id != r.author_id and not is_member(actor, r.project) and not has_completed_review(session, actor, r)]


@dataclass(frozen=True)
class FileDecision:
    """One file's state of review, as a given viewer may see it."""

    file: EgressFile
    votes: list[EgressReview]
    outcome: ReviewDecision | None
    hidden_votes: int


def review_state(session: Session, env: EgressEnv, actor: User, request: EgressRequest) -> list[FileDecision]:
    """Per file, the votes ``actor`` may see (independence rule) and the outcome so far.

    Reviewers see others' votes only after voting on every file themselves; the author
    and members see votes once review is over; admins who are not reviewers see all.
    """
    required = required_reviews(env, request)
    completed = has_completed_review(session, actor, request)
    member = actor.id == request.author_id or is_member(actor, request.project)
    if member:
        see_all = request.status not in (EgressStatus.SUBMITTED, EgressStatus.IN_REVIEW)
    elif Role.REVIEWER in actor.roles:
        see_all = completed or request.status not in (EgressStatus.SUBMITTED, EgressStatus.IN_REVIEW)
    else:
        see_all = Role.ADMIN in actor.roles
    result = []
    for file in request.files:
        votes = current_votes(request, file, session)
        shown = votes if see_all else [v for v in votes if v.reviewer_id == actor.id]
        outcome = file_outcome([v.decision for v in votes], required) if see_all else None
        result.append(FileDecision(file=file, votes=shown, outcome=outcome, hidden_votes=len(votes) - len(shown)))
    return result


def project_history(session: Session, actor: User, request: EgressRequest) -> list[EgressRequest]:
    """The project's other requests (with their files), for reviewers looking for differencing."""
    if not (actor.roles & {Role.REVIEWER, Role.ADMIN}) and not is_member(actor, request.project):
        raise PermissionDenied(f"{actor.name} may not see the egress history of project {request.project.slug}")
    others = session.scalars(
        select(EgressRequest).where(EgressRequest.project_id == request.project_id, EgressRequest.id != request.id)
        .order_by(EgressRequest.id)
    )
    return [r for r in others if can(check_can_view, actor, r)]


__all__ = [
    "FileDecision", "check_reviewer", "file_outcome", "file_round", "has_completed_review", "project_history",
    "request_outcome", "required_reviews", "review_queue", "review_state", "vote",
]
