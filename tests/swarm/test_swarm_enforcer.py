"""The enforcer on the real swarm: a project suspended by an admin loses its server
service on the worker node in the enforcer's next round (the same round, decisions and
audit as on one host), while another project's server, and a server of another enclave on
the same swarm, keep running.

Servers are started by EnclaveSwarmSpawner as the hub starts them (see conftest's
``server_spawner``), with no hub process: the suspension's round meets a hub API that does
not answer, so the stop comes from the engine's pass, the one that also catches a server
the hub no longer lists."""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid

import httpx
import pytest
from sqlalchemy import select

from enclave.db.models import AuditEvent
from enclave.db.session import unit_of_work
from enclave.hub.access import ServerAction
from enclave.hub.enforce import ENFORCER, SwarmServers, Trigger, enforce_once, hub_client
from enclave.projects.lifecycle import ProjectAction
from enclave.hub.spawner import PROJECT_LABEL, USER_LABEL
from enclave.projects.service import transition_project
from enclave.sandbox import Mount
from enclave.users import get_user

from .conftest import Services, Swarm, enclave_on_swarm, remove_server, server_spawner, spawn


@pytest.fixture
def two_servers(swarm_cluster: Swarm, marker: str, pg_url: str, tmp_path, monkeypatch: pytest.MonkeyPatch):
    settings, network = enclave_on_swarm(swarm_cluster, marker, pg_url, tmp_path, monkeypatch,
                                         {"alpha": "alice", "beta": "bob"})
    spawners = [server_spawner(settings, "alice", "alpha"), server_spawner(settings, "bob", "beta")]
    yield settings, spawners
    for spawner in spawners:
        remove_server(swarm_cluster, spawner, network)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker_containers(swarm_cluster: Swarm) -> set[str]:
    return set(swarm_cluster.node_docker("ps", "-q", "--no-trunc").split())


def test_swarm_enforcer_suspension_removes_the_projects_service_on_the_worker(
        two_servers, swarm_cluster: Swarm, services: Services):
    settings, (alpha, beta) = two_servers
    engine = SwarmServers(swarm_cluster.client, settings.home)
    # Another enclave on the same swarm (a demo beside production) with a server labelled
    # for a project and user of the same names: not this enclave's to stop.
    elsewhere = swarm_cluster.shared / f"other-enclave-{uuid.uuid4().hex[:6]}" / "workspaces" / "alpha"
    elsewhere.mkdir(parents=True)
    os.chown(elsewhere, 1000, 100)
    foreign = services.start("alpha", ["python", "-c", "import time; time.sleep(900)"],
                             [Mount.workspace(elsewhere)], labels={PROJECT_LABEL: "alpha", USER_LABEL: "alice"})

    async def started() -> dict[str, dict]:
        tasks = {}
        for spawner in (alpha, beta):
            await spawn(spawner)
            tasks[spawner.name] = await spawner.get_task()
        return tasks

    tasks = asyncio.run(started())
    containers = {name: t["Status"]["ContainerStatus"]["ContainerID"] for name, t in tasks.items()}
    for task in tasks.values():
        assert task["NodeID"] == swarm_cluster.node_id  # on the worker
    assert set(containers.values()) <= _worker_containers(swarm_cluster)
    # The engine's view names both servers; while both may run, a round stops nothing.
    seen = sorted((s.user, s.server) for s in asyncio.run(engine.running()))
    assert seen == [("alice", "alpha"), ("bob", "beta")]
    assert all(s.started is not None for s in asyncio.run(engine.running()))
    assert asyncio.run(enforce_once(settings, None, engine=engine)) == []

    with unit_of_work(settings) as session:
        admin = get_user(session, "root-admin")
        transition_project(session, admin, "alpha", ProjectAction.SUSPEND, reason="suspected breach")

    async def round_with_the_hub_down() -> None:
        # The hub's API does not answer (a closed port on loopback): the engine's pass runs
        # all the same, and the round then reports the hub's error.
        async with hub_client(f"http://127.0.0.1:{_closed_port()}/hub/api", "token") as client:
            await enforce_once(settings, client, trigger=Trigger.CHANGE, cause=["project.suspend"], engine=engine)

    with pytest.raises(httpx.HTTPError):
        asyncio.run(round_with_the_hub_down())
    assert not swarm_cluster.client.services.list(filters={"name": alpha.service_name})
    # The worker's engine removes the task's container once the service is gone.
    deadline = time.monotonic() + 180
    while containers["alpha"] in _worker_containers(swarm_cluster) and time.monotonic() < deadline:
        time.sleep(1)
    running = _worker_containers(swarm_cluster)
    assert containers["alpha"] not in running, "the suspended project's container still runs on the worker"
    # The other project's server is untouched, and a further round leaves it alone.
    assert containers["beta"] in running
    assert swarm_cluster.client.services.list(filters={"name": beta.service_name})
    assert foreign.container in running and swarm_cluster.client.services.list(filters={"name": foreign.service.name})
    assert asyncio.run(enforce_once(settings, None, engine=engine)) == []
    assert containers["beta"] in _worker_containers(swarm_cluster)
    # Audited as every enforced stop is, saying it went through the engine.
    with unit_of_work(settings) as session:
        stops = session.scalars(select(AuditEvent).where(AuditEvent.action == ServerAction.ENFORCE_STOP)).all()
        assert [(e.actor, e.target, e.details["reason"], e.details["via"], e.details["trigger"]) for e in stops] == [
            (ENFORCER, "server:alice/alpha", "project alpha is suspended", "engine", "change")]
