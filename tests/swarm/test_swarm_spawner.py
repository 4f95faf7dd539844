"""EnclaveSwarmSpawner on the real swarm: EnclaveSpawner's checks, mounts and audit, with
the server a service on the worker; when the worker goes away, its server counts as
stopped and ends audited, and a job running there fails with the reason.

The spawner runs here without a hub process (a hub on the manager would run in a container
on the project networks, docs/deploy.md): the test calls the steps the hub calls (the
enclave's checks, DockerSpawner's start, poll, stop), with JupyterHub's own Hub, Server and
(unsaved) ORM spawner objects. The server's command only waits, so that it outlives the absent hub."""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time

import pytest
from sqlalchemy import select

from enclave.config import Settings
from enclave.db.models import AuditEvent, JobRun
from enclave.db.session import unit_of_work
from enclave.hub.access import ServerAction, prepare_workspace
from enclave.jobs import service as jobs
from enclave.jobs.states import JobStatus
from enclave.jobs.swarm_runner import SwarmRunner
from enclave.users import get_user
from tests.engine_support import write_notebook

from .conftest import PREFIX, Swarm, enclave_on_swarm, remove_server, server_spawner, spawn


@pytest.fixture
def spawner(swarm_cluster: Swarm, marker: str, pg_url: str, tmp_path, monkeypatch: pytest.MonkeyPatch):
    settings, network = enclave_on_swarm(swarm_cluster, marker, pg_url, tmp_path, monkeypatch, {"alpha": "alice"})
    spawner = server_spawner(settings, "alice", "alpha")
    yield spawner, settings, network
    remove_server(swarm_cluster, spawner, network)


def _start_job(settings: Settings, swarm_cluster: Swarm) -> tuple[int, threading.Thread]:
    """A job of project alpha that runs for minutes, executing on a worker thread."""
    root = prepare_workspace(settings, "alpha")
    write_notebook(root / "wait.ipynb", ["import time; time.sleep(600)"])
    with unit_of_work(settings) as session:
        run_id = jobs.submit_job(session, get_user(session, "alice"), settings, "alpha", "wait.ipynb", {}).id
    runner = SwarmRunner.from_settings(settings)
    runner.container_prefix = f"{PREFIX}job-"
    runner.views = lambda _session, _project: []
    thread = threading.Thread(target=runner.run_next, args=(run_id,), daemon=True)
    thread.start()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        with unit_of_work(settings) as session:
            name = session.get(JobRun, run_id).container_name
        if name:
            tasks = [t for s in swarm_cluster.client.services.list(filters={"name": name}) for t in s.tasks()]
            if any(t["Status"]["State"] == "running" for t in tasks):
                return run_id, thread
        time.sleep(1)
    raise AssertionError("the job did not start running within 300 s")


def _events(settings: Settings, action: str) -> list[AuditEvent]:
    with unit_of_work(settings) as session:
        rows = session.scalars(select(AuditEvent).where(AuditEvent.action == action)).all()
        return [(e.actor, e.target, dict(e.details)) for e in rows]


