"""The job-submission race of the security review, and every host access of the jobs to a
workspace refusing a link in any component (enclave.workspace_fs)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from enclave.errors import EnclaveError, InvalidInput, NotFound
from enclave.jobs import service
from enclave.jobs.runner import Runner, _open_outputs
from enclave.sandbox import ContainerPolicy
from tests.link_race import swapping

OWN = {"cells": [{"cell_type": "code", "source": "print('own')", "metadata": {}, "outputs": [],
                  "execution_count": None}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
THEIRS = {**OWN, "cells": [{**OWN["cells"][0], "source": "print('the other project')"}]}
TRIES = 500


@pytest.fixture
def workspaces(factory, settings) -> tuple[Path, Path]:
    """cohort (the attacker's project) and other (the victim), each with notebooks/a.ipynb."""
    factory.project("cohort", "alice", "active")
    factory.project("other", "carol", "active")
    for slug, nb in (("cohort", OWN), ("other", THEIRS)):
        (settings.workspaces_dir / slug / "notebooks").mkdir(parents=True)
        (settings.workspaces_dir / slug / "notebooks" / "a.ipynb").write_text(json.dumps(nb))
    return settings.workspaces_dir / "cohort", settings.workspaces_dir / "other"


def _sha(nb: dict) -> str:
    return hashlib.sha256(json.dumps(nb).encode()).hexdigest()


def test_jobs_submit_race_never_reads_another_projects_notebook(session, factory, settings, workspaces):
    own, other = workspaces
    # The member's link to the other project's folder, exchanged with their own folder in a loop.
    (own / "evil").symlink_to(other / "notebooks")
    alice = factory.get("alice")
    stored, refused, leaked_by_name = [], 0, 0
    with swapping(own / "notebooks", own / "evil"):
        for _ in range(TRIES):
            try:
                run = service.submit_job(session, alice, settings, "cohort", "notebooks/a.ipynb")
            except InvalidInput as exc:
                assert "\n" not in str(exc)
                refused += 1
            else:
                stored.append(run.notebook_sha256)
            # The control: what a check-then-open by name reads under the same race.
            leaked_by_name += (own / "notebooks" / "a.ipynb").read_text() == json.dumps(THEIRS)
    assert len(stored) + refused == TRIES
    assert set(stored) == {_sha(OWN)}, "a stored notebook is not the project's own"
    assert refused > 0 and leaked_by_name > 0, "the race was not exercised"
    assert not service.stored_notebook(settings, _sha(THEIRS)).exists()


@pytest.mark.parametrize("where", ["notebooks", "notebooks/deeper", "notebooks/deeper/a.ipynb"])
def test_jobs_submit_refuses_a_link_in_any_component(session, factory, settings, workspaces, where):
    own, other = workspaces
    (own / "notebooks" / "deeper").mkdir()
    (own / "notebooks" / "deeper" / "a.ipynb").write_text(json.dumps(OWN))
    (other / "notebooks" / "deeper").mkdir()
    (other / "notebooks" / "deeper" / "a.ipynb").write_text(json.dumps(THEIRS))
    os.rename(own / where, own / "moved-away")
    (own / where).symlink_to(other / where)
    with pytest.raises(InvalidInput, match="link"):
        service.submit_job(session, factory.get("alice"), settings, "cohort", "notebooks/deeper/a.ipynb")


def test_jobs_submit_refuses_a_workspace_that_is_a_link_or_missing(session, factory, settings, workspaces):
    own, other = workspaces
    os.rename(own, own.with_name("cohort-away"))
    with pytest.raises(NotFound, match="no notebook"):
        service.submit_job(session, factory.get("alice"), settings, "cohort", "notebooks/a.ipynb")
    own.symlink_to(other)
    with pytest.raises(InvalidInput, match="link"):
        service.submit_job(session, factory.get("alice"), settings, "cohort", "notebooks/a.ipynb")


@pytest.mark.parametrize("linked", ["outbox", "outbox/jobs"])
def test_jobs_worker_creates_no_output_folder_through_a_link(session, factory, settings, workspaces, tmp_path, linked):
    own, _ = workspaces
    run = service.submit_job(session, factory.get("alice"), settings, "cohort", "notebooks/a.ipynb")
    host = tmp_path / "host-dir"
    host.mkdir(mode=0o700)
    if linked != "outbox":
        (own / "outbox").mkdir()
    (own / linked).symlink_to(host)
    runner = Runner(settings, ContainerPolicy(), client=None)
    with pytest.raises(EnclaveError, match="link"):
        runner._prepare_output(run)
    assert os.listdir(host) == [] and (host.stat().st_mode & 0o777) == 0o700


@pytest.mark.parametrize("linked", ["outbox", "outbox/jobs", "outbox/jobs/{id}"])
def test_jobs_worker_reads_no_outputs_through_a_link(session, factory, settings, workspaces, tmp_path, linked):
    from contextlib import ExitStack

    own, other = workspaces
    run = service.submit_job(session, factory.get("alice"), settings, "cohort", "notebooks/a.ipynb")
    runner = Runner(settings, ContainerPolicy(), client=None)
    runner._prepare_output(run)
    with ExitStack() as stack:
        assert _open_outputs(settings, run, stack) is not None
    target = own / linked.format(id=run.id)
    os.rename(target, target.with_name(target.name + "-away"))
    target.symlink_to(other / "notebooks")
    with ExitStack() as stack:
        assert _open_outputs(settings, run, stack) is None
