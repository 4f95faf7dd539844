"""A server that ends on its own, through the real hub: its container killed, or removed
behind the hub's back. JupyterHub polls each server (every POLL_INTERVAL seconds here) and
only forgets one whose poll says it ended; the enclave's poll ends it there, once: the
container is removed and the stop audited as the hub's, with the reason, and the person can
start the server again (a fresh sandbox). Polls that race each other, and a stop after
them, still give one stop (the spawner driven directly, on the real engine)."""

from __future__ import annotations

import asyncio
import subprocess
import time
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from enclave.db.models import AuditEvent
from enclave.db.session import unit_of_work
from enclave.hub.access import ServerAction
from enclave.users import get_user
from tests.conftest import Factory

from .conftest import POLL_INTERVAL, PREFIX, Hub

USER = "dora"


@pytest.fixture(scope="module")
def world(hub: Hub) -> Hub:
    """dora's active projects, one per test (no other test's servers are touched)."""
    with unit_of_work(hub.settings) as session:
        f = Factory(session, hub.settings)
        f._admin = get_user(session, "root-admin")
        f.project("ends", USER, "active")
        f.project("gone", USER, "active")
        f.project("race", USER, "active")
    return hub


def _start(hub: Hub, slug: str, client) -> str:
    """Start dora's server of ``slug``; the id of its running container."""
    response = hub.spawn(USER, slug)
    assert response.status_code in (201, 202), response.text
    hub.wait_ready(USER, slug)
    container = client.containers.get(hub.container_name(USER, slug))
    assert container.status == "running"
    return container.id


def _wait_forgotten(hub: Hub, slug: str) -> None:
    """Until the hub no longer lists the server: its own poll noticed the end (a generous
    bound for a loaded machine; the poll runs every POLL_INTERVAL seconds)."""
    deadline = time.monotonic() + 60 * POLL_INTERVAL
    while time.monotonic() < deadline:
        if slug not in hub.api.get(f"users/{USER}").json().get("servers", {}):
            return
        time.sleep(0.5)
    raise AssertionError(f"the hub still lists {USER}/{slug} after its container ended")


def _events(hub: Hub, action: str, slug: str) -> list[AuditEvent]:
    with unit_of_work(hub.settings) as session:
        return list(session.scalars(select(AuditEvent).where(
            AuditEvent.action == action, AuditEvent.target == f"server:{USER}/{slug}").order_by(AuditEvent.id)))


def _containers(hub: Hub, slug: str, client) -> list:
    name = hub.container_name(USER, slug)
    return [c for c in client.containers.list(all=True, filters={"name": name}) if c.name == name]


def test_hub_server_whose_container_is_killed_is_removed_and_its_stop_audited_once(world: Hub, client):
    first = _start(world, "ends", client)
    assert _events(world, ServerAction.STOP, "ends") == []
    subprocess.run(["docker", "kill", first], check=True, capture_output=True)
    _wait_forgotten(world, "ends")
    # Nothing is left behind: the dead container is removed, not kept for the next start.
    assert _containers(world, "ends", client) == []
    # One stop, the hub's own act, saying why. The hub polled again as it forgot the server
    # (its stop callback and its stop each poll): no second event.
    time.sleep(3 * POLL_INTERVAL)
    stops = _events(world, ServerAction.STOP, "ends")
    assert [(e.actor, e.details.get("by"), e.details.get("reason")) for e in stops] == [
        ("jupyterhub", "hub", "the server's container was ended by SIGKILL (exit code 137)")]
    assert stops[0].project == "ends"
    # dora starts it again: a fresh container, audited like any start, and stopped as usual.
    second = _start(world, "ends", client)
    assert second != first
    starts = _events(world, ServerAction.SPAWN, "ends")
    assert len(starts) == 2 and starts[-1].id > stops[0].id
    world.stop(USER, "ends")
    _wait_forgotten(world, "ends")
    assert _containers(world, "ends", client) == []
    stops = _events(world, ServerAction.STOP, "ends")
    assert [(e.actor, e.details.get("by")) for e in stops] == [("jupyterhub", "hub"), ("test-admin", "service")]
    assert "reason" not in stops[-1].details


