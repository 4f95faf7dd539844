"""Security incidents: opened by the egress meter (and the enforcer), cleared by admins.

An incident names one person and, usually, one of their servers. When its policy says
so, an open incident *suspends* the person: while it is open they can neither sign in
nor start a server (:func:`check_not_suspended`, called by the authenticator and the
spawner). After the policy's number of incidents the account is *disabled* until an
admin enables it again. Every open, clear, disable and enable writes an audit event in
the same transaction, and admins are told through the egress policy's notifiers once
that transaction commits.
"""

from __future__ import annotations

import json
import logging
import smtplib
from email.message import EmailMessage
from enum import StrEnum
from typing import Any

import datetime as dt

import httpx
from pydantic import BaseModel
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from enclave.audit import append_event
from enclave.clock import utcnow
from enclave.config import Settings
from enclave.db.models import Incident, Project, User
from enclave.enums import IncidentKind, IncidentStatus
from enclave.errors import InvalidInput, InvalidTransition, NotFound, PermissionDenied
from enclave.permissions import check_admin
from enclave.users import get_user

log = logging.getLogger(__name__)

MAX_NOTE_CHARS = 2000
_PENDING = "enclave.incidents.notes"


class IncidentAction(StrEnum):
    OPEN = "incident.open"
    CLEAR = "incident.clear"
    ACCOUNT_DISABLE = "user.disable"
    ACCOUNT_ENABLE = "user.enable"


class IncidentOut(BaseModel):
    """What the CLI's --json, the web API and the dashboard show of an incident."""

    id: int
    kind: IncidentKind
    status: IncidentStatus
    user: str
    project: str | None
    server: str
    suspends: bool
    details: dict[str, Any]
    opened_by: str
    opened_at: dt.datetime
    cleared_at: dt.datetime | None
    cleared_by: str | None
    clear_note: str | None

    @classmethod
    def of(cls, incident: Incident) -> IncidentOut:
        return cls(id=incident.id, kind=incident.kind, status=incident.status, user=incident.user.name,
                   project=incident.project.slug if incident.project else None, server=incident.server,
                   suspends=incident.suspends, details=incident.details_json, opened_by=incident.opened_by,
                   opened_at=incident.opened_at, cleared_at=incident.cleared_at,
                   cleared_by=incident.cleared_by.name if incident.cleared_by else None,
                   clear_note=incident.clear_note)


def open_incident(
    session: Session,
    actor: User | str,
    kind: IncidentKind,
    *,
    user: User | str,
    project: Project | str | None,
    server: str,
    details: dict[str, Any],
    suspend_user: bool = False,
    disable_after_incidents: int | None = None,
    settings: Settings | None = None,
) -> Incident:
    """Record an incident about ``user`` (and ``server`` of ``project``), audited.

    ``suspend_user``: the person is refused sign-in and servers until an admin clears
    it. ``disable_after_incidents``: when the person's incidents (this one included)
    reach that number, the account is disabled as well. With ``settings``, admins are
    notified after commit."""
    person = user if isinstance(user, User) else get_user(session, user)
    if isinstance(project, str):
        project = session.scalars(select(Project).where(Project.slug == project)).one_or_none()
    actor_name = actor.name if isinstance(actor, User) else str(actor)
    incident = Incident(
        kind=kind, status=IncidentStatus.OPEN, user=person, project=project, server=server[:64],
        suspends=suspend_user, details_json=json.loads(json.dumps(details, default=str)),
        opened_by=actor_name[:64], opened_at=utcnow(),
    )
    session.add(incident)
    session.flush()
    append_event(session, actor, IncidentAction.OPEN, project=project, target=f"incident:{incident.id}",
                 details={"kind": kind, "user": person.name, "server": server, "suspends": suspend_user,
                          **incident.details_json})
    disabled = False
    if disable_after_incidents is not None and person.disabled_at is None:
        count = session.scalar(select(func.count(Incident.id)).where(Incident.user_id == person.id)) or 0
        if count >= disable_after_incidents:
            person.disabled_at = utcnow()
            person.disabled_reason = f"{count} incidents (the policy disables an account after {disable_after_incidents})"
            append_event(session, actor, IncidentAction.ACCOUNT_DISABLE, target=f"user:{person.name}",
                         details={"reason": person.disabled_reason, "incident": incident.id})
            disabled = True
    if settings is not None:
        _queue_note(session, settings, {
            "event": "incident", "incident": incident.id, "kind": str(kind), "user": person.name,
            "project": project.slug if project is not None else None, "server": server,
            "suspends": suspend_user, "account_disabled": disabled, "at": incident.opened_at.isoformat(),
            "details": incident.details_json,
        })
    return incident


def get_incident(session: Session, incident_id: int) -> Incident:
    # Out of the database's integer range: no such incident (not a driver error).
    incident = session.get(Incident, incident_id) if 0 < incident_id < 2**63 else None
    if incident is None:
        raise NotFound(f"no incident #{incident_id}: see 'enclave incident list'")
    return incident


