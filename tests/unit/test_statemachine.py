"""The shared transition table: lookups, refusals in one line, and the three machines built on it."""

from __future__ import annotations

from enum import StrEnum

import pytest

from enclave.egress.workflow import MACHINE as EGRESS
from enclave.errors import InvalidTransition, PermissionDenied
from enclave.jobs.states import MACHINE as JOBS
from enclave.projects.lifecycle import MACHINE as PROJECTS
from enclave.statemachine import StateMachine, Transition


class Door(StrEnum):
    OPEN = "open"
    SHUT = "shut"
    LOCKED = "locked"
    GONE = "gone"


class Move(StrEnum):
    SHUT = "shut"
    LOCK = "lock"
    BURN = "burn"


T = Transition[Door, Move, str]
TABLE = (T(Door.OPEN, Door.SHUT, Move.SHUT, "anyone"), T(Door.SHUT, Door.LOCKED, Move.LOCK, "keeper"),
         T(Door.LOCKED, Door.GONE, Move.BURN, "keeper"))


def test_statemachine_finds_moves_by_action_or_target():
    door = StateMachine("door", Door, TABLE)
    assert door.transition(Door.SHUT, action=Move.LOCK, by="keeper").target is Door.LOCKED
    assert door.transition(Door.OPEN, target=Door.SHUT, by="anyone").action is Move.SHUT
    assert door.find(Door.OPEN, action=Move.LOCK) is None
    assert door.find(Door.SHUT, action=Move.LOCK, by="anyone") is None
    assert door.actions_from(Door.SHUT) == [Move.LOCK]
    assert door.final == {Door.GONE}


def test_statemachine_refuses_a_move_not_in_the_table_and_names_what_is_possible():
    door = StateMachine("door", Door, TABLE)
    with pytest.raises(InvalidTransition, match="a door that is open cannot become locked; from open it may become: shut"):
        door.transition(Door.OPEN, target=Door.LOCKED, by="keeper")
    with pytest.raises(InvalidTransition, match="from gone it may do: nothing"):
        door.transition(Door.GONE, action=Move.SHUT)


def test_statemachine_refuses_the_wrong_party_with_permission_denied():
    door = StateMachine("door", Door, TABLE)
    with pytest.raises(PermissionDenied, match="a anyone may not move a door from shut to locked: that is the keeper's step"):
        door.transition(Door.SHUT, action=Move.LOCK, by="anyone")


def test_statemachine_owners_must_cover_every_state_and_final_states_have_none():
    with pytest.raises(ValueError, match="no owner entry for: locked"):
        StateMachine("door", Door, TABLE, {Door.OPEN: "anyone", Door.SHUT: "keeper", Door.GONE: None})
    with pytest.raises(ValueError, match="final states must be exactly those without an owner"):
        StateMachine("door", Door, TABLE, {Door.OPEN: "anyone", Door.SHUT: "keeper", Door.LOCKED: None, Door.GONE: None})


def test_statemachine_is_the_one_table_of_egress_jobs_and_projects():
    for machine in (EGRESS, JOBS, PROJECTS):
        assert isinstance(machine, StateMachine)
        reached = {t.target for t in machine.transitions} | {t.source for t in machine.transitions}
        assert reached == set(machine.states), f"{machine.noun}: a state no move touches"
        for state in machine.final:
            assert machine.moves_from(state) == []
