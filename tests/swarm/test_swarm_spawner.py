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
import os
import shutil
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass

import pytest
import yaml
from dockerspawner import DockerSpawner
from jupyterhub import orm
from jupyterhub.objects import Hub, Server
from sqlalchemy import select

from enclave.config import Settings
from enclave.db.models import AuditEvent
from enclave.db.session import unit_of_work, upgrade
from enclave.hub import swarm
from enclave.db.models import JobRun
from enclave.hub.access import ServerAction, prepare_workspace
from enclave.jobs import service as jobs
from enclave.jobs.states import JobStatus
from enclave.jobs.swarm_runner import SwarmRunner
from enclave.users import get_user
from enclave.hub.swarm_spawner import EnclaveSwarmSpawner
from tests.conftest import REPO, Factory

from .conftest import PREFIX, Swarm


@dataclass
class HubUser:
    """What a spawner reads of jupyterhub.user.User."""

    name: str
    url: str = ""
    id: int = 1


@pytest.fixture
def spawner(swarm_cluster: Swarm, marker: str, pg_url: str, tmp_path, monkeypatch: pytest.MonkeyPatch):
    home = swarm_cluster.shared / f"home-{uuid.uuid4().hex[:6]}"
    home.mkdir()
    (home / swarm.MARKER_NAME).write_text(marker + "\n")
    policies = tmp_path / "policies"
    shutil.copytree(REPO / "policies", policies)
    containers = yaml.safe_load((policies / "containers.yaml").read_text())
    network = f"{PREFIX}{uuid.uuid4().hex[:6]}"
    containers.update(engine="swarm", image=swarm_cluster.image, network=network, mem_limit="1g", cpu_limit=1.0,
                      job_mem_limit="1g")
    (policies / "containers.yaml").write_text(yaml.safe_dump(containers))
    monkeypatch.setenv("ENCLAVE_HOME", str(home))
    monkeypatch.setenv("ENCLAVE_DB_URL", pg_url)
    monkeypatch.setenv("ENCLAVE_POLICIES", str(policies))
    settings = Settings.from_env()
    upgrade(settings)
    with unit_of_work(settings) as session:
        Factory(session, settings).project("alpha", "alice", "active")
    spawner = EnclaveSwarmSpawner(
        user=HubUser("alice", url="/user/alice/"), orm_spawner=orm.Spawner(name="alpha"), hub=Hub(ip="hub", port=8081),
        enclave_home=str(home), prefix=f"{PREFIX}nb", meter_url="http://127.0.0.1:9", meter_token="t",
        api_token="token", oauth_client_id="jupyterhub-user-alice-alpha",
        cmd=["python", "-c", "import time; time.sleep(900)"])
    spawner.server = Server(ip="0.0.0.0", port=8888, base_url="/user/alice/alpha/")
    yield spawner, settings, network
    for service in swarm_cluster.client.services.list(filters={"name": spawner.service_name}):
        service.remove()
    for _ in range(40):
        try:
            swarm_cluster.client.networks.get(f"{network}-alpha").remove()
            break
        except Exception:  # noqa: BLE001 - a task still shutting down holds it; then it is gone
            time.sleep(0.5)


def _start_job(settings: Settings, swarm_cluster: Swarm) -> tuple[int, threading.Thread]:
    """A job of project alpha that runs for minutes, executing on a worker thread."""
    root = prepare_workspace(settings, "alpha")
    nb = {"cells": [{"cell_type": "code", "source": "import time; time.sleep(600)", "metadata": {}, "outputs": [],
                     "execution_count": None, "id": "c0"}],
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    (root / "wait.ipynb").write_text(json.dumps(nb))
    os.chown(root / "wait.ipynb", 1000, 100)
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


async def _spawn(spawner: EnclaveSwarmSpawner) -> tuple[str, int]:
    """What EnclaveSpawner.start does before its readiness check and the meter."""
    spawner._enclave_policy, spawner._enclave_mounts = await asyncio.to_thread(
        spawner._check_and_prepare, spawner.name, None)
    return await DockerSpawner.start(spawner)


def test_swarm_server_and_job_on_the_worker_end_when_the_node_goes(
        spawner, swarm_cluster: Swarm):
    spawner, settings, network = spawner

    async def scenario() -> dict:
        ip, port = await _spawn(spawner)
        assert (ip, port) == (spawner.service_name, 8888)
        task = await spawner.get_task()
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
            await spawner.stop()  # what the hub does with a server whose poll says it ended
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
    assert [(t, d.get("by")) for _, t, d in stops] == [("server:alice/alpha", "hub")]
    assert not swarm_cluster.client.services.list(filters={"name": spawner.service_name})
    # The job that ran there failed, saying why; nothing of it is left in the database as running.
    with unit_of_work(settings) as session:
        run = session.get(JobRun, seen["run"])
        assert run.status is JobStatus.FAILED
        assert "while the run was executing" in (run.error or ""), run.error
    # The worker comes back and is ready for what follows.
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        node = swarm_cluster.client.nodes.get(swarm_cluster.node_id)
        if node.attrs["Status"]["State"] == "ready":
            break
        time.sleep(1)
    assert swarm_cluster.client.nodes.get(swarm_cluster.node_id).attrs["Status"]["State"] == "ready"
