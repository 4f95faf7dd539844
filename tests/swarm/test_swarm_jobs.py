"""Batch jobs on the real swarm: SwarmRunner's services run papermill on the worker node,
over the shared store and PostgreSQL; two workers share the queue without running any
run twice, and the concurrency limit holds across them."""

from __future__ import annotations

import json
import os
import threading
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from enclave.config import Settings
from enclave.db.models import JobRun
from enclave.db.session import unit_of_work, upgrade
from enclave.demo.synthetic import generate
from enclave.hub import swarm
from enclave.hub.access import prepare_workspace
from enclave.jobs import service
from enclave.jobs.runner import JobView
from enclave.jobs.states import JobStatus
from enclave.jobs.swarm_runner import SwarmRunner
from enclave.sandbox import ContainerPolicy
from enclave.users import get_user
from tests.conftest import REPO, Factory

from .conftest import PREFIX, Swarm

NOTEBOOK_CELLS = [
    "import os, socket, json, polars as pl\n"
    "rows = pl.read_parquet('/data/demo/patients.parquet').height\n"
    "try:\n    socket.create_connection(('172.17.0.1', 22), timeout=2); net = 'OPEN'\n"
    "except OSError:\n    net = 'CLOSED'\n"
    "status = open('/proc/self/status').read()\n"
    "nnp = [l.split()[1] for l in status.splitlines() if l.startswith('NoNewPrivs')][0]\n"
    "json.dump({'rows': rows, 'uid': os.getuid(), 'net': net, 'nnp': nnp},"
    " open(os.environ['ENCLAVE_JOB_OUTPUT'] + '/result.json', 'w'))\n",
]


@pytest.fixture
def swarm_jobs(swarm_cluster: Swarm, marker: str, pg_url: str, monkeypatch: pytest.MonkeyPatch):
    """An enclave whose home is on the shared store and whose database is PostgreSQL, with
    an active project, a view, and two swarm job workers."""
    home = swarm_cluster.shared / f"home-{uuid.uuid4().hex[:6]}"
    home.mkdir()
    (home / swarm.MARKER_NAME).write_text(marker + "\n")  # the same store: the same marker
    monkeypatch.setenv("ENCLAVE_HOME", str(home))
    monkeypatch.setenv("ENCLAVE_DB_URL", pg_url)
    monkeypatch.setenv("ENCLAVE_POLICIES", str(REPO / "policies"))
    settings = Settings.from_env()
    upgrade(settings)
    with unit_of_work(settings) as session:
        Factory(session, settings).project("cohort", "alice", "active")
    root = prepare_workspace(settings, "cohort")
    notebooks = root / "notebooks"
    notebooks.mkdir()
    nb = {"cells": [{"cell_type": "code", "source": c, "metadata": {}, "outputs": [], "execution_count": None,
                     "id": f"c{i}"} for i, c in enumerate(NOTEBOOK_CELLS)],
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    (notebooks / "probe.ipynb").write_text(json.dumps(nb))
    for path in (notebooks, notebooks / "probe.ipynb"):
        os.chown(path, 1000, 100)
    view = settings.views_dir / "cohort" / "demo-v1"
    view.mkdir(parents=True)
    for name, frame in generate(120, 3).tables.items():
        frame.write_parquet(view / f"{name}.parquet")
    policy = ContainerPolicy(engine="swarm", image=swarm_cluster.image, network=f"{PREFIX}{uuid.uuid4().hex[:6]}",
                             mem_limit="1g", cpu_limit=1.0, job_mem_limit="1g", job_max_concurrent=2)
    runners = []
    for n in range(2):
        runner = SwarmRunner(settings, policy, swarm_cluster.client, container_prefix=f"{PREFIX}job{n}-")
        runner.views = lambda _session, _project: [JobView("demo", view, 1, "sha-v1")]
        runners.append(runner)
    return settings, runners


def _submit(settings: Settings, count: int) -> list[int]:
    with unit_of_work(settings) as session:
        alice = get_user(session, "alice")
        return [service.submit_job(session, alice, settings, "cohort", "notebooks/probe.ipynb", {}).id
                for _ in range(count)]


def test_swarm_jobs_run_isolated_on_the_worker_and_two_workers_never_run_one_twice(
        swarm_jobs, swarm_cluster: Swarm):
    settings, runners = swarm_jobs
    ids = _submit(settings, 3)
    done: dict[int, list[int]] = {}
    threads = [threading.Thread(target=lambda r=r, i=i: done.__setitem__(i, r.work(once=True, idle_sleep=0.5)))
               for i, r in enumerate(runners)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=900)
    claimed = sorted(done[0] + done[1])
    assert claimed == sorted(ids), done  # each run claimed by exactly one worker
    image_id = swarm_cluster.client.images.get(swarm_cluster.image).id
    with unit_of_work(settings) as session:
        runs = session.scalars(select(JobRun).where(JobRun.id.in_(ids))).all()
        assert {r.status for r in runs} == {JobStatus.SUCCEEDED}, [(r.id, r.error) for r in runs]
        assert {r.image_digest for r in runs} == {image_id}
        spans = [(r.started_at, r.finished_at) for r in runs]
        names = [r.container_name for r in runs]
    for run_id in ids:
        log = service.log_path(settings, run_id).read_text()
        assert log.count("[enclave] run") == 1, log  # executed once
        assert f"ran on node {swarm_cluster.node}" in log  # on the worker: managers get no workspaces
        out = settings.workspaces_dir / "cohort" / "outbox" / "jobs" / str(run_id) / "result.json"
        # The view read, as the notebook user, no route to the host, no new privileges.
        assert json.loads(out.read_text()) == {"rows": 120, "uid": 1000, "net": "CLOSED", "nnp": "1"}
    # The concurrency limit (2) held across both workers: never three runs at once.
    for start, _ in spans:
        assert sum(1 for s, f in spans if s <= start < f) <= 2, spans
    # Nothing of any run is left: no service, config or network.
    for name in names:
        assert not swarm_cluster.client.services.list(filters={"name": name})
        assert not swarm_cluster.client.configs.list(filters={"name": name})
        assert not [n for n in swarm_cluster.client.networks.list(names=[name]) if n.name == name]
