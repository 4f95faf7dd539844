"""Break-glass: an admin's time-limited, audited access to one researcher's server.

By default nobody reaches into another person's notebook server: the hub grants enclave
admins no server scopes at all (``enclave.hub.auth.hub_roles``). Where a tier's policy
allows it (``break_glass_minutes`` in ``policies/tiers.yaml``), an admin may open a
window with a written reason. While the window is open, the admin's hub roles include
one role whose only scope is ``access:servers!server=<owner>/<project>``; the hub drops
it at the admin's next request after the window ends or is closed (the authenticator
refreshes roles every few seconds). Opening and closing are audited under the admin's
name, and the project's members see every window on their project page.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from enclave.audit import append_event
from enclave.db.models import BreakGlass, Project, User
from enclave.errors import InvalidInput, NotFound, PermissionDenied
from enclave.permissions import check_admin, is_member
from enclave.projects.service import get_project
from enclave.projects.tiers import TierPolicy
from enclave.users import get_user

MIN_REASON_CHARS = 20
ROLE_PREFIX = "enclave-break-glass-"


class BreakGlassAction(StrEnum):
    OPEN = "hub.break_glass_open"
    CLOSE = "hub.break_glass_close"


def parse_server(server: str) -> tuple[str, str]:
    """``USER/PROJECT`` -> (user, project)."""
    owner, sep, slug = (server or "").strip().partition("/")
    if not sep or not owner or not slug or "/" in slug:
        raise InvalidInput(f"{server!r} is not a server: write it as USER/PROJECT, e.g. ada/cardio")
    return owner, slug


def allowed_minutes(tiers: TierPolicy, project: Project) -> int:
    """How long the policy lets a window on ``project``'s servers stay open (0: never;
    an unknown tier: never, fail closed)."""
    tier = tiers.tiers.get(project.tier)
    return tier.break_glass_minutes if tier is not None else 0


def open_break_glass(
    session: Session, actor: User, tiers: TierPolicy, server: str, reason: str, now: dt.datetime,
    minutes: int | None = None,
) -> BreakGlass:
    """Open a window for ``actor`` (an admin) into ``server`` (``USER/PROJECT``) for
    ``minutes`` (default and limit: the tier's ``break_glass_minutes``)."""
    check_admin(actor, "open another person's server")
    owner_name, slug = parse_server(server)
    project = get_project(session, slug)
    limit = allowed_minutes(tiers, project)
    if limit == 0:
        raise PermissionDenied(
            f"break-glass is not enabled for tier {project.tier} of project {slug}: "
            f"policies/tiers.yaml tiers.{project.tier}.break_glass_minutes is 0"
        )
    owner = get_user(session, owner_name)
    if owner.id == actor.id:
        raise InvalidInput("this is your own server: open it as usual, break-glass is for other people's")
    if not is_member(owner, project):
        raise NotFound(f"{owner_name} is not a member of project {slug}, so there is no such server")
    reason = " ".join((reason or "").split())
    if len(reason) < MIN_REASON_CHARS:
        raise InvalidInput(
            f"give a written reason of at least {MIN_REASON_CHARS} characters with --reason: "
            "the project's members will read it"
        )
    minutes = limit if minutes is None else minutes
    if not 1 <= minutes <= limit:
        raise InvalidInput(f"--minutes must be between 1 and {limit} for tier {project.tier}")
    window = BreakGlass(actor_id=actor.id, owner_id=owner.id, project_id=project.id, reason=reason,
                        opened_at=now, expires_at=now + dt.timedelta(minutes=minutes))
    session.add(window)
    session.flush()
    append_event(session, actor, BreakGlassAction.OPEN, project=project, target=f"server:{owner.name}/{slug}",
                 details={"break_glass": window.id, "reason": reason, "until": window.expires_at.isoformat()})
    return window


def close_break_glass(session: Session, actor: User, window_id: int, now: dt.datetime) -> BreakGlass:
    """End a window before its time (an admin)."""
    check_admin(actor, "close a break-glass window")
    window = session.get(BreakGlass, window_id)
    if window is None:
        raise NotFound(f"no break-glass window {window_id}: see 'enclave hub break-glass list'")
    if not is_open(window, now):
        raise InvalidInput(f"break-glass window {window_id} is already closed")
    window.closed_at = now
    append_event(session, actor, BreakGlassAction.CLOSE, project=window.project,
                 target=f"server:{window.owner.name}/{window.project.slug}", details={"break_glass": window.id})
    return window


def is_open(window: BreakGlass, now: dt.datetime) -> bool:
    return window.closed_at is None and window.opened_at <= now < window.expires_at


def open_windows_of(session: Session, actor: User, now: dt.datetime) -> list[BreakGlass]:
    """The windows ``actor`` holds open at ``now`` (what the hub turns into roles)."""
    rows = session.scalars(
        select(BreakGlass).where(BreakGlass.actor_id == actor.id, BreakGlass.closed_at.is_(None),
                                 BreakGlass.opened_at <= now, BreakGlass.expires_at > now)
    ).all()
    return list(rows)


def windows(session: Session, project: Project | None = None) -> list[BreakGlass]:
    """Every window (of one project), newest first: what members and admins are shown."""
    query = select(BreakGlass).order_by(BreakGlass.id.desc())
    if project is not None:
        query = query.where(BreakGlass.project_id == project.id)
    return list(session.scalars(query).all())


def hub_role(window: BreakGlass) -> dict[str, Any]:
    """The hub role of one open window: access to that one server and nothing else."""
    server = f"{window.owner.name}/{window.project.slug}"
    return {
        "name": f"{ROLE_PREFIX}{window.id}",
        "description": f"break-glass into {server} until {window.expires_at:%Y-%m-%d %H:%M} UTC (managed by the enclave)",
        "scopes": [f"access:servers!server={server}"],
    }


def describe(window: BreakGlass) -> str:
    """One line for the project's members: who opened whose server, when, and why."""
    return (f"admin {window.actor.name} opened {window.owner.name}'s server at "
            f"{window.opened_at:%Y-%m-%d %H:%M} UTC (until {window.expires_at:%H:%M} UTC): {window.reason}")
