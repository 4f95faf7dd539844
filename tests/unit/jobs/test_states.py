"""The job state machine as data: every status has an owner, every move is in the table."""

import itertools

import pytest

from enclave.jobs.states import FINAL, OWNER, TRANSITIONS, JobAction, JobActor, JobStatus, transition_for


def test_states_every_status_has_an_owner_entry():
    assert set(OWNER) == set(JobStatus)


def test_states_final_statuses_have_no_way_out():
    assert FINAL == {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED}
    assert not [t for t in TRANSITIONS if t.source in FINAL]


def test_states_every_non_final_status_is_left_by_its_owner():
    for status, owner in OWNER.items():
        if owner is not None:
            assert any(t.source is status and t.by is owner for t in TRANSITIONS)


@pytest.mark.parametrize(
    "source,action,by",
    list(itertools.product(JobStatus, JobAction, JobActor)),
)
def test_states_transition_table_is_the_only_source_of_moves(source, action, by):
    expected = {
        (JobStatus.QUEUED, JobAction.START, JobActor.WORKER): JobStatus.RUNNING,
        (JobStatus.QUEUED, JobAction.CANCEL, JobActor.PERSON): JobStatus.CANCELLED,
        (JobStatus.QUEUED, JobAction.FAIL, JobActor.WORKER): JobStatus.FAILED,
        (JobStatus.RUNNING, JobAction.SUCCEED, JobActor.WORKER): JobStatus.SUCCEEDED,
        (JobStatus.RUNNING, JobAction.FAIL, JobActor.WORKER): JobStatus.FAILED,
        (JobStatus.RUNNING, JobAction.CANCEL, JobActor.PERSON): JobStatus.CANCELLED,
        (JobStatus.RUNNING, JobAction.REQUEUE, JobActor.WORKER): JobStatus.QUEUED,
    }
    move = transition_for(source, action, by)
    assert (move.target if move else None) == expected.get((source, action, by))
