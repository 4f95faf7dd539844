"""The meter's service functions: limits of a server, audit of content reads and uploads,
and what happens when a server passes its limit. Database only (no HTTP here)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from enclave.audit import append_event
from enclave.config import Settings
from enclave.db.models import Incident, Project
from enclave.enums import IncidentKind
from enclave.errors import NotFound, PolicyError
from enclave.hub.browser_policy import MeterLimits, load_browser_policy
from enclave.incidents import open_incident
from enclave.users import get_user

METER = "enclave-meter"


class MeterAction(StrEnum):
    CONTENT_READ = "meter.content_read"
    CONTENT_UPLOAD = "meter.content_upload"
    SERVER_STOP = "hub.server_enforced_stop"


@dataclass(frozen=True)
class ServerLimits:
    """What the meter applies to one project server."""

    user: str
    server: str
    project: str
    tier: str
    limits: MeterLimits


@dataclass(frozen=True)
class ContentEvent:
    """One content read or upload seen by the meter."""

    action: MeterAction
    user: str
    server: str
    method: str
    path: str
    bytes: int
    status: int


def server_limits(session: Session, settings: Settings, user: str, server: str) -> ServerLimits:
    """The meter limits of ``user``'s server ``server`` (the project's tier in
    ``browser.yaml``). Unknown user, project or tier raises: no limit, no route."""
    get_user(session, user)
    project = session.scalars(select(Project).where(Project.slug == server)).one_or_none()
    if project is None:
        raise NotFound(f"no project named {server!r}: a metered server is a project server")
    tier = load_browser_policy(settings.policies_dir).for_tier(project.tier)
    return ServerLimits(user, server, project.slug, project.tier, tier.meter)


def record_content_events(session: Session, events: Iterable[ContentEvent]) -> int:
    """Append one audit event per content read or upload (actor: the server's owner,
    the person the server lets in); returns how many."""
    count = 0
    for item in events:
        append_event(session, item.user, item.action, project=item.server[:40] or None,
                     target=f"server:{item.user}/{item.server}",
                     details={"path": item.path, "bytes": item.bytes, "status": item.status,
                              "method": item.method, "recorded_by": METER})
        count += 1
    return count


def report_over_limit(
    session: Session, settings: Settings, limits: ServerLimits, sent_in_window: int, refused_bytes: int
) -> Incident:
    """Open the incident for a server that tried to pass its limit (suspending and
    disabling as the tier's policy says), admins notified after commit."""
    meter = limits.limits
    if meter.max_bytes_per_window < 1:
        raise PolicyError("max_bytes_per_window must be positive")
    return open_incident(
        session, METER, IncidentKind.EGRESS_VOLUME, user=limits.user, project=limits.project,
        server=limits.server, suspend_user=meter.suspend_user,
        disable_after_incidents=meter.disable_after_incidents or None, settings=settings,
        details={"sent_in_window": sent_in_window, "refused_bytes": refused_bytes,
                 "max_bytes_per_window": meter.max_bytes_per_window, "window_seconds": meter.window_seconds,
                 "tier": limits.tier},
    )


def audit_stop(session: Session, user: str, server: str, reason: str) -> None:
    """The meter stopped a server (through the hub's API)."""
    append_event(session, METER, MeterAction.SERVER_STOP, project=server[:40] or None,
                 target=f"server:{user}/{server}", details={"reason": reason})
