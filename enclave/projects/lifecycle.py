"""The project lifecycle as data: which move, from which status, by which role.

    proposed -> approved -> active -> suspended <-> active -> closed
    proposed -> rejected                 suspended -> closed
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from enclave.enums import ProjectStatus as S
from enclave.enums import Role


class ProjectAction(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"
    ACTIVATE = "activate"
    SUSPEND = "suspend"
    CLOSE = "close"


@dataclass(frozen=True)
class Transition:
    source: S
    target: S
    action: ProjectAction
    roles: frozenset[Role]
    needs_reason: bool = False
    # Separation of duties: an admin may not take this decision on a project they belong to.
    forbids_members: bool = False


ADMIN = frozenset({Role.ADMIN})

TRANSITIONS: tuple[Transition, ...] = (
    Transition(S.PROPOSED, S.APPROVED, ProjectAction.APPROVE, ADMIN, forbids_members=True),
    Transition(S.PROPOSED, S.REJECTED, ProjectAction.REJECT, ADMIN, needs_reason=True, forbids_members=True),
    Transition(S.APPROVED, S.ACTIVE, ProjectAction.ACTIVATE, ADMIN),
    Transition(S.ACTIVE, S.SUSPENDED, ProjectAction.SUSPEND, ADMIN, needs_reason=True),
    Transition(S.SUSPENDED, S.ACTIVE, ProjectAction.ACTIVATE, ADMIN),
    Transition(S.ACTIVE, S.CLOSED, ProjectAction.CLOSE, ADMIN),
    Transition(S.SUSPENDED, S.CLOSED, ProjectAction.CLOSE, ADMIN),
)

# Statuses in which researchers may work (open servers, run jobs, request egress).
WORKING = frozenset({S.ACTIVE})
# Statuses from which nothing more happens.
FINAL = frozenset({S.REJECTED, S.CLOSED})


def transition_for(source: S, action: ProjectAction) -> Transition | None:
    """The transition ``action`` makes from ``source``, or None if it is not allowed."""
    for t in TRANSITIONS:
        if t.source is source and t.action is action:
            return t
    return None


def actions_from(source: S) -> list[ProjectAction]:
    return [t.action for t in TRANSITIONS if t.source is source]
