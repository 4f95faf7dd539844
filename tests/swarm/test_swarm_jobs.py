"""Batch jobs on the real swarm: SwarmRunner's services run papermill on the worker node,
over the shared store and PostgreSQL; two workers share the queue without running any
run twice, and the concurrency limit holds across them."""

from __future__ import annotations

import json
import os
import threading
import subprocess
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from enclave.config import Settings
from enclave.audit import verify_chain
from enclave.db.models import AuditEvent, JobRun
from enclave.db.session import unit_of_work
from enclave.demo.synthetic import generate
from enclave.hub import swarm
from enclave.hub.access import prepare_workspace
from enclave.jobs import service
from enclave.jobs.runner import JobView
from enclave.jobs.states import JobStatus
from enclave.jobs.swarm_runner import SwarmRunner
from enclave.sandbox import ContainerPolicy
from enclave.users import get_user
from tests.engine_support import write_notebook

from .conftest import PREFIX, Swarm, enclave_on_swarm

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


def _jobs_enclave(swarm_cluster: Swarm, marker: str, pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                  **policy: object) -> tuple[Settings, list[SwarmRunner]]:
    """An enclave whose home is on the shared store and whose database is PostgreSQL, with
    an active project, a view, and two swarm job workers under ``policy``."""
    settings, network = enclave_on_swarm(swarm_cluster, marker, pg_url, tmp_path, monkeypatch, {"cohort": "alice"})
    root = prepare_workspace(settings, "cohort")
    notebooks = root / "notebooks"
    notebooks.mkdir()
    os.chown(notebooks, 1000, 100)
    write_notebook(notebooks / "probe.ipynb", NOTEBOOK_CELLS)
    view = settings.views_dir / "cohort" / "demo-v1"
    view.mkdir(parents=True)
    for name, frame in generate(120, 3).tables.items():
        frame.write_parquet(view / f"{name}.parquet")
    policy = ContainerPolicy(**{"engine": "swarm", "image": swarm_cluster.image,
                                "network": network, "mem_limit": "1g", "cpu_limit": 1.0,
                                "job_mem_limit": "1g", "job_max_concurrent": 2, **policy})
    runners = []
    for n in range(2):
        runner = SwarmRunner(settings, policy, swarm_cluster.client, container_prefix=f"{PREFIX}job{n}-")
        runner.views = lambda _session, _project: [JobView("demo", view, 1, "sha-v1")]
        runners.append(runner)
    return settings, runners


