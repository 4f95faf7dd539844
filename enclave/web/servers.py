"""Project servers from the researcher console: their state, start and stop, through the
hub's REST API.

The hub owns servers; the console only asks it. Before asking, the enclave checks what the
spawner will check again (membership, an active project, current training, live grants:
``enclave.hub.access.check_can_spawn``) so a refusal is one line in the page, and records
the request in the audit log. The user is always the signed-in person: nobody can start or
stop another person's server from here. States are read with the service's own token
(``read:servers``); start and stop are sent with the signed-in person's own sign-in token,
whose hub scope ``servers!user`` reaches that person's servers and nobody else's
(``enclave.web.service.hub_service``), so the service itself holds no scope that could start or
stop anybody's server.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import quote

from fastapi import Request
from sqlalchemy.orm import Session

from enclave.audit import append_event
from enclave.clock import utcnow
from enclave.db.models import User
from enclave.errors import Conflict, PermissionDenied
from enclave.hub.access import check_can_spawn
from enclave.permissions import check_member
from enclave.projects.service import get_project


class ServerState(StrEnum):
    RUNNING = "running"
    STARTING = "starting"
    STOPPING = "stopping"
    STOPPED = "stopped"
    UNKNOWN = "unknown"  # the hub could not be asked


PENDING = frozenset({ServerState.STARTING, ServerState.STOPPING})


class ServerChange(StrEnum):
    """What the console may ask the hub to do with one of the person's servers."""

    START = "start"
    STOP = "stop"


class ServerEvent(StrEnum):
    START_REQUESTED = "web.server_start_requested"
    STOP_REQUESTED = "web.server_stop_requested"


class HubRefused(Conflict):
    """The hub did not do what was asked (its one-line reason)."""


@dataclass(frozen=True)
class Server:
    """One named server of the signed-in person, as the hub reports it."""

    state: ServerState
    url: str | None = None  # where JupyterLab is, while it runs


def _state_of(model: Mapping[str, Any]) -> Server:
    pending = model.get("pending")
    if pending == "spawn":
        return Server(ServerState.STARTING)
    if pending == "stop":
        return Server(ServerState.STOPPING)
    if model.get("ready"):
        return Server(ServerState.RUNNING, model.get("url"))
    return Server(ServerState.STARTING if model.get("started") else ServerState.STOPPED)


class HubServers:
    """The hub's REST API: reads with the service's own token, changes with the person's."""

    def __init__(self, api_url: str, token: str, timeout: float = 15.0) -> None:
        self.api_url = api_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> HubServers | None:
        """The API the hub gives a managed service (JUPYTERHUB_API_URL, JUPYTERHUB_API_TOKEN); None outside the hub."""
        url, token = environ.get("JUPYTERHUB_API_URL"), environ.get("JUPYTERHUB_API_TOKEN")
        return cls(url, token) if url and token else None

    def _url(self, user: str, server: str | None = None) -> str:
        path = f"{self.api_url}/users/{quote(user, safe='')}"
        return path if server is None else f"{path}/servers/{quote(server, safe='')}"

    async def _call(self, method: str, url: str, token: str | None = None) -> Any:
        import httpx

        async with httpx.AsyncClient(timeout=self.timeout, trust_env=False) as client:
            return await client.request(method, url, headers={"Authorization": f"token {token or self.token}"})

    async def servers(self, user: str) -> dict[str, Server] | None:
        """The person's named servers by project (absent: stopped); None when the hub cannot be asked."""
        import httpx

        try:
            reply = await self._call("GET", self._url(user))
            if reply.status_code == 404:
                return {}  # the hub has not seen this person yet: nothing runs
            reply.raise_for_status()
            models = reply.json().get("servers") or {}
            return {name: _state_of(model) for name, model in models.items() if name}
        except (httpx.HTTPError, ValueError, AttributeError, TypeError):
            return None

    async def start(self, user: str, server: str, token: str) -> ServerState:
        """Ask the hub, with ``user``'s own token, to start the server; the state it is in afterwards."""
        reply = await self._change("POST", user, server, token)
        if reply.status_code == 400 and "already" in _message(reply):
            return ServerState.RUNNING
        self._raise_unless_ok(reply, "start")
        return ServerState.RUNNING if reply.status_code == 201 else ServerState.STARTING

    async def stop(self, user: str, server: str, token: str) -> ServerState:
        """Ask the hub, with ``user``'s own token, to stop the server; the state it is in afterwards."""
        reply = await self._change("DELETE", user, server, token)
        if reply.status_code in (400, 404) and "not running" in _message(reply):
            return ServerState.STOPPED
        self._raise_unless_ok(reply, "stop")
        return ServerState.STOPPED if reply.status_code == 204 else ServerState.STOPPING

    async def _change(self, method: str, user: str, server: str, token: str) -> Any:
        import httpx

        if not token:
            raise HubRefused("this sign-in cannot start or stop servers: sign out and in again")
        try:
            return await self._call(method, self._url(user, server), token)
        except httpx.HTTPError:
            raise HubRefused("the hub cannot be reached: try again in a minute") from None

    @staticmethod
    def _raise_unless_ok(reply: Any, doing: str) -> None:
        if reply.status_code in (201, 202, 204):
            return
        if reply.status_code == 403 and not _message(reply):
            raise HubRefused(f"the hub did not let this sign-in {doing} your server: sign out and in again "
                             "(the sign-in must carry the hub scope 'servers!user')")
        reason = _message(reply).splitlines()[0] if _message(reply) else f"the hub answered {reply.status_code}"
        raise HubRefused(f"the server could not {doing}: {reason}")


def _message(reply: Any) -> str:
    try:
        body = reply.json()
    except ValueError:
        return ""
    return str(body.get("message") or "") if isinstance(body, dict) else ""


def server_control(request: Request) -> HubServers | None:
    """The hub API the app was given (tests set ``app.state.servers``), else the managed service's."""
    given = getattr(request.app.state, "servers", None)
    return given if given is not None else HubServers.from_env()


# --- what a person may do, recorded before the hub is asked ---------------------------------

def request_server_start(session: Session, actor: User, slug: str) -> None:
    """Check that ``actor`` may open project ``slug``'s server now (as the spawner will) and
    record the request; the caller then asks the hub."""
    _, project = check_can_spawn(session, actor.name, slug, utcnow())
    append_event(session, actor, ServerEvent.START_REQUESTED, project=project, target=f"server:{actor.name}/{slug}")


def request_server_stop(session: Session, actor: User, slug: str) -> None:
    """Record that ``actor`` stops their own server of project ``slug`` (members only)."""
    project = get_project(session, slug)
    try:
        check_member(actor, project, f"stop a server of project {slug}")
    except PermissionDenied:
        raise PermissionDenied(f"{actor.name} is not a member of a project named {slug!r}") from None
    append_event(session, actor, ServerEvent.STOP_REQUESTED, project=project, target=f"server:{actor.name}/{slug}")

