"""The egress request's life as data: valid moves, who makes them, who owns each state.

    draft --submit--> submitted --checks pass (or exception asked)--> in_review
      |                   \\--checks hard-fail--> changes_requested
      |                                                |  ^
      withdraw                          resubmit <-----'  | request changes
      v                                                   |
    withdrawn <--withdraw-- changes_requested <-----------' in_review --approve--> approved --release--> released
    withdrawn <--withdraw-- in_review                       in_review --reject---> rejected

The owner of a state moves a request on out of it: the researcher (the request's author)
owns draft and changes_requested, reviewers own in_review, the system owns the transient
submitted state and approved (the release step, triggered by an independent releaser).
One move is not the owner's: the author may withdraw a request while it is in review.
Final states have no owner.
"""

from __future__ import annotations

from enum import StrEnum

from enclave.enums import EgressStatus as S
from enclave.statemachine import StateMachine, Transition


class Owner(StrEnum):
    """Who acts on a request in a given state."""

    RESEARCHER = "researcher"
    REVIEWER = "reviewer"
    SYSTEM = "system"


class EgressAction(StrEnum):
    SUBMIT = "submit"
    START_REVIEW = "start_review"
    RETURN = "return"
    REQUEST_CHANGES = "request_changes"
    APPROVE = "approve"
    REJECT = "reject"
    RELEASE = "release"
    WITHDRAW = "withdraw"


T = Transition[S, EgressAction, Owner]

TRANSITIONS: tuple[T, ...] = (
    T(S.DRAFT, S.SUBMITTED, EgressAction.SUBMIT, Owner.RESEARCHER),
    T(S.DRAFT, S.WITHDRAWN, EgressAction.WITHDRAW, Owner.RESEARCHER),
    T(S.SUBMITTED, S.IN_REVIEW, EgressAction.START_REVIEW, Owner.SYSTEM),
    T(S.SUBMITTED, S.CHANGES_REQUESTED, EgressAction.RETURN, Owner.SYSTEM),
    T(S.IN_REVIEW, S.CHANGES_REQUESTED, EgressAction.REQUEST_CHANGES, Owner.REVIEWER),
    T(S.IN_REVIEW, S.APPROVED, EgressAction.APPROVE, Owner.REVIEWER),
    T(S.IN_REVIEW, S.REJECTED, EgressAction.REJECT, Owner.REVIEWER),
    T(S.IN_REVIEW, S.WITHDRAWN, EgressAction.WITHDRAW, Owner.RESEARCHER),
    T(S.CHANGES_REQUESTED, S.SUBMITTED, EgressAction.SUBMIT, Owner.RESEARCHER),
    T(S.CHANGES_REQUESTED, S.WITHDRAWN, EgressAction.WITHDRAW, Owner.RESEARCHER),
    T(S.APPROVED, S.RELEASED, EgressAction.RELEASE, Owner.SYSTEM),
)

OWNERS: dict[S, Owner | None] = {
    S.DRAFT: Owner.RESEARCHER,
    S.SUBMITTED: Owner.SYSTEM,
    S.IN_REVIEW: Owner.REVIEWER,
    S.CHANGES_REQUESTED: Owner.RESEARCHER,
    S.APPROVED: Owner.SYSTEM,
    S.REJECTED: None,
    S.RELEASED: None,
    S.WITHDRAWN: None,
}

MACHINE = StateMachine("egress request", S, TRANSITIONS, OWNERS)
FINAL = MACHINE.final
# States in which the researcher may change files, groups and their descriptions.
EDITABLE = frozenset({S.DRAFT, S.CHANGES_REQUESTED})
# States a researcher may withdraw a request from (derived from the table).
WITHDRAWABLE = frozenset(t.source for t in TRANSITIONS if t.action is EgressAction.WITHDRAW)


def transition(source: S, target: S, by: Owner) -> T:
    """The transition from ``source`` to ``target`` made by ``by``; raise if there is none."""
    return MACHINE.transition(source, target=target, by=by)
