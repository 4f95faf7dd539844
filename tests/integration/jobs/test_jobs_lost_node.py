"""A run whose node is lost while it executes, per policies/containers.yaml job_lost_node:
failed with the reason, or queued again with its partial outputs deleted (never through a
link), at most job_lost_node_retries times. The swarm test (tests/swarm/test_swarm_jobs.py)
loses a real node; here the worker's decision is driven directly, on a real database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from enclave.config import Settings
from enclave.db.models import AuditEvent, JobRun
from enclave.db.session import unit_of_work
from enclave.enums import LostNodeAction
from enclave.errors import PolicyError
from enclave.hub.access import prepare_workspace
from enclave.jobs import service
from enclave.jobs.runner import Runner
from enclave.jobs.states import JobStatus
from enclave.sandbox import ContainerPolicy, load_container_policy
from enclave.users import get_user
from tests.conftest import REPO, Factory

REASON = "the node n2 went down while the run was executing"
NOTEBOOK = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def _runner(settings: Settings, **policy: object) -> Runner:
    return Runner(settings, ContainerPolicy(**policy), client=None)


def _running(settings: Settings, runner: Runner, run_id: int | None = None) -> int:
    """Submit (or take ``run_id`` again) and start a run the way a worker does, with its
    output folder made; returns its id."""
    with unit_of_work(settings) as session:
        if run_id is None:
            if session.scalars(select(JobRun)).first() is None:
                Factory(session, settings).project("cohort", "alice", "active")
                root = prepare_workspace(settings, "cohort")
                (root / "a.ipynb").write_text(json.dumps(NOTEBOOK))
            run_id = service.submit_job(session, get_user(session, "alice"), settings, "cohort", "a.ipynb").id
    with unit_of_work(settings) as session:
        run = service.claim_next(session, 5, run_id)
        assert run is not None
        runner._prepare_output(run)
        service.start_run(session, run, image="i", image_digest="sha256:0", container_name=f"c{run.id}",
                          views=[], limits={})
    return run_id


def _status(settings: Settings, run_id: int) -> tuple[JobStatus, str | None]:
    with unit_of_work(settings) as session:
        run = session.get(JobRun, run_id)
        return run.status, run.error


def _requeues(settings: Settings) -> list[dict]:
    with unit_of_work(settings) as session:
        return [dict(e.details) for e in session.scalars(
            select(AuditEvent).where(AuditEvent.action == service.JobEvent.REQUEUE).order_by(AuditEvent.seq))]


def test_jobs_lost_node_retry_deletes_partial_outputs_and_queues_again(settings: Settings, tmp_path: Path):
    runner = _runner(settings, job_lost_node=LostNodeAction.RETRY, job_lost_node_retries=2)
    run_id = _running(settings, runner)
    out = settings.workspaces_dir / "cohort" / "outbox" / "jobs" / str(run_id)
    (out / "partial.csv").write_text("half,writ")
    (out / "sub").mkdir()
    (out / "sub" / "table.csv").write_text("a,b")
    # A link the job planted, aimed at a host file: deleted as a link, its target untouched.
    outside = tmp_path / "host-file"
    outside.write_text("keep me")
    (out / "sub" / "host").symlink_to(outside)

    runner._lost(run_id, REASON)

    assert _status(settings, run_id) == (JobStatus.QUEUED, None)
    assert not out.exists() and outside.read_text() == "keep me"
    [event] = _requeues(settings)
    assert (event["reason"], event["attempt"], event["discarded_outputs"], event["from"], event["to"]) == (
        REASON, 1, 3, "running", "queued")
    with unit_of_work(settings) as session:
        run = session.get(JobRun, run_id)
        assert run.started_at is None and run.container_name is None
    # Claimed again, its output folder is made afresh; the log says what happened.
    _running(settings, runner, run_id)
    assert out.is_dir() and not any(out.iterdir())
    assert "[enclave] attempt 1 lost:" in service.log_path(settings, run_id).read_text()


def test_jobs_lost_node_retries_are_bounded_then_the_run_fails(settings: Settings):
    runner = _runner(settings, job_lost_node=LostNodeAction.RETRY, job_lost_node_retries=2)
    run_id = _running(settings, runner)
    runner._lost(run_id, REASON)
    _running(settings, runner, run_id)
    runner._lost(run_id, REASON)
    _running(settings, runner, run_id)
    runner._lost(run_id, REASON)
    status, error = _status(settings, run_id)
    assert status is JobStatus.FAILED
    assert error == f"{REASON}, after 2 retries (job_lost_node_retries): submit it again"
    assert [e["attempt"] for e in _requeues(settings)] == [1, 2]


def test_jobs_lost_node_fail_keeps_the_run_failed_with_the_reason(settings: Settings):
    runner = _runner(settings)  # the default: fail
    run_id = _running(settings, runner)
    (settings.workspaces_dir / "cohort" / "outbox" / "jobs" / str(run_id) / "partial.csv").write_text("x")
    runner._lost(run_id, REASON)
    assert _status(settings, run_id) == (JobStatus.FAILED, f"{REASON}: submit it again")
    assert _requeues(settings) == []


def test_jobs_lost_node_cancelled_meanwhile_stays_cancelled(settings: Settings):
    runner = _runner(settings, job_lost_node=LostNodeAction.RETRY)
    run_id = _running(settings, runner)
    with unit_of_work(settings) as session:
        service.cancel_job(session, get_user(session, "alice"), run_id)
    runner._lost(run_id, REASON)
    assert _status(settings, run_id)[0] is JobStatus.CANCELLED
    assert _requeues(settings) == []


@pytest.mark.parametrize("change", [{"job_lost_node": "maybe"}, {"job_lost_node": "Retry"},
                                    {"job_lost_node_retries": 0}, {"job_lost_node_retries": 11}])
def test_jobs_lost_node_policy_refuses_unknown_values(tmp_path: Path, change: dict):
    policy = yaml.safe_load((REPO / "policies" / "containers.yaml").read_text()) | change
    path = tmp_path / "containers.yaml"
    path.write_text(yaml.safe_dump(policy))
    with pytest.raises(PolicyError):
        load_container_policy(path)


def test_jobs_lost_node_policy_shipped_default_is_fail():
    policy = load_container_policy(REPO / "policies" / "containers.yaml")
    assert policy.job_lost_node is LostNodeAction.FAIL and policy.job_lost_node_retries == 2
