"""The arithmetic of review: rounds, the votes that count, and what they decide.

Pure reading: no checks of who may see what (``enclave.egress.access``) and no changes
(``enclave.egress.review``). Service, review, release and the queues all count votes here.
"""

from __future__ import annotations

from collections import Counter

from sqlalchemy import ColumnElement, and_, func, not_, select
from sqlalchemy.orm import Session

from enclave.db.models import EgressFile, EgressRequest, EgressReview, User
from enclave.egress.policy import EgressEnv
from enclave.enums import EgressStatus, ReviewDecision


def current_round(request: EgressRequest) -> int:
    """The submission round (1 for the first submit; 0 while a draft)."""
    return int(request.details_json.get("round", 0))


def file_round(file: EgressFile) -> int:
    """The round in which the file's current content (or last reset) was submitted."""
    return int((file.check_json or {}).get("round", 0))


def current_votes(request: EgressRequest, file: EgressFile, session: Session) -> list[EgressReview]:
    """Votes that count for ``file``: those cast since its content was last submitted or reset."""
    return list(session.scalars(
        select(EgressReview).where(EgressReview.file_id == file.id, EgressReview.round >= file_round(file))
        .order_by(EgressReview.id)
    ))


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


def outcomes_of(session: Session, env: EgressEnv, request: EgressRequest) -> list[ReviewDecision | None]:
    """Each file's decision so far, in the order of ``request.files``."""
    required = required_reviews(env, request)
    return [file_outcome([v.decision for v in current_votes(request, f, session)], required) for f in request.files]


def has_completed_review(session: Session, actor: User, request: EgressRequest) -> bool:
    """The reviewer has voted on every file in its current round."""
    if not request.files:
        return False
    voted = {v.file_id for f in request.files for v in current_votes(request, f, session) if v.reviewer_id == actor.id}
    return all(f.id in voted for f in request.files)


def where_completed_review(actor: User) -> ColumnElement[bool]:
    """``has_completed_review`` in SQL, on EgressRequest rows (to count without loading)."""
    round_of_file = func.coalesce(EgressFile.check_json["round"].as_integer(), 0)
    voted = select(EgressReview.id).where(EgressReview.file_id == EgressFile.id, EgressReview.reviewer_id == actor.id,
                                          EgressReview.round >= round_of_file).exists()
    files = select(EgressFile.id).where(EgressFile.request_id == EgressRequest.id)
    return and_(files.exists(), not_(files.where(not_(voted)).exists()))


def reviewers_of(session: Session, request: EgressRequest) -> list[str]:
    """Names of the reviewers whose votes count in the current round, in voting order."""
    names: dict[str, None] = {}
    for file in request.files:
        for vote in current_votes(request, file, session):
            names[vote.reviewer.name] = None
    return list(names)
