"""The project lifecycle as data: which move, from which status, by which role.

    proposed -> approved -> active -> suspended <-> active -> closed
    proposed -> rejected                 suspended -> closed

Rejecting, suspending and closing say why: the reason is recorded in the audit log.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import cast

from enclave.enums import ProjectStatus as S
from enclave.enums import Role
from enclave.statemachine import StateMachine, Transition


class ProjectAction(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"
    ACTIVATE = "activate"
    SUSPEND = "suspend"
    CLOSE = "close"


@dataclass(frozen=True)
class ProjectTransition(Transition[S, ProjectAction, frozenset[Role]]):
    """A move made by any holder of one of the roles in ``by``."""

    needs_reason: bool = False
    # Separation of duties: an admin may not take this decision on a project they belong to.
    forbids_members: bool = False

    @property
    def roles(self) -> frozenset[Role]:
        return self.by


ADMIN = frozenset({Role.ADMIN})

TRANSITIONS: tuple[ProjectTransition, ...] = (
    ProjectTransition(S.PROPOSED, S.APPROVED, ProjectAction.APPROVE, ADMIN, forbids_members=True),
    ProjectTransition(S.PROPOSED, S.REJECTED, ProjectAction.REJECT, ADMIN, needs_reason=True, forbids_members=True),
    ProjectTransition(S.APPROVED, S.ACTIVE, ProjectAction.ACTIVATE, ADMIN),
    ProjectTransition(S.ACTIVE, S.SUSPENDED, ProjectAction.SUSPEND, ADMIN, needs_reason=True),
    ProjectTransition(S.SUSPENDED, S.ACTIVE, ProjectAction.ACTIVATE, ADMIN),
    ProjectTransition(S.ACTIVE, S.CLOSED, ProjectAction.CLOSE, ADMIN, needs_reason=True),
    ProjectTransition(S.SUSPENDED, S.CLOSED, ProjectAction.CLOSE, ADMIN, needs_reason=True),
)

MACHINE: StateMachine[S, ProjectAction, frozenset[Role]] = StateMachine(
    "project", S, TRANSITIONS, allows=lambda role, t: role in t.by)

# Statuses in which researchers may work (open servers, run jobs, request egress).
WORKING = frozenset({S.ACTIVE})
# Statuses from which nothing more happens.
FINAL = MACHINE.final


def transition_for(source: S, action: ProjectAction) -> ProjectTransition | None:
    """The transition ``action`` makes from ``source``, or None if it is not allowed."""
    return cast("ProjectTransition | None", MACHINE.find(source, action=action))


def actions_from(source: S) -> list[ProjectAction]:
    return MACHINE.actions_from(source)