def test_hub_server_whose_container_is_removed_behind_its_back_is_forgotten_audited_once(world: Hub, client):
    first = _start(world, "gone", client)
    subprocess.run(["docker", "rm", "--force", first], check=True, capture_output=True)
    _wait_forgotten(world, "gone")
    time.sleep(3 * POLL_INTERVAL)
    stops = _events(world, ServerAction.STOP, "gone")
    assert [(e.actor, e.details.get("by"), e.details.get("reason")) for e in stops] == [
        ("jupyterhub", "hub", "the server's container is gone from the engine")]
    second = _start(world, "gone", client)
    assert second != first
    world.stop(USER, "gone")
    _wait_forgotten(world, "gone")
    assert _containers(world, "gone", client) == []
    assert len(_events(world, ServerAction.STOP, "gone")) == 2


def _spawner(hub: Hub, slug: str):
    """dora's spawner of ``slug`` built as the hub builds it (JupyterHub's own Hub, Server
    and unsaved ORM spawner), with no hub process behind it: its command only waits."""
    from jupyterhub import orm
    from jupyterhub.objects import Hub as HubObject
    from jupyterhub.objects import Server

    from enclave.hub.spawner import EnclaveSpawner

    spawner = EnclaveSpawner(
        user=SimpleNamespace(name=USER, url=f"/user/{USER}/", id=1), orm_spawner=orm.Spawner(name=slug),
        hub=HubObject(ip="127.0.0.1", port=hub.gateway_port), enclave_home=str(hub.settings.home),
        prefix=f"{PREFIX}direct", meter_url="http://127.0.0.1:9", meter_token="t", api_token="token",
        oauth_client_id=f"jupyterhub-user-{USER}-{slug}", cmd=["python", "-c", "import time; time.sleep(900)"])
    spawner.server = Server(ip="0.0.0.0", port=8888, base_url=f"/user/{USER}/{slug}/")
    return spawner


def test_hub_server_end_racing_polls_and_a_later_stop_audit_it_once(world: Hub, client, monkeypatch):
    from dockerspawner import DockerSpawner

    monkeypatch.setenv("ENCLAVE_POLICIES", str(world.settings.policies_dir))
    monkeypatch.delenv("ENCLAVE_DB_URL", raising=False)
    spawner = _spawner(world, "race")

    async def scenario() -> list:
        spawner._enclave_policy, spawner._enclave_mounts = await asyncio.to_thread(
            spawner._check_and_prepare, "race", None)
        await DockerSpawner.start(spawner)  # EnclaveSpawner.start without the meter
        assert await spawner.poll() is None
        subprocess.run(["docker", "kill", spawner.object_id], check=True, capture_output=True)
        statuses = await asyncio.gather(*(spawner.poll() for _ in range(5)))
        statuses.append(await spawner.poll())
        await spawner.stop()  # a stop after the end (JupyterHub's, or anybody's) finds nothing to end
        return statuses

    try:
        statuses = asyncio.run(scenario())
        left = [c.name for c in client.containers.list(all=True, filters={"name": f"{PREFIX}direct"})]
    finally:
        for container in client.containers.list(all=True, filters={"name": f"{PREFIX}direct"}):
            container.remove(force=True)
    # Every poll says the server ended; the first to see it ended it.
    assert all(status is not None for status in statuses), statuses
    assert "SIGKILL (exit code 137)" in statuses[0]
    assert not spawner.object_id
    assert left == []
    stops = _events(world, ServerAction.STOP, "race")
    assert [(e.actor, e.details.get("by"), e.details.get("reason")) for e in stops] == [
        ("jupyterhub", "hub", "the server's container was ended by SIGKILL (exit code 137)")]
