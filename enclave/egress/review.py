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

from dataclasses import dataclass

from sqlalchemy.orm import Session

from enclave.audit import append_event
from enclave.db.models import EgressFile, EgressRequest, EgressReview, User
from enclave.disclosure.verdict import Verdict
from enclave.egress import access
from enclave.egress.crash import crash_point
from enclave.egress.policy import EgressEnv
from enclave.egress.quarantine import normalise_relpath
from enclave.egress.service import EgressAudit, get_request, list_requests, move, target_of
from enclave.egress.votes import (
    current_round,
    current_votes,
    file_outcome,
    file_round,
    has_completed_review,
    outcomes_of,
    request_outcome,
    required_reviews,
)
from enclave.egress.workflow import Owner
from enclave.enums import EgressStatus, ReviewDecision
from enclave.errors import Conflict, InvalidInput, InvalidTransition, NotFound


def vote(
    session: Session, actor: User, env: EgressEnv, request_id: int, relpath: str,
    decision: ReviewDecision, comment: str = "",
) -> EgressReview:
    """Record one reviewer's vote on one file; decide the request when every file is decided.

    Retrying the very same vote (after a crash) returns the recorded one; a different
    vote on a file already voted on in this round is a conflict.
    """
    request = get_request(session, request_id, for_update=True)
    access.check_review(actor, request)
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
    outcomes = outcomes_of(session, env, request)
    target = request_outcome(outcomes)
    if target is not None:
        move(session, env, actor, request, target, Owner.REVIEWER,
             files={f.relpath: (o.value if o else None) for f, o in zip(request.files, outcomes)})


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
    see_all = access.can_see_votes(actor, request, voted_on_every_file=has_completed_review(session, actor, request))
    result = []
    for file in request.files:
        votes = current_votes(request, file, session)
        shown = votes if see_all else [v for v in votes if v.reviewer_id == actor.id]
        outcome = file_outcome([v.decision for v in votes], required) if see_all else None
        result.append(FileDecision(file=file, votes=shown, outcome=outcome, hidden_votes=len(votes) - len(shown)))
    return result


def project_history(session: Session, actor: User, request: EgressRequest) -> list[EgressRequest]:
    """The project's other requests (with their files), for reviewers looking for differencing."""
    access.check_see_history(actor, request.project)
    return [r for r in list_requests(session, actor, project=request.project.slug) if r.id != request.id]


__all__ = [
    "FileDecision", "current_round", "file_outcome", "file_round", "has_completed_review", "project_history",
    "request_outcome", "required_reviews", "review_state", "vote",
]
