"""What a data custodian and an output-checking team run on: how long work waits in
each queue against the service target, how long decisions take, why things are
rejected, how often outputs come back for rework, and which grants end soon.

Times come from the audit log (every application and every egress transition is an
event with its moment and its from/to states), so the figures are those the log can
prove. Ages are counted in working days (Monday to Friday); the target is a setting of
``policies/service.yaml``.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from pydantic import Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from enclave.audit import AuditAction
from enclave.clock import utcnow
from enclave.db.models import AuditEvent, EgressRequest, EgressReview, Grant, Project, User
from enclave.enums import EgressStatus, ProjectStatus, ReviewDecision
from enclave.permissions import check_admin
from enclave.policy import StrictModel, load_policy_file

EGRESS_TRANSITION = "egress.transition"  # written by enclave.egress for every status change
DECIDED = {EgressStatus.CHANGES_REQUESTED, EgressStatus.APPROVED, EgressStatus.REJECTED}
WAITING_FOR_CHECKERS = (EgressStatus.SUBMITTED, EgressStatus.IN_REVIEW)


class ServiceLevels(StrictModel):
    """``policies/service.yaml``: the targets the dashboard measures against."""

    queue_target_working_days: int = Field(ge=1, le=60)
    grant_expiry_warning_days: int = Field(ge=1, le=365)
    period_days: int = Field(ge=7, le=730)


def load_service_levels(policies_dir: Path) -> ServiceLevels:
    return load_policy_file(Path(policies_dir) / "service.yaml", ServiceLevels)


def working_days(start: dt.datetime, end: dt.datetime) -> int:
    """Working days (Monday to Friday) from ``start`` to ``end``: the weekdays after the
    start's date up to and including the end's date (0 on the same day)."""
    first, last = start.date(), end.date()
    if last <= first:
        return 0
    days = (last - first).days
    weeks, rest = divmod(days, 7)
    count = weeks * 5
    for i in range(1, rest + 1):
        if (first + dt.timedelta(days=i)).weekday() < 5:
            count += 1
    return count


class QueueKind(StrEnum):
    APPLICATION = "application"  # a project application waiting for an admin (custodian)
    EGRESS = "egress"  # an egress request waiting for output checkers


@dataclass(frozen=True)
class Waiting:
    kind: QueueKind
    ref: str  # project slug or egress request id
    project: str
    since: dt.datetime
    working_days: int
    over_target: bool


@dataclass(frozen=True)
class Turnaround:
    decided: int
    median_working_days: float | None
    longest_working_days: int | None
    within_target: int


@dataclass(frozen=True)
class Reason:
    kind: QueueKind
    reason: str
    count: int


@dataclass(frozen=True)
class Rework:
    decided: int  # egress requests with a checkers' decision in the period
    returned: int  # of those, sent back for changes at least once
    rate: float | None
    rounds_mean: float | None  # submissions per decided request


@dataclass(frozen=True)
class ExpiringGrant:
    grant_id: int
    project: str
    dataset: str
    version: int
    last_day: dt.date
    days_left: int


@dataclass
class ServiceMetrics:
    target_working_days: int
    period_days: int
    warning_days: int
    queue: list[Waiting] = field(default_factory=list)
    turnaround: dict[QueueKind, Turnaround] = field(default_factory=dict)
    reasons: list[Reason] = field(default_factory=list)
    rework: Rework | None = None
    expiring: list[ExpiringGrant] = field(default_factory=list)

    def queue_of(self, kind: QueueKind) -> list[Waiting]:
        return [w for w in self.queue if w.kind == kind]

    @property
    def over_target(self) -> int:
        return sum(1 for w in self.queue if w.over_target)


def _egress_id(target: str | None) -> int | None:
    if target and target.startswith("egress:") and target[7:].isdigit():
        return int(target[7:])
    return None


def _turnaround(durations: list[int], target: int) -> Turnaround:
    return Turnaround(
        decided=len(durations),
        median_working_days=float(statistics.median(durations)) if durations else None,
        longest_working_days=max(durations) if durations else None,
        within_target=sum(1 for d in durations if d <= target),
    )


def _reason_text(text: str) -> str:
    return " ".join(text.split()).rstrip(".")


class _Reasons:
    """Reasons counted alike whatever their case, spacing or final full stop; shown as first written."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[QueueKind, str]] = Counter()
        self.shown: dict[tuple[QueueKind, str], str] = {}

    def add(self, kind: QueueKind, text: str) -> None:
        words = _reason_text(text)
        key = (kind, words.casefold())
        self.shown.setdefault(key, words)
        self.counts[key] += 1

    def ranked(self) -> list[Reason]:
        order = sorted(self.counts.items(), key=lambda item: (-item[1], item[0][0], item[0][1]))
        return [Reason(kind, self.shown[(kind, key)], n) for (kind, key), n in order]