def clear_incident(session: Session, actor: User, incident_id: int, note: str) -> Incident:
    """Close an open incident after review (admins; never one's own), audited. Clearing
    lifts its suspension; a disabled account stays disabled (see :func:`enable_user`)."""
    check_admin(actor, "clear incidents")
    note = (note or "").strip()
    if not note:
        raise InvalidInput("say what the review found: give a note when clearing an incident", field="note")
    if len(note) > MAX_NOTE_CHARS:
        raise InvalidInput(f"the note is too long: use at most {MAX_NOTE_CHARS} characters", field="note")
    incident = get_incident(session, incident_id)
    if incident.user_id == actor.id:
        raise PermissionDenied(f"{actor.name} may not clear an incident about themselves: ask another admin")
    if incident.status is not IncidentStatus.OPEN:
        raise InvalidTransition(f"incident #{incident_id} is already {incident.status.value}")
    incident.status = IncidentStatus.CLEARED
    incident.cleared_at = utcnow()
    incident.cleared_by_id = actor.id
    incident.clear_note = note
    append_event(session, actor, IncidentAction.CLEAR, project=incident.project, target=f"incident:{incident.id}",
                 details={"user": incident.user.name, "note": note})
    return incident


def enable_user(session: Session, actor: User, name: str, note: str) -> User:
    """Enable an account that incidents disabled (admins; never one's own), audited."""
    check_admin(actor, "enable accounts")
    note = (note or "").strip()
    if not note:
        raise InvalidInput("say why the account may be used again: give a note", field="note")
    person = get_user(session, name)
    if person.id == actor.id:
        raise PermissionDenied(f"{actor.name} may not enable their own account: ask another admin")
    if person.disabled_at is None:
        raise InvalidTransition(f"{name}'s account is not disabled")
    append_event(session, actor, IncidentAction.ACCOUNT_ENABLE, target=f"user:{name}",
                 details={"was": person.disabled_reason, "note": note[:MAX_NOTE_CHARS]})
    person.disabled_at = None
    person.disabled_reason = None
    return person


def list_incidents(
    session: Session, actor: User, *, status: IncidentStatus | None = None, user: str | None = None,
    limit: int = 500,
) -> list[Incident]:
    """Incidents, newest first (admins only)."""
    check_admin(actor, "read incidents")
    query = select(Incident).order_by(Incident.id.desc()).limit(limit)
    if status is not None:
        query = query.where(Incident.status == status)
    if user:
        query = query.where(Incident.user_id == get_user(session, user).id)
    return list(session.scalars(query).unique())


def suspension_reason(session: Session, user: User) -> str | None:
    """Why ``user`` may not use the enclave now (disabled, or an open suspending
    incident), as one line; None when they may."""
    if user.disabled_at is not None:
        return f"{user.name}'s account is disabled ({user.disabled_reason}): ask an admin to review and enable it"
    open_ids = session.scalars(
        select(Incident.id).where(Incident.user_id == user.id, Incident.status == IncidentStatus.OPEN,
                                  Incident.suspends.is_(True)).order_by(Incident.id)
    ).all()
    if open_ids:
        return (f"{user.name}'s access is suspended until an admin clears incident #{open_ids[0]}: "
                "contact your enclave's administrators")
    return None


def check_not_suspended(session: Session, user: User) -> None:
    """Raise PermissionDenied when ``user`` is disabled or suspended by an open incident."""
    reason = suspension_reason(session, user)
    if reason is not None:
        raise PermissionDenied(reason)


# --- telling admins: the egress policy's notifiers, after commit ------------------------


def _queue_note(session: Session, settings: Settings, note: dict[str, Any]) -> None:
    pending = session.info.get(_PENDING)
    if pending is None:
        pending = session.info[_PENDING] = []
        event.listen(session, "after_commit", _after_commit)
        event.listen(session, "after_rollback", lambda s: s.info.get(_PENDING, []).clear())
    pending.append((settings, note))


def _after_commit(session: Session) -> None:
    pending = session.info.get(_PENDING, [])
    notes, pending[:] = list(pending), []
    for settings, note in notes:
        notify_admins(settings, note)


def notify_admins(settings: Settings, note: dict[str, Any]) -> list[str]:
    """Send ``note`` through every notifier of ``egress.yaml``; never raises, returns
    the failures (logged). The audit log holds the incident whatever happens here."""
    from enclave.egress.policy import EgressEnv, LogNotifier, SmtpNotifier, WebhookNotifier

    failures: list[str] = []
    try:
        env = EgressEnv.load(settings)
    except Exception as exc:  # noqa: BLE001 - a bad policy must not hide the incident
        log.error("incident %s: cannot load the notifiers (%s)", note.get("incident"), exc)
        return [str(exc)]
    subject = (f"[enclave] incident {note['incident']}: {note['kind']} by {note['user']} "
               f"on {note.get('project') or '-'}/{note.get('server') or '-'}")
    for notifier in env.policy.notifiers:
        try:
            if isinstance(notifier, LogNotifier):
                path = env.log_path(notifier)
                path.parent.mkdir(parents=True, exist_ok=True)
                with open(path, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(note, sort_keys=True, default=str) + "\n")
            elif isinstance(notifier, WebhookNotifier):
                httpx.post(notifier.url, json=note, timeout=notifier.timeout_seconds).raise_for_status()
            elif isinstance(notifier, SmtpNotifier) and notifier.to:
                message = EmailMessage()
                message["From"], message["To"], message["Subject"] = notifier.sender, ", ".join(notifier.to), subject
                message.set_content(f"{subject}.\n\n{json.dumps(note, indent=2, default=str)}\n"
                                    f"Review it, then: enclave incident clear {note['incident']} --note ...\n")
                with smtplib.SMTP(notifier.host, notifier.port, timeout=notifier.timeout_seconds) as smtp:
                    smtp.send_message(message)
        except Exception as exc:  # noqa: BLE001 - a notifier never undoes the incident
            failures.append(f"{notifier.kind}: {type(exc).__name__}: {exc}")
            log.warning("incident %s: notification failed (%s)", note.get("incident"), failures[-1])
    return failures
