"""The egress request's life as data: valid moves, who makes them, who owns each state.

    draft --submit--> submitted --checks pass (or exception asked)--> in_review
      |                   \\--checks hard-fail--> changes_requested
      |                                                |  ^
      withdraw                          resubmit <-----'  | request changes
      v                                                   |
    withdrawn <--withdraw-- changes_requested <-----------' in_review --approve--> approved --release--> released
                                                            in_review --reject---> rejected

Only the owner of a state moves a request out of it: the researcher (the request's
author) owns draft and changes_requested, reviewers own in_review, the system owns the
transient submitted state and approved (the release step). Final states have no owner.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from enclave.enums import EgressStatus as S
from enclave.errors import InvalidTransition, PermissionDenied


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


@dataclass(frozen=True)
class Transition:
    source: S
    target: S
    action: EgressAction
    by: Owner


TRANSITIONS: tuple[Transition, ...] = (
    Transition(S.DRAFT, S.SUBMITTED, EgressAction.SUBMIT, Owner.RESEARCHER),
    Transition(S.DRAFT, S.WITHDRAWN, EgressAction.WITHDRAW, Owner.RESEARCHER),
    Transition(S.SUBMITTED, S.IN_REVIEW, EgressAction.START_REVIEW, Owner.SYSTEM),
    Transition(S.SUBMITTED, S.CHANGES_REQUESTED, EgressAction.RETURN, Owner.SYSTEM),
    Transition(S.IN_REVIEW, S.CHANGES_REQUESTED, EgressAction.REQUEST_CHANGES, Owner.REVIEWER),
    Transition(S.IN_REVIEW, S.APPROVED, EgressAction.APPROVE, Owner.REVIEWER),
    Transition(S.IN_REVIEW, S.REJECTED, EgressAction.REJECT, Owner.REVIEWER),
    Transition(S.CHANGES_REQUESTED, S.SUBMITTED, EgressAction.SUBMIT, Owner.RESEARCHER),
    Transition(S.CHANGES_REQUESTED, S.WITHDRAWN, EgressAction.WITHDRAW, Owner.RESEARCHER),
    Transition(S.APPROVED, S.RELEASED, EgressAction.RELEASE, Owner.SYSTEM),
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

FINAL = frozenset(s for s, owner in OWNERS.items() if owner is None)
# States in which the researcher may change files, groups and their descriptions.
EDITABLE = frozenset({S.DRAFT, S.CHANGES_REQUESTED})


def transition(source: S, target: S, by: Owner) -> Transition:
    """The transition from ``source`` to ``target`` made by ``by``; raise if there is none."""
    for t in TRANSITIONS:
        if t.source is source and t.target is target:
            if t.by is not by:
                raise PermissionDenied(
                    f"a {by.value} may not move an egress request from {source.value} to {target.value}: "
                    f"that is the {t.by.value}'s step"
                )
            return t
    allowed = ", ".join(t.target.value for t in TRANSITIONS if t.source is source) or "nothing (it is final)"
    raise InvalidTransition(
        f"an egress request that is {source.value} cannot become {target.value}; from {source.value} it may become: {allowed}"
    )
