"""Enforcement: stop project servers that should no longer run.

A server must stop when its project is no longer active (suspended, closed ...), its
user is no longer a member or their training has expired, or a grant of the project
was revoked or expired after the server started (the server still mounts that view).
:func:`servers_to_stop` decides from the database alone; :func:`enforce_once` asks the
hub which servers run, stops those named, and audits each stop with what triggered the
round. On Docker Swarm (policies/containers.yaml engine: swarm) the same round then looks at
the engine too (:class:`SwarmServers`): every project server service, wherever its node, is
judged by the same :func:`servers_to_stop` and removed at once if it must stop, so a server
the hub no longer lists (the hub restarted, its node came back, the hub API failed) cannot
outlive a suspension, revocation or expiry. ``enclave hub enforce`` runs it as a hub-managed
service (see jupyterhub_config.py) that runs a round when a change that may stop servers
commits (:mod:`enclave.wakeup` pokes its socket), when the earliest grant or training
expiry comes, and every ``interval`` seconds as a safety net. After each round, workspaces of grants that ended are
scanned for copies of the view's files (:mod:`enclave.hub.revoked_copies`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple, Protocol

import httpx
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from enclave.audit import append_event
from enclave.clock import utcnow
from enclave.config import Settings
from enclave.db.models import Grant, Project, User
from enclave.db.session import unit_of_work
from enclave.enums import ContainerEngine, ProjectStatus
from enclave.errors import EnclaveError
from enclave.hub.access import ServerAction
from enclave.projects.retention import housekeeping
from enclave.hub.revoked_copies import report_revoked_copies
from enclave.incidents import suspension_reason
from enclave.permissions import is_member
from enclave.sandbox import SANDBOX_LABEL, load_container_policy
from enclave.wakeup import WakeUpListener

log = logging.getLogger("enclave.hub.enforce")
ENFORCER = "enclave-enforcer"


class RunningServer(NamedTuple):
    """A running named server as the hub reports it; ``started`` None means unknown
    (then every ended grant of the project counts: fail closed)."""

    user: str
    server: str
    started: dt.datetime | None = None


@dataclass(frozen=True)
class StopOrder:
    """A server to stop, and why (the reason goes to the audit log)."""

    user: str
    server: str
    reason: str


def servers_to_stop(
    session: Session, running: Sequence[RunningServer | tuple[str, str]], now: dt.datetime
) -> list[StopOrder]:
    """The running servers that must stop at ``now``, each with the reason why."""
    orders: list[StopOrder] = []
    for item in running:
        server = RunningServer(*item)
        reason = _why_stop(session, server, now)
        if reason is not None:
            orders.append(StopOrder(server.user, server.server, reason))
    return orders


def _why_stop(session: Session, server: RunningServer, now: dt.datetime) -> str | None:
    user = session.scalars(select(User).where(User.name == server.user)).one_or_none()
    if user is None:
        return "not an enclave user"
    suspended = suspension_reason(session, user)
    if suspended is not None:
        return suspended
    if not server.server:
        return "not a project server"
    project = session.scalars(select(Project).where(Project.slug == server.server)).one_or_none()
    if project is None:
        return f"no project named {server.server}"
    if project.status is not ProjectStatus.ACTIVE:
        return f"project {project.slug} is {project.status.value}"
    if not is_member(user, project):
        return f"{user.name} is no longer a member of {project.slug}"
    if not user.training_valid_on(now.date()):
        return f"{user.name}'s training expired on {user.training_expires}" if user.training_expires \
            else f"{user.name}'s training is not recorded"
    grants = session.scalars(select(Grant).where(Grant.project_id == project.id)).all()
    for grant in grants:
        ended = grant.revoked_at if grant.revoked_at is not None else (grant.expires_at if grant.expires_at <= now else None)
        if ended is None or ended > now:
            continue
        if server.started is None or ended >= server.started:
            what = "was revoked" if grant.revoked_at is not None else "has expired"
            return f"the grant of {grant.dataset_version.dataset.name} to {project.slug} {what}"
    return None


def _parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


async def running_servers(client: httpx.AsyncClient) -> list[RunningServer]:
    """Every running (or starting) named and default server the hub knows of."""
    response = await client.get("users", params={"state": "active"})
    response.raise_for_status()
    found = []
    for user in response.json():
        for name, server in (user.get("servers") or {}).items():
            found.append(RunningServer(user["name"], name, _parse_time(server.get("started"))))
    return found


async def stop_server(client: httpx.AsyncClient, user: str, server: str) -> None:
    """Ask the hub to stop one server (a server already gone counts as stopped)."""
    path = f"users/{user}/servers/{server}" if server else f"users/{user}/server"
    response = await client.delete(path)
    if response.status_code not in (202, 204, 404):
        response.raise_for_status()


class ServerControl(Protocol):
    """Where a round finds running servers and how it stops one: the hub, or the engine."""

    via: str  # recorded with each stop

    async def running(self) -> list[RunningServer]: ...

    async def stop(self, user: str, server: str) -> None: ...


class HubServers:
    """The servers the hub knows of, stopped through its REST API (which audits the stop
    in EnclaveSpawner.stop and removes the container or service)."""

    via = "hub"

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def running(self) -> list[RunningServer]:
        return await running_servers(self.client)

    async def stop(self, user: str, server: str) -> None:
        await stop_server(self.client, user, server)


class SwarmServers:
    """Project server services as the Swarm manager sees them, on any node: each labelled
    with its project and user by EnclaveSwarmSpawner, and this enclave's when it mounts
    something below ``home`` (several enclaves, a demo and tests, may share one swarm).
    Stopping removes the service; the node's engine then removes its container. Batch jobs
    (no user label) are not servers."""

    via = "engine"

    def __init__(self, client: Any, home: Path) -> None:
        self.client = client  # docker.DockerClient of a manager
        self.home = home

    def _services(self, user: str | None = None, server: str | None = None) -> list[Any]:
        from enclave.hub.spawner import PROJECT_LABEL, USER_LABEL

        labels = [SANDBOX_LABEL, PROJECT_LABEL, USER_LABEL]
        if user is not None:
            labels += [f"{USER_LABEL}={user}", f"{PROJECT_LABEL}={server}"]
        return [s for s in self.client.services.list(filters={"label": labels}) if self._ours(s)]

    def _ours(self, service: Any) -> bool:
        spec = service.attrs.get("Spec", {}).get("TaskTemplate", {}).get("ContainerSpec", {})
        sources = [PurePosixPath(m.get("Source") or "/") for m in spec.get("Mounts") or []]
        home = PurePosixPath(self.home)
        return any(source == home or home in source.parents for source in sources)

    def _running(self) -> list[RunningServer]:
        from enclave.hub.spawner import PROJECT_LABEL, USER_LABEL

        found = []
        for service in self._services():
            labels = service.attrs.get("Spec", {}).get("Labels") or {}
            found.append(RunningServer(labels[USER_LABEL], labels[PROJECT_LABEL],
                                       _parse_time(_micro(service.attrs.get("CreatedAt")))))
        return found

    def _stop(self, user: str, server: str) -> None:
        import docker.errors

        for service in self._services(user, server):
            try:
                service.remove()
            except docker.errors.NotFound:
                pass  # removed meanwhile (by the hub): stopped

    async def running(self) -> list[RunningServer]:
        return await asyncio.to_thread(_engine_call, self._running)

    async def stop(self, user: str, server: str) -> None:
        await asyncio.to_thread(_engine_call, self._stop, user, server)


def _engine_call(call: Any, *args: Any) -> Any:
    import docker.errors

    try:
        return call(*args)
    except docker.errors.DockerException as exc:
        raise EnclaveError(f"the Swarm manager's engine failed ({str(exc).splitlines()[0]}):"
                           " check that it runs and this host is a manager") from None


def _micro(value: str | None) -> str | None:
    """The engine's nanosecond time stamps cut to microseconds (what Python parses)."""
    if not value or "." not in value:
        return value
    head, _, rest = value.partition(".")
    digits = "".join(c for c in rest if c.isdigit())
    return f"{head}.{digits[:6]}{rest[len(digits):]}"


