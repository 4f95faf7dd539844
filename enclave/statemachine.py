"""A small transition table shared by every state machine (egress requests, job runs, projects).

A machine is data: its states (a StrEnum), its transitions (source, target, action, and
``by``: the party allowed to make the move) and, optionally, the party that owns each
state (expected to move it on; final states have none). :meth:`StateMachine.transition`
is the one place a move is looked up; it refuses a move the table lacks with
:class:`InvalidTransition` and a move made by the wrong party with ``PermissionDenied``,
each in one line that says what is possible instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, TypeVar

from enclave.errors import InvalidTransition, PermissionDenied

S = TypeVar("S", bound=StrEnum)
A = TypeVar("A", bound=StrEnum)
P = TypeVar("P")


@dataclass(frozen=True)
class Transition(Generic[S, A, P]):
    """One allowed move: ``action`` takes a thing from ``source`` to ``target``, made by ``by``."""

    source: S
    target: S
    action: A
    by: P


class StateMachine(Generic[S, A, P]):
    """The transitions of one kind of thing (``noun``, e.g. "egress request"), with lookups.

    ``allows(by, t)`` says whether party ``by`` may make transition ``t`` (default: equality
    with ``t.by``; a machine whose ``by`` is a set of roles passes a membership test).
    """

    def __init__(
        self, noun: str, states: type[S], transitions: Iterable[Transition[S, A, P]],
        owners: Mapping[S, P | None] | None = None,
        allows: Callable[[Any, Transition[S, A, P]], bool] | None = None,
    ) -> None:
        self.noun = noun
        self.states = states
        self.transitions: tuple[Transition[S, A, P], ...] = tuple(transitions)
        if owners is not None and set(owners) != set(states):
            missing = ", ".join(sorted(str(s) for s in set(states) - set(owners)))
            raise ValueError(f"the {noun} machine names no owner entry for: {missing}")
        self.owners: Mapping[S, P | None] = owners or {}
        self._allows = allows or (lambda by, t: by == t.by)
        # Final: no way out of it (and, when owners are given, no owner).
        self.final: frozenset[S] = frozenset(
            s for s in states if not any(t.source is s for t in self.transitions)
        )
        if owners is not None and self.final != frozenset(s for s, o in owners.items() if o is None):
            raise ValueError(f"the {noun} machine's final states must be exactly those without an owner")

    def moves_from(self, source: S) -> list[Transition[S, A, P]]:
        return [t for t in self.transitions if t.source is source]

    def actions_from(self, source: S) -> list[A]:
        return list(dict.fromkeys(t.action for t in self.moves_from(source)))

    def find(self, source: S, *, action: A | None = None, target: S | None = None,
             by: Any = None) -> Transition[S, A, P] | None:
        """The matching transition, or None (``by`` None matches any party)."""
        for t in self._candidates(source, action, target):
            if by is None or self._allows(by, t):
                return t
        return None

    def transition(self, source: S, *, action: A | None = None, target: S | None = None,
                   by: Any = None, subject: str | None = None) -> Transition[S, A, P]:
        """The transition asked for; raise InvalidTransition if the table has none from
        ``source``, PermissionDenied if it has one but not for party ``by``."""
        if action is None and target is None:
            raise ValueError("name the action or the target of the move")
        candidates = self._candidates(source, action, target)
        what = subject or f"{'an' if self.noun[0] in 'aeiou' else 'a'} {self.noun}"
        if not candidates:
            wanted = f"become {target.value}" if target is not None else str(action)
            options = ", ".join(
                (t.target.value if target is not None else t.action.value) for t in self.moves_from(source)
            ) or "nothing (it is final)"
            verb = "become" if target is not None else "do"
            raise InvalidTransition(
                f"{what} that is {source.value} cannot {wanted}; from {source.value} it may {verb}: {options}"
            )
        if by is None:
            return candidates[0]
        for t in candidates:
            if self._allows(by, t):
                return t
        step = candidates[0]
        party = getattr(by, "value", by)
        owner = getattr(step.by, "value", step.by)
        raise PermissionDenied(
            f"a {party} may not move {what} from {source.value} to {step.target.value}: that is the {owner}'s step"
        )

    def _candidates(self, source: S, action: A | None, target: S | None) -> list[Transition[S, A, P]]:
        return [t for t in self.transitions if t.source is source
                and (action is None or t.action is action) and (target is None or t.target is target)]
