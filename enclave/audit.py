"""The tamper-evident audit log.

Every change appends an event in the same transaction as the change. Events form a
hash chain: each stores the hash of the one before, and its own hash covers its
sequence number, time, actor, action, project, target, details and that previous hash.
Editing, deleting or reordering any stored event breaks the chain at that event; the
``audit_head`` row (the tip) also catches events cut from the end.

    hash_n = sha256( canonical_json({seq, at, actor, action, project, target, details, prev: hash_(n-1)}) )
    hash_0 = "0" * 64
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from enclave.db.models import AuditEvent, AuditHead, Project, User, utcnow
from enclave.wakeup import note_action

GENESIS = "0" * 64


class AuditAction(StrEnum):
    """Events the foundation writes; other capabilities add their own dotted names."""

    USER_ADD = "user.add"
    USER_UPDATE = "user.update"
    PROJECT_CREATE = "project.create"
    PROJECT_TRANSITION = "project.transition"
    PROJECT_REGISTER = "project.register"
    MEMBER_ADD = "project.member_add"
    MEMBER_REMOVE = "project.member_remove"


def _canonical(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _jsonable(details: dict[str, Any] | None) -> dict[str, Any]:
    # Store exactly what was hashed: a JSON round trip fixes dates, enums and tuples.
    return json.loads(json.dumps(details or {}, default=str, sort_keys=True))


def compute_hash(event: AuditEvent, prev_hash: str) -> str:
    payload = {
        "seq": event.seq,
        "at": event.at.astimezone(dt.UTC).isoformat(timespec="microseconds"),
        "actor": event.actor,
        "action": event.action,
        "project": event.project,
        "target": event.target,
        "details": event.details,
        "prev": prev_hash,
    }
    return hashlib.sha256(_canonical(payload)).hexdigest()


def append_event(
    session: Session,
    actor: User | str,
    action: StrEnum | str,
    *,
    project: Project | str | None = None,
    target: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event in the caller's transaction (committed with the change, or not at all)."""
    head = session.scalars(select(AuditHead).where(AuditHead.id == 1).with_for_update()).one()
    event = AuditEvent(
        seq=head.seq + 1,
        at=utcnow(),  # microsecond precision: what SQLite and PostgreSQL both store
        actor=actor.name if isinstance(actor, User) else str(actor),
        action=str(action),
        project=project.slug if isinstance(project, Project) else project,
        target=target,
        details=_jsonable(details),
        prev_hash=head.hash,
    )
    event.hash = compute_hash(event, head.hash)
    head.seq, head.hash = event.seq, event.hash
    session.add(event)
    session.flush()
    # A change that may stop servers wakes the enforcer once this transaction commits.
    note_action(session, event.action)
    return event


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    checked: int
    first_bad: int | None = None
    problem: str = ""


def verify_chain(session: Session) -> ChainReport:
    """Walk the whole chain; report the first event that does not verify."""
    running, expected_seq, checked = GENESIS, 1, 0
    for event in session.scalars(select(AuditEvent).order_by(AuditEvent.seq, AuditEvent.id)).yield_per(2000):
        if event.seq != expected_seq:
            return ChainReport(False, checked, expected_seq,
                               f"event #{expected_seq} is missing: it was deleted or renumbered")
        if event.prev_hash != running:
            return ChainReport(False, checked, event.seq,
                               f"event #{event.seq} does not follow event #{event.seq - 1}: events were reordered, removed or altered")
        if compute_hash(event, running) != event.hash:
            return ChainReport(False, checked, event.seq,
                               f"event #{event.seq} ({event.action} by {event.actor}) was altered after it was written")
        running, expected_seq, checked = event.hash, expected_seq + 1, checked + 1
    head = session.get(AuditHead, 1)
    if head is None or head.seq != checked or head.hash != running:
        tip = head.seq if head is not None else "unknown"
        return ChainReport(False, checked, checked + 1,
                           f"the log ends at event #{checked} but its head records #{tip}: events were cut from the end")
    return ChainReport(True, checked)


def _filtered(
    query: Select[Any],
    *,
    project: str | None = None,
    user: str | None = None,
    action: str | None = None,
    since: dt.date | None = None,
    until: dt.date | None = None,
) -> Select[Any]:
    if project:
        query = query.where(AuditEvent.project == project)
    if user:
        query = query.where(AuditEvent.actor == user)
    if action:
        query = query.where(AuditEvent.action.startswith(action))
    if since:
        query = query.where(AuditEvent.at >= dt.datetime.combine(since, dt.time(), dt.UTC))
    if until:
        query = query.where(AuditEvent.at < dt.datetime.combine(until + dt.timedelta(days=1), dt.time(), dt.UTC))
    return query


def list_events(
    session: Session,
    *,
    limit: int | None = None,
    **filters: Any,
) -> Iterator[AuditEvent]:
    """Events matching every given filter (project, user, action or its prefix, since,
    until), oldest first."""
    query = _filtered(select(AuditEvent).order_by(AuditEvent.seq), **filters)
    if limit:
        query = query.limit(limit)
    return iter(session.scalars(query).all())


@dataclass(frozen=True)
class EventPage:
    events: list[AuditEvent]  # newest first
    total: int
    page: int
    pages: int


def read_events_page(session: Session, actor: User, *, page: int = 1, per_page: int = 50,
                     **filters: Any) -> EventPage:
    """One page of the events matching ``filters``, newest first (admins); a page past
    the end gives the last page."""
    from enclave.permissions import check_admin

    check_admin(actor, "read the audit log")
    total = session.scalar(_filtered(select(func.count(AuditEvent.id)), **filters)) or 0
    pages = max(1, -(-total // per_page))
    page = min(max(1, page), pages)
    query = _filtered(select(AuditEvent).order_by(AuditEvent.seq.desc()), **filters)
    events = list(session.scalars(query.offset((page - 1) * per_page).limit(per_page)))
    return EventPage(events=events, total=total, page=page, pages=pages)


def event_types(session: Session, actor: User) -> list[str]:
    """Every kind of event the log holds, by name (admins): what the filter offers."""
    from enclave.permissions import check_admin

    check_admin(actor, "read the audit log")
    return list(session.scalars(select(AuditEvent.action).distinct().order_by(AuditEvent.action)))


def read_events(session: Session, actor: User, **filters: Any) -> list[AuditEvent]:
    """The audit log as an admin may read it (see :func:`list_events` for the filters)."""
    from enclave.permissions import check_admin

    check_admin(actor, "read the audit log")
    return list(list_events(session, **filters))