def engine_servers(settings: Settings) -> SwarmServers | None:
    """The engine's own view of the servers when the enclave runs on Swarm, else None
    (on one host the hub's DockerSpawner is the only one that starts servers)."""
    import docker

    policy = load_container_policy(settings.policies_dir / "containers.yaml")
    if policy.engine is not ContainerEngine.SWARM:
        return None
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException:
        raise EnclaveError("cannot reach the Docker engine of a Swarm manager: the enforcer runs on a manager;"
                           " start its engine and retry") from None
    return SwarmServers(client, settings.home)


class Trigger(StrEnum):
    """What made the enforcer run a round (recorded with each stop)."""

    CHANGE = "change"   # a committed change woke it (enclave.wakeup)
    EXPIRY = "expiry"   # the earliest grant or training expiry came
    POLL = "poll"       # the periodic safety net
    ONCE = "once"       # ``enclave hub enforce --once``


def next_expiry(session: Session, now: dt.datetime) -> dt.datetime | None:
    """The earliest moment after ``now`` at which a grant or someone's training ends."""
    grant_end = session.scalar(
        select(func.min(Grant.expires_at)).where(Grant.revoked_at.is_(None), Grant.expires_at > now))
    # Training is valid through its expiry date: it ends at the start of the next day (UTC).
    training = session.scalar(select(func.min(User.training_expires)).where(User.training_expires >= now.date()))
    candidates = [t if t.tzinfo else t.replace(tzinfo=dt.UTC) for t in (grant_end,) if t is not None]
    if training is not None:
        candidates.append(dt.datetime.combine(training + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC))
    return min(candidates) if candidates else None


