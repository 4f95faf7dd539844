"""The life of a job run as data: its statuses, and who moves it from which to which.

    queued -> running -> succeeded
       |         |-----> failed      (the notebook raised, the time or memory limit hit,
       |         |                    the container could not start)
       |         |-----> cancelled   (a member or an admin stopped it)
       |         '-----> queued      (requeued: its node was lost and the policy retries,
       |                              policies/containers.yaml job_lost_node)
       '-----------------> cancelled

The worker (the system, not a person) starts and finishes runs; people only cancel.
"""

from __future__ import annotations

from enum import StrEnum

from enclave.statemachine import StateMachine, Transition


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class JobActor(StrEnum):
    """Who may make a move: the worker process, or a person (member or admin)."""

    WORKER = "worker"
    PERSON = "person"


class JobAction(StrEnum):
    START = "start"
    SUCCEED = "succeed"
    FAIL = "fail"
    CANCEL = "cancel"
    REQUEUE = "requeue"


JobTransition = Transition[JobStatus, JobAction, JobActor]

TRANSITIONS: tuple[JobTransition, ...] = (
    JobTransition(JobStatus.QUEUED, JobStatus.RUNNING, JobAction.START, JobActor.WORKER),
    JobTransition(JobStatus.QUEUED, JobStatus.CANCELLED, JobAction.CANCEL, JobActor.PERSON),
    # A project suspended or closed while its run waited in the queue: the worker refuses it.
    JobTransition(JobStatus.QUEUED, JobStatus.FAILED, JobAction.FAIL, JobActor.WORKER),
    JobTransition(JobStatus.RUNNING, JobStatus.SUCCEEDED, JobAction.SUCCEED, JobActor.WORKER),
    JobTransition(JobStatus.RUNNING, JobStatus.FAILED, JobAction.FAIL, JobActor.WORKER),
    JobTransition(JobStatus.RUNNING, JobStatus.CANCELLED, JobAction.CANCEL, JobActor.PERSON),
    # Its node was lost while it ran, and the policy says retry: back in the queue.
    JobTransition(JobStatus.RUNNING, JobStatus.QUEUED, JobAction.REQUEUE, JobActor.WORKER),
)

# Which party owns (is expected to move) a run in each status; final statuses have none.
OWNER: dict[JobStatus, JobActor | None] = {
    JobStatus.QUEUED: JobActor.WORKER,
    JobStatus.RUNNING: JobActor.WORKER,
    JobStatus.SUCCEEDED: None,
    JobStatus.FAILED: None,
    JobStatus.CANCELLED: None,
}

MACHINE = StateMachine("job run", JobStatus, TRANSITIONS, OWNER)
FINAL = MACHINE.final


def transition_for(source: JobStatus, action: JobAction, by: JobActor) -> JobTransition | None:
    """The move ``action`` makes from ``source`` when done by ``by``, or None if not allowed."""
    return MACHINE.find(source, action=action, by=by)
