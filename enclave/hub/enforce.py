"""Enforcement: stop project servers that should no longer run.

A server must stop when its project is no longer active (suspended, closed ...), its
user is no longer a member or their training has expired, or a grant of the project
was revoked or expired after the server started (the server still mounts that view).
:func:`servers_to_stop` decides from the database alone; :func:`enforce_once` asks the
hub which servers run, stops those named, and audits each stop with what triggered the
round. ``enclave hub enforce`` runs it as a hub-managed service (see jupyterhub_config.py)
that runs a round when a change that may stop servers commits (:mod:`enclave.wakeup`
pokes its socket), when the earliest grant or training expiry comes, and every
``interval`` seconds as a safety net. After each round, workspaces of grants that ended are
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
from typing import NamedTuple

import httpx
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from enclave.audit import append_event
from enclave.clock import utcnow
from enclave.config import Settings
from enclave.db.models import Grant, Project, User
from enclave.db.session import unit_of_work
from enclave.enums import ProjectStatus
from enclave.hub.access import ServerAction
from enclave.projects.retention import housekeeping
from enclave.hub.revoked_copies import report_revoked_copies
from enclave.incidents import suspension_reason
from enclave.permissions import is_member
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


async def enforce_once(settings: Settings, client: httpx.AsyncClient, now: dt.datetime | None = None,
                       trigger: Trigger = Trigger.ONCE, cause: Sequence[str] = ()) -> list[StopOrder]:
    """List the hub's running servers, stop those that must stop, audit each stop with
    the ``trigger`` of the round (and, for a change, the audit actions that ``cause`` it)."""
    running = await running_servers(client)
    if not running:
        return []
    now = now or utcnow()
    with unit_of_work(settings) as session:
        orders = servers_to_stop(session, running, now)
    for order in orders:
        await stop_server(client, order.user, order.server)
        with unit_of_work(settings) as session:
            append_event(session, ENFORCER, ServerAction.ENFORCE_STOP, project=order.server[:40] or None,
                         target=f"server:{order.user}/{order.server}",
                         details={"reason": order.reason, "trigger": trigger.value, "cause": list(cause)})
        log.warning("stopped %s/%s (%s): %s", order.user, order.server, trigger.value, order.reason)
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
    listener = WakeUpListener(settings)
    listener.attach(loop)
    trigger, cause = Trigger.POLL, []
    try:
        async with hub_client(api_url, token) as client:
            while not stopping.is_set():
                try:
                    await enforce_once(settings, client, trigger=trigger, cause=cause)
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
