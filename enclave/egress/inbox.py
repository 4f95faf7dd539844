"""The in-app inbox: what waits on the signed-in person, and what happened to their requests.

Built on the events the notifiers already send (every ``egress.transition`` of a request
is also written to the audit log, and mailed or posted where a notifier is configured):
the counts come from the requests' current states through the same queues the consoles
use, and the recent updates are those transition events for requests the person follows
(the author and members of its project). The top bar's badge needs only the total:
:func:`inbox_counts` counts the same in SQL (the access rules' SQL forms) without loading
a request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, ScalarSelect, func, not_, select
from sqlalchemy.orm import Session

from enclave.db.models import AuditEvent, EgressRequest, User
from enclave.egress import access, queues
from enclave.egress.service import EgressAudit, list_requests, target_of, target_sql
from enclave.egress.votes import where_completed_review
from enclave.enums import EgressStatus

RECENT = 20


@dataclass
class Inbox:
    """Requests that wait on ``actor``, by kind, and the latest changes of those they follow."""

    reviews_waiting: list[EgressRequest] = field(default_factory=list)
    changes_requested: list[EgressRequest] = field(default_factory=list)
    released: list[EgressRequest] = field(default_factory=list)
    waiting_release: list[EgressRequest] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        return {"reviews_waiting": len(self.reviews_waiting), "changes_requested": len(self.changes_requested),
                "released": len(self.released), "waiting_release": len(self.waiting_release)}

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def _downloaded_by(session: Session, actor: User, requests: list[EgressRequest]) -> set[str]:
    if not requests:
        return set()
    return set(session.scalars(select(AuditEvent.target).where(
        AuditEvent.action == EgressAudit.DOWNLOAD, AuditEvent.actor == actor.name,
        AuditEvent.target.in_([target_of(r) for r in requests]))))


def inbox_counts(session: Session, actor: User) -> dict[str, int]:
    """``inbox(session, actor).counts``, in one query of four counts that loads no request
    (what the top bar's badge shows on every page)."""
    def count(status: EgressStatus, *where: ColumnElement[bool]) -> ScalarSelect[int]:
        return (select(func.count()).select_from(EgressRequest)
                .where(EgressRequest.status == status, *where).scalar_subquery())

    downloaded = select(AuditEvent.id).where(AuditEvent.action == EgressAudit.DOWNLOAD,
                                             AuditEvent.actor == actor.name, AuditEvent.target == target_sql())
    counts = {
        "reviews_waiting": count(EgressStatus.IN_REVIEW, access.where_review(actor),
                                 not_(where_completed_review(actor))),
        "changes_requested": count(EgressStatus.CHANGES_REQUESTED, access.where_follow(actor),
                                   access.where_submit(actor)),
        "released": count(EgressStatus.RELEASED, access.where_follow(actor), not_(downloaded.exists())),
        "waiting_release": count(EgressStatus.APPROVED, access.where_release(actor)),
    }
    row = session.execute(select(*counts.values())).one()
    return {kind: int(n or 0) for kind, n in zip(counts, row, strict=True)}


def inbox_total(session: Session, actor: User) -> int:
    """How many things wait on ``actor`` (``inbox(session, actor).total``), counted cheaply."""
    return sum(inbox_counts(session, actor).values())


def inbox(session: Session, actor: User) -> Inbox:
    """The inbox of ``actor``: reviews waiting for them, requests returned to them for
    changes, releases of their projects they have not downloaded yet, and (for releasers)
    approved requests waiting for release."""
    box = Inbox()
    if access.can_reviewer(actor):
        box.reviews_waiting = queues.review_queue(session, actor)
    if access.can_releaser(actor):
        box.waiting_release = queues.release_queue(session, actor)
    followed = [r for r in list_requests(session, actor) if access.can_follow(actor, r)]
    box.changes_requested = [r for r in followed if r.status is EgressStatus.CHANGES_REQUESTED
                             and access.can_submit(actor, r)]
    released = [r for r in followed if r.status is EgressStatus.RELEASED]
    fetched = _downloaded_by(session, actor, released)
    box.released = [r for r in released if target_of(r) not in fetched]
    if followed:
        by_target = {target_of(r): r for r in followed}
        events = session.scalars(select(AuditEvent).where(
            AuditEvent.action == EgressAudit.TRANSITION, AuditEvent.target.in_(list(by_target)))
            .order_by(AuditEvent.seq.desc()).limit(RECENT))
        box.updates = [{"request": by_target[e.target].id, "title": by_target[e.target].title,
                        "project": e.project, "from": e.details.get("from"), "to": e.details.get("to"),
                        "actor": e.actor, "at": e.at} for e in events if e.target in by_target]
    return box
