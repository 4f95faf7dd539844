"""Read-only views the consoles and the register show, composed from the domain model.

Nothing here changes a row. Each function checks who may read what, like the service
layer: the register is public by design and exposes only the register's fields.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter

from sqlalchemy import select
from sqlalchemy.orm import Session

from enclave.applications import application_details
from enclave.clock import utcnow
from enclave.db.models import DataRetention, EgressFile, EgressRequest, EgressReview, Grant, Project, User
from enclave.enums import EgressStatus, ProjectStatus
from enclave.errors import NotFound
from enclave.permissions import check_admin
from enclave.projects.lifecycle import actions_from
from enclave.projects.service import check_can_view, get_project
from enclave.web.schemas import (
    CountOut,
    DashboardOut,
    ExpiringGrantOut,
    GrantOut,
    ProjectDetailOut,
    ProjectOut,
    RegisterEntryOut,
)

PUBLIC_STATUSES = (ProjectStatus.APPROVED, ProjectStatus.ACTIVE)


def _grants(session: Session, project: Project) -> list[GrantOut]:
    now = utcnow()
    rows = session.scalars(select(Grant).where(Grant.project_id == project.id).order_by(Grant.expires_at))
    return [GrantOut(id=g.id, dataset=g.dataset_version.dataset.name, version=g.dataset_version.version,
                     granted_at=g.granted_at, expires_at=g.expires_at, revoked_at=g.revoked_at, live=g.is_live(now))
            for g in rows]


def project_detail(session: Session, actor: User, slug: str, hub_prefix: str = "/hub") -> ProjectDetailOut:
    """One project as its members, the admins and the reviewers may see it."""
    project = get_project(session, slug)
    check_can_view(actor, project)
    application = application_details(session, slug)
    member = any(m.user_id == actor.id for m in project.memberships)
    notebook = (f"{hub_prefix}/spawn/{actor.name}/{project.slug}"
                if member and project.status is ProjectStatus.ACTIVE else None)
    return ProjectDetailOut(
        **ProjectOut.of(project).model_dump(), grants=_grants(session, project),
        datasets_wanted=application["datasets_wanted"], proposed_team=application["team"],
        allowed_actions=actions_from(project.status), notebook_url=notebook,
    )


def application_queue(session: Session, actor: User) -> list[ProjectOut]:
    """Proposed projects, oldest first (admins)."""
    check_admin(actor, "see the application queue")
    rows = session.scalars(select(Project).where(Project.status == ProjectStatus.PROPOSED)
                           .order_by(Project.created_at, Project.id))
    return [ProjectOut.of(p) for p in rows]


def register(session: Session) -> list[RegisterEntryOut]:
    """The public transparency register: approved and active projects."""
    now = utcnow()
    entries = []
    # Closed projects stay listed once their data are in retention: the public can see when they are destroyed.
    retained = select(DataRetention.project_id)
    for project in session.scalars(select(Project).where(Project.status.in_(PUBLIC_STATUSES) | Project.id.in_(retained))
                                   .order_by(Project.start_date.desc(), Project.slug)):
        retention = session.get(DataRetention, project.id)
        datasets = sorted({g.dataset_version.dataset.name for g in
                           session.scalars(select(Grant).where(Grant.project_id == project.id)) if g.is_live(now)})
        released = len(session.scalars(
            select(EgressFile.id).join(EgressRequest)
            .where(EgressRequest.project_id == project.id, EgressRequest.status == EgressStatus.RELEASED)).all())
        entries.append(RegisterEntryOut(
            slug=project.slug, title=project.title, status=project.status, lay_summary=project.lay_summary,
            pi=project.pi.name, organisation=project.organisation, datasets=datasets,
            start_date=project.start_date, end_date=project.end_date, released_outputs=released,
            data_kept_until=retention.destroy_after.date() if retention and not retention.destroyed_at else None,
            data_destroyed_on=retention.destroyed_at.date() if retention and retention.destroyed_at else None,
        ))
    return entries


def destruction_record(session: Session, slug: str) -> dict:
    """The signed destruction record of a destroyed project (public, like the register)."""
    project = session.scalars(select(Project).where(Project.slug == slug)).one_or_none()
    row = session.get(DataRetention, project.id) if project is not None else None
    if row is None or row.destruction_record is None:
        raise NotFound(f"no destruction record for {slug!r}: see the register")
    return row.destruction_record


def _week(when: dt.datetime) -> str:
    year, week, _ = when.isocalendar()
    return f"{year}-W{week:02d}"


def _last_weeks(n: int) -> list[str]:
    today = utcnow()
    return [_week(today - dt.timedelta(weeks=i)) for i in reversed(range(n))]


def dashboard(session: Session, actor: User, running_servers: int | None, weeks: int = 8,
              expiring_within_days: int = 30) -> DashboardOut:
    """Counts for the admin dashboard (admins)."""
    check_admin(actor, "see the dashboard")
    now = utcnow()
    projects = Counter(p.status for p in session.scalars(select(Project)))
    requests = Counter(r.status for r in session.scalars(select(EgressRequest)))
    labels = _last_weeks(weeks)
    since = now - dt.timedelta(weeks=weeks)
    decisions = Counter(_week(r.created_at) for r in
                        session.scalars(select(EgressReview).where(EgressReview.created_at >= since)))
    released = Counter()
    for request in session.scalars(select(EgressRequest).where(EgressRequest.released_at.is_not(None),
                                                               EgressRequest.released_at >= since)):
        released[_week(request.released_at)] += len(request.files)  # type: ignore[arg-type]
    horizon = now + dt.timedelta(days=expiring_within_days)
    expiring = [
        ExpiringGrantOut(project=g.project.slug, dataset=g.dataset_version.dataset.name,
                         version=g.dataset_version.version, expires_at=g.expires_at,
                         days_left=max(0, (g.expires_at - now).days))
        for g in session.scalars(select(Grant).where(Grant.revoked_at.is_(None), Grant.expires_at > now,
                                                     Grant.expires_at <= horizon).order_by(Grant.expires_at))
    ]
    return DashboardOut(
        running_servers=running_servers,
        projects_by_status=[CountOut(label=s.value, count=projects.get(s, 0)) for s in ProjectStatus],
        requests_by_status=[CountOut(label=s.value, count=requests.get(s, 0)) for s in EgressStatus],
        decisions_by_week=[CountOut(label=w, count=decisions.get(w, 0)) for w in labels],
        released_files_by_week=[CountOut(label=w, count=released.get(w, 0)) for w in labels],
        grants_expiring=expiring,
    )