def service_metrics(session: Session, actor: User, levels: ServiceLevels,
                    now: dt.datetime | None = None) -> ServiceMetrics:
    """The dashboard's service figures as of ``now`` (admins)."""
    check_admin(actor, "see the service dashboard")
    now = now or utcnow()
    target = levels.queue_target_working_days
    since = now - dt.timedelta(days=levels.period_days)
    out = ServiceMetrics(target_working_days=target, period_days=levels.period_days,
                         warning_days=levels.grant_expiry_warning_days)

    # Applications: waiting since they were made; decided by an approve or reject.
    for project in session.scalars(select(Project).where(Project.status == ProjectStatus.PROPOSED)
                                   .order_by(Project.created_at)):
        age = working_days(project.created_at, now)
        out.queue.append(Waiting(QueueKind.APPLICATION, project.slug, project.slug, project.created_at, age,
                                 age > target))
    created = {e.project: e.at for e in session.scalars(
        select(AuditEvent).where(AuditEvent.action == AuditAction.PROJECT_CREATE))}
    application_days: list[int] = []
    reasons = _Reasons()
    for event in session.scalars(select(AuditEvent).where(AuditEvent.action == AuditAction.PROJECT_TRANSITION,
                                                          AuditEvent.at >= since)):
        details = event.details or {}
        if details.get("from") != ProjectStatus.PROPOSED.value or event.project not in created:
            continue
        application_days.append(working_days(created[event.project], event.at))
        if details.get("to") == ProjectStatus.REJECTED.value and details.get("reason"):
            reasons.add(QueueKind.APPLICATION, str(details["reason"]))
    out.turnaround[QueueKind.APPLICATION] = _turnaround(application_days, target)

    # Egress: each round runs from a submission to the checkers' decision.
    submitted: dict[int, dt.datetime] = {}  # request -> start of its open round
    rounds: defaultdict[int, int] = defaultdict(int)
    returned: set[int] = set()
    decided_in_period: set[int] = set()
    egress_days: list[int] = []
    for event in session.scalars(select(AuditEvent).where(AuditEvent.action == EGRESS_TRANSITION)
                                 .order_by(AuditEvent.seq)):
        rid = _egress_id(event.target)
        details = event.details or {}
        if rid is None:
            continue
        to = details.get("to")
        if to == EgressStatus.SUBMITTED.value:
            submitted[rid] = event.at
            rounds[rid] += 1
        elif to in {s.value for s in DECIDED} and rid in submitted:
            start = submitted.pop(rid)
            if to == EgressStatus.CHANGES_REQUESTED.value:
                returned.add(rid)
            if event.at >= since:
                egress_days.append(working_days(start, event.at))
                if to != EgressStatus.CHANGES_REQUESTED.value:
                    decided_in_period.add(rid)
    out.turnaround[QueueKind.EGRESS] = _turnaround(egress_days, target)
    for request in session.scalars(select(EgressRequest).where(EgressRequest.status.in_(WAITING_FOR_CHECKERS))
                                   .order_by(EgressRequest.id)):
        start = submitted.get(request.id) or request.submitted_at or request.created_at
        age = working_days(start, now)
        out.queue.append(Waiting(QueueKind.EGRESS, str(request.id), request.project.slug, start, age, age > target))
    out.queue.sort(key=lambda w: w.since)
    closed = decided_in_period
    back = len(closed & returned)
    out.rework = Rework(
        decided=len(closed), returned=back, rate=back / len(closed) if closed else None,
        rounds_mean=statistics.mean(rounds[r] for r in closed) if closed else None,
    )

    # Why checkers said no: each file vote that rejected or asked for changes, with its comment.
    for review in session.scalars(select(EgressReview).where(EgressReview.created_at >= since,
                                                            EgressReview.decision != ReviewDecision.APPROVE)):
        if review.comment.strip():
            reasons.add(QueueKind.EGRESS, review.comment)
    out.reasons = reasons.ranked()

    # Grants whose last day falls within the warning window.
    horizon = now + dt.timedelta(days=levels.grant_expiry_warning_days)
    for grant in session.scalars(select(Grant).where(Grant.revoked_at.is_(None), Grant.expires_at > now,
                                                     Grant.expires_at <= horizon).order_by(Grant.expires_at)):
        last_day = (grant.expires_at - dt.timedelta(days=1)).date()
        out.expiring.append(ExpiringGrant(grant.id, grant.project.slug, grant.dataset_version.dataset.name,
                                          grant.dataset_version.version, last_day, (last_day - now.date()).days))
    return out