async def enforce_once(settings: Settings, client: httpx.AsyncClient | None, now: dt.datetime | None = None,
                       trigger: Trigger = Trigger.ONCE, cause: Sequence[str] = (),
                       engine: ServerControl | None = None) -> list[StopOrder]:
    """List the hub's running servers, stop those that must stop, audit each stop with
    the ``trigger`` of the round (and, for a change, the audit actions that ``cause`` it).
    With ``engine`` (Swarm), the engine's servers are then judged and stopped the same way,
    even when the hub could not be asked (its error is raised after that pass); ``client``
    None asks the engine alone."""
    orders: list[StopOrder] = []
    failed: httpx.HTTPError | None = None
    if client is not None:
        try:
            orders += await _round(settings, HubServers(client), now, trigger, cause)
        except httpx.HTTPError as exc:
            if engine is None:
                raise
            failed = exc
    if engine is not None:
        orders += await _round(settings, engine, now, trigger, cause)
    if failed is not None:
        raise failed
    return orders


async def _round(settings: Settings, control: ServerControl, now: dt.datetime | None, trigger: Trigger,
                 cause: Sequence[str]) -> list[StopOrder]:
    running = await control.running()
    if not running:
        return []
    now = now or utcnow()
    with unit_of_work(settings) as session:
        orders = servers_to_stop(session, running, now)
    for order in orders:
        await control.stop(order.user, order.server)
        with unit_of_work(settings) as session:
            append_event(session, ENFORCER, ServerAction.ENFORCE_STOP, project=order.server[:40] or None,
                         target=f"server:{order.user}/{order.server}",
                         details={"reason": order.reason, "trigger": trigger.value, "cause": list(cause),
                                  "via": control.via})
        log.warning("stopped %s/%s via the %s (%s): %s", order.user, order.server, control.via, trigger.value,
                    order.reason)
    return orders


def hub_client(api_url: str, token: str) -> httpx.AsyncClient:
    """A client of the hub's REST API (``api_url`` like http://127.0.0.1:8000/hub/api)."""
    return httpx.AsyncClient(base_url=api_url.rstrip("/") + "/", headers={"Authorization": f"token {token}"},
                             timeout=30, trust_env=False)


async def enforce_forever(settings: Settings, api_url: str, token: str, interval: float) -> None:
    """Run :func:`enforce_once` when woken by a committed change, at the next expiry, and
    every ``interval`` seconds, until SIGINT or SIGTERM; a failed round is logged and
    retried at the next wake-up."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    # Explicit handlers: the hub stops its services with SIGINT, which a process started
    # in the background may have inherited as ignored.
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    engine = engine_servers(settings)  # on Swarm, the engine's own pass after the hub's
    listener = WakeUpListener(settings)
    listener.attach(loop)
    trigger, cause = Trigger.POLL, []
    try:
        async with hub_client(api_url, token) as client:
            while not stopping.is_set():
                try:
                    await enforce_once(settings, client, trigger=trigger, cause=cause, engine=engine)
                except Exception as exc:  # noqa: BLE001 - keep enforcing; the next round retries
                    log.error("enforcement round failed: %r", exc)
                try:
                    await asyncio.to_thread(report_revoked_copies, settings, ENFORCER)
                except Exception as exc:  # noqa: BLE001 - retried after the next round
                    log.error("scan for copies of ended views failed: %s", exc)
                try:  # expired views, closed projects' archives, due destructions (no cron needed)
                    await asyncio.to_thread(housekeeping, settings)
                except Exception as exc:  # noqa: BLE001 - retried after the next round
                    log.error("data retention pass failed: %s", exc)
                trigger, cause = await _wait(settings, listener, stopping, interval)
    finally:
        listener.close(loop)
    log.info("enforcer stopped")


async def _wait(settings: Settings, listener: WakeUpListener, stopping: asyncio.Event,
                interval: float) -> tuple[Trigger, list[str]]:
    """Sleep until a wake-up, the next expiry or ``interval`` seconds; say which it was."""
    now = utcnow()
    try:
        with unit_of_work(settings) as session:
            expiry = next_expiry(session, now)
    except Exception as exc:  # noqa: BLE001 - the poll still comes
        log.error("cannot read the next expiry: %s", exc)
        expiry = None
    # A moment after the expiry, so that it has passed when the round looks.
    until_expiry = (expiry - now).total_seconds() + 0.5 if expiry is not None else None
    timeout = min(interval, until_expiry) if until_expiry is not None else interval
    if listener.woken.is_set():
        return Trigger.CHANGE, listener.take()
    woken = asyncio.ensure_future(listener.woken.wait())
    stop = asyncio.ensure_future(stopping.wait())
    try:
        await asyncio.wait({woken, stop}, timeout=max(timeout, 0.0), return_when=asyncio.FIRST_COMPLETED)
    finally:
        woken.cancel()
        stop.cancel()
    if listener.woken.is_set():
        return Trigger.CHANGE, listener.take()
    if until_expiry is not None and until_expiry <= interval:
        return Trigger.EXPIRY, []
    return Trigger.POLL, []
