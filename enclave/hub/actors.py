"""Who asked the hub to start or stop a server: the real actor for the audit log.

JupyterHub hands a spawner the request that started it (``spawner.handler``), but not the
one that stops it. Before it stops a server it does refresh the owner's sign-in
(``Authenticator.refresh_pre_stop``), passing the handler of the request; the
authenticator calls :func:`remember` there, which keeps the requester in a context
variable of that request's task, and the spawner's ``stop`` reads it with
:func:`current`. A stop with no request behind it (the hub shutting down) is the hub's.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from enclave.errors import PermissionDenied


@dataclass(frozen=True)
class Requester:
    """A person (``kind`` "user"), a hub service (the enforcer, the idle culler ...) or the hub."""

    name: str
    kind: str

    @property
    def is_user(self) -> bool:
        return self.kind == "user"


HUB = Requester("jupyterhub", "hub")

_current: ContextVar[Requester | None] = ContextVar("enclave_hub_requester", default=None)


def requester_of(handler: Any) -> Requester | None:
    """The user or service a hub request handler acts for, if known."""
    # Set by the hub while it authenticates the request, before any refresh or spawn.
    entity = getattr(handler, "_jupyterhub_user", None) if handler is not None else None
    name = getattr(entity, "name", None)
    if not name:
        return None
    return Requester(str(name), "service" if getattr(entity, "kind", "user") == "service" else "user")


def remember(handler: Any) -> None:
    """Keep the requester of ``handler`` for the rest of this request's task."""
    found = requester_of(handler)
    if found is not None:
        _current.set(found)


def act_for(requester: Requester) -> None:
    """The rest of this task acts for ``requester`` (a stop the hub decides on its own)."""
    _current.set(requester)


def current() -> Requester | None:
    """The requester :func:`remember` kept in this task, if any."""
    return _current.get()


def check_may_start(owner: str, requester: Requester | None) -> None:
    """Only the owner starts their server (a hub service may, e.g. a site's own tooling:
    it is audited under its name). Another person never does, admins included."""
    if requester is not None and requester.is_user and requester.name != owner:
        raise PermissionDenied(
            f"{requester.name} may not start {owner}'s server: only {owner} may; "
            "an admin opens another person's server only through break-glass"
        )
