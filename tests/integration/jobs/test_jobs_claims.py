"""Concurrent workers claiming runs: never more than the limit running, never a run twice,
on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from enclave.config import Settings
from enclave.db.models import JobRun
from enclave.db.session import unit_of_work, upgrade
from enclave.enums import Role
from enclave.jobs import service
from enclave.jobs.states import JobStatus
from enclave.projects import service as projects
from enclave.projects.lifecycle import ProjectAction
from enclave.projects.tiers import load_tiers
from enclave.users import add_user, get_user
from tests.register_support import EXAMPLE_REGISTER

NOTEBOOK = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def _queue(settings: Settings, n: int) -> None:
    import datetime as dt

    with unit_of_work(settings) as session:
        admin = add_user(session, None, "admin", {Role.ADMIN})
        add_user(session, admin, "alice", {Role.RESEARCHER}, dt.date.today() + dt.timedelta(days=99))
        projects.create_project(session, admin, load_tiers(settings.policies_dir), slug="cohort", title="t",
                                pi="alice", lay_summary="x", end_date=dt.date.today() + dt.timedelta(days=99),
                                register=EXAMPLE_REGISTER)
        for action in (ProjectAction.APPROVE, ProjectAction.ACTIVATE):
            projects.transition_project(session, admin, "cohort", action)
    (settings.workspaces_dir / "cohort").mkdir(parents=True)
    (settings.workspaces_dir / "cohort" / "a.ipynb").write_text(json.dumps(NOTEBOOK))
    with unit_of_work(settings) as session:
        for _ in range(n):
            service.submit_job(session, get_user(session, "alice"), settings, "cohort", "a.ipynb")


def _claim_race(settings: Settings, workers: int, limit: int) -> list[int]:
    claimed: list[int] = []
    barrier = threading.Barrier(workers)

    def worker() -> None:
        barrier.wait()
        with unit_of_work(settings) as session:
            run = service.claim_next(session, limit)
            if run is not None:
                service.start_run(session, run, image="i", image_digest="sha256:0", container_name=f"c{run.id}",
                                  views=[], limits={})
                claimed.append(run.id)

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return claimed


def _check(settings: Settings, claimed: list[int], limit: int) -> None:
    assert len(claimed) == len(set(claimed)) == limit
    with unit_of_work(settings) as session:
        running = [r.id for r in session.query(JobRun).filter(JobRun.status == JobStatus.RUNNING)]
    assert sorted(running) == sorted(claimed)


def test_jobs_claims_respect_the_limit_under_concurrency_sqlite(settings: Settings):
    _queue(settings, 6)
    _check(settings, _claim_race(settings, workers=6, limit=2), limit=2)


@pytest.mark.postgres
def test_jobs_claims_respect_the_limit_under_concurrency_postgres(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pg_url: str
):
    monkeypatch.setenv("ENCLAVE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ENCLAVE_DB_URL", pg_url)
    monkeypatch.setenv("ENCLAVE_POLICIES", str(Path(__file__).resolve().parents[3] / "policies"))
    settings = Settings.from_env()
    upgrade(settings)
    _queue(settings, 6)
    _check(settings, _claim_race(settings, workers=6, limit=2), limit=2)