def test_swarm_server_and_job_on_the_worker_end_when_the_node_goes(
        spawner, swarm_cluster: Swarm):
    spawner, settings, network = spawner

    async def scenario() -> dict:
        ip, port = await spawn(spawner)
        task = await spawner.get_task()
        # The task's own address on the project's network (the egress meter takes addresses).
        assert (ip, port) == (task["NetworksAttachments"][0]["Addresses"][0].split("/")[0], 8888)
        node = swarm_cluster.client.nodes.get(task["NodeID"]).attrs["Description"]["Hostname"]
        container = task["Status"]["ContainerStatus"]["ContainerID"]
        attrs = json.loads(swarm_cluster.node_docker("inspect", container))[0]
        assert await spawner.poll() is None
        run_id, job = await asyncio.to_thread(_start_job, settings, swarm_cluster)
        # The worker goes away (its machine stops): the server is no longer running.
        subprocess.run(["docker", "stop", "-t", "1", swarm_cluster.node], check=True, capture_output=True)
        try:
            deadline = time.monotonic() + 180
            status = None
            while status is None and time.monotonic() < deadline:
                await asyncio.sleep(1)
                status = await spawner.poll()
            assert status is not None, "the server still counted as running with its node gone"
            # The hub only forgets a server whose poll says it ended: the poll itself ended it.
            assert not spawner.object_id
            await asyncio.to_thread(job.join, 300)  # the job worker sees its run's node gone
            assert not job.is_alive(), "the job worker still waits for a run on a lost node"
        finally:
            subprocess.run(["docker", "start", swarm_cluster.node], check=True, capture_output=True)
        return {"node": node, "attrs": attrs, "status": status, "run": run_id}

    seen = asyncio.run(scenario())
    assert seen["node"] == swarm_cluster.node
    assert "of this server is" in seen["status"] or "left the swarm" in seen["status"]
    host = seen["attrs"]["HostConfig"]
    assert host["ReadonlyRootfs"] is True and host["Memory"] == 1024**3 and host["PidsLimit"] == 512
    networks = list(seen["attrs"]["NetworkSettings"]["Networks"])
    assert networks == [f"{network}-alpha"]  # the project's own network, nothing else
    mounts = {m["Destination"]: m for m in seen["attrs"]["Mounts"]}
    assert mounts["/home/jovyan/project"]["Source"] == str(settings.workspaces_dir / "alpha")
    # EnclaveSpawner's own audit, on start and on the stop after the node was lost.
    assert [(a, t) for a, t, _ in _events(settings, ServerAction.SPAWN)] == [("alice", "server:alice/alpha")]
    stops = _events(settings, ServerAction.STOP)
    assert [(t, d.get("by"), d.get("reason")) for _, t, d in stops] == [("server:alice/alpha", "hub", seen["status"])]
    assert not swarm_cluster.client.services.list(filters={"name": spawner.service_name})
    # The job that ran there failed, saying why (the shipped policy: job_lost_node: fail),
    # and was not queued again; nothing of it is left in the database as running.
    with unit_of_work(settings) as session:
        run = session.get(JobRun, seen["run"])
        assert run.status is JobStatus.FAILED
        assert "while the run was executing: submit it again" in (run.error or ""), run.error
    assert _events(settings, jobs.JobEvent.REQUEUE) == []
    # The worker comes back and is ready for what follows.
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        node = swarm_cluster.client.nodes.get(swarm_cluster.node_id)
        if node.attrs["Status"]["State"] == "ready":
            break
        time.sleep(1)
    assert swarm_cluster.client.nodes.get(swarm_cluster.node_id).attrs["Status"]["State"] == "ready"


def test_swarm_server_on_a_removed_node_ends_as_stopped_and_servers_start_again(spawner, swarm_cluster: Swarm):
    spawner, settings, _network = spawner
    task = asyncio.run(_spawned(spawner))
    assert task["NodeID"] == swarm_cluster.node_id
    container = task["Status"]["ContainerStatus"]["ContainerID"]
    # An admin takes the worker out of the swarm (it leaves, the manager removes it).
    swarm_cluster.remove_worker()
    try:
        assert swarm_cluster.node_state() == "gone"

        async def ended() -> str | None:
            deadline = time.monotonic() + 180
            status = await spawner.poll()
            while status is None and time.monotonic() < deadline:
                await asyncio.sleep(1)
                status = await spawner.poll()
            return status  # the hub only forgets such a server: the poll itself ended it

        status = asyncio.run(ended())
        assert status is not None, "the server still counted as running with its node removed"
        # The node's engine ended the server's container when it left.
        deadline = time.monotonic() + 120
        while container in swarm_cluster.node_docker("ps", "-q", "--no-trunc").split() \
                and time.monotonic() < deadline:
            time.sleep(1)
        assert container not in swarm_cluster.node_docker("ps", "-q", "--no-trunc").split()
    finally:
        swarm_cluster.rejoin()
    assert not swarm_cluster.client.services.list(filters={"name": spawner.service_name})
    stops = _events(settings, ServerAction.STOP)
    assert [(t, d.get("by"), d.get("reason") == status) for _, t, d in stops] == [("server:alice/alpha", "hub", True)]
    # The enclave keeps working: the same server starts again, on the node that rejoined.
    again = server_spawner(settings, "alice", "alpha")
    task = asyncio.run(_spawned(again))
    assert task["NodeID"] == swarm_cluster.node_id
    assert asyncio.run(again.poll()) is None
    assert [t for _, t, _ in _events(settings, ServerAction.SPAWN)] == ["server:alice/alpha"] * 2


async def _spawned(spawner) -> dict:
    """Start the server; its task, once it runs."""
    await spawn(spawner)
    assert await spawner.poll() is None
    return await spawner.get_task()