@pytest.fixture
def swarm_jobs(swarm_cluster: Swarm, marker: str, pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    return _jobs_enclave(swarm_cluster, marker, pg_url, tmp_path, monkeypatch)


def _submit(settings: Settings, count: int, notebook: str = "notebooks/probe.ipynb") -> list[int]:
    with unit_of_work(settings) as session:
        alice = get_user(session, "alice")
        return [service.submit_job(session, alice, settings, "cohort", notebook, {}).id for _ in range(count)]


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
    image_id = swarm.check_image(swarm_cluster.client, swarm_cluster.image)  # what services name
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


# A notebook whose first attempt writes a partial output and then waits to be lost with its
# node; each attempt leaves a mark in the workspace (which must survive the loss).
LOST_CELLS = [
    "import os, json, pathlib, time\n"
    "out = pathlib.Path(os.environ['ENCLAVE_JOB_OUTPUT'])\n"
    "marks = pathlib.Path('/home/jovyan/project/attempts') / os.environ['ENCLAVE_JOB_RUN']\n"
    "marks.mkdir(parents=True, exist_ok=True)\n"
    "attempt = len(list(marks.iterdir())) + 1\n"
    "(marks / str(attempt)).write_text('started')\n"
    "if attempt == 1:\n"
    "    (out / 'partial.csv').write_text('half,writ')\n"
    "    time.sleep(1800)\n"
    "(out / 'result.json').write_text(json.dumps({'attempt': attempt}))\n",
]


def _events(settings: Settings, *actions: str) -> list[AuditEvent]:
    with unit_of_work(settings) as session:
        rows = session.scalars(select(AuditEvent).where(AuditEvent.action.in_(actions)).order_by(AuditEvent.seq))
        return [(e.action, e.target, dict(e.details), e.at) for e in rows]


def _wait_node(swarm_cluster: Swarm, state: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if swarm_cluster.client.nodes.get(swarm_cluster.node_id).attrs["Status"]["State"] == state:
            return
        time.sleep(1)
    raise AssertionError(f"the worker node did not become {state} within {timeout} s")


def test_swarm_jobs_lost_with_their_node_are_queued_again_and_complete_once_it_is_back(
        swarm_cluster: Swarm, marker: str, pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    settings, runners = _jobs_enclave(swarm_cluster, marker, pg_url, tmp_path, monkeypatch, job_max_concurrent=1,
                                      job_lost_node="retry", job_lost_node_retries=2)
    write_notebook(settings.workspaces_dir / "cohort" / "notebooks" / "lost.ipynb", LOST_CELLS)
    lost = _submit(settings, 1, "notebooks/lost.ipynb")[0]
    other = _submit(settings, 1)[0]
    done: dict[int, list[int]] = {}
    threads = [threading.Thread(target=lambda r=r, i=i: done.__setitem__(i, r.work(once=True, idle_sleep=0.5)))
               for i, r in enumerate(runners)]
    for thread in threads:
        thread.start()
    partial = settings.workspaces_dir / "cohort" / "outbox" / "jobs" / str(lost) / "partial.csv"
    deadline = time.monotonic() + 300
    while not partial.exists() and time.monotonic() < deadline:
        with unit_of_work(settings) as session:
            run = session.get(JobRun, lost)
            assert run.status not in (JobStatus.FAILED, JobStatus.SUCCEEDED), run.error
        time.sleep(1)
    assert partial.exists(), "the first attempt did not start on the worker within 300 s"
    # The worker node's machine stops while the run executes there.
    subprocess.run(["docker", "stop", "-t", "1", swarm_cluster.node], check=True, capture_output=True)
    try:
        deadline = time.monotonic() + 300
        while not _events(settings, service.JobEvent.REQUEUE) and time.monotonic() < deadline:
            time.sleep(1)
    finally:
        subprocess.run(["docker", "start", swarm_cluster.node], check=True, capture_output=True)
    for thread in threads:
        thread.join(timeout=900)
    assert not any(t.is_alive() for t in threads), "the job workers did not finish within 900 s"
    _wait_node(swarm_cluster, "ready")

    # Queued again once, audited with the reason and the attempt; its partial output deleted.
    requeues = _events(settings, service.JobEvent.REQUEUE)
    assert [(t, d["attempt"], d["from"], d["to"]) for _, t, d, _ in requeues] == [
        (f"job:{lost}", 1, "running", "queued")]
    assert requeues[0][2]["discarded_outputs"] >= 1  # partial.csv (and papermill's notebook so far)
    assert "while the run was executing" in requeues[0][2]["reason"], requeues[0][2]
    with unit_of_work(settings) as session:
        runs = {r.id: r for r in session.scalars(select(JobRun))}
        assert {i: r.status for i, r in runs.items()} == {lost: JobStatus.SUCCEEDED, other: JobStatus.SUCCEEDED}, \
            {i: r.error for i, r in runs.items()}
        outputs = runs[lost].outputs_json
        assert verify_chain(session).ok
    # Only the completed attempt's files are recorded and left: nothing half-written.
    assert not partial.exists()
    assert "partial.csv" not in outputs and "result.json" in outputs, outputs
    out = partial.parent
    assert json.loads((out / "result.json").read_text()) == {"attempt": 2}
    # The shared store kept what the lost attempt wrote to the workspace itself.
    marks = settings.workspaces_dir / "cohort" / "attempts" / str(lost)
    assert sorted(p.name for p in marks.iterdir()) == ["1", "2"]
    log = service.log_path(settings, lost).read_text()
    assert "[enclave] attempt 1 lost:" in log and log.count(f"ran on node {swarm_cluster.node}") == 2, log
    # Each run was claimed by one worker per attempt, and the limit (1) held enclave-wide
    # over every attempt: never two running at once.
    assert sorted(done[0] + done[1]) == sorted([lost, lost, other]), done
    running: set[str] = set()
    for action, target, _, _ in _events(settings, service.JobEvent.START, service.JobEvent.REQUEUE,
                                        service.JobEvent.SUCCEED, service.JobEvent.FAIL):
        if action == service.JobEvent.START:
            running.add(target)
            assert len(running) <= 1, f"two runs at once: {running}"
        else:
            running.discard(target)
