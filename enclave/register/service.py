"""The public register's entries, built from the domain model and searched in the database.

Public by design, so there is no acting user: what is published is fixed here. Projects
are listed once approved (proposed and rejected ones never are), with their status in
words. Nothing about the people on a project is read: no lead, member, author or
reviewer name, and no reason given for a suspension (it may name someone).
"""

from __future__ import annotations

import datetime as dt
import re

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.orm import Session

from enclave.audit import AuditAction
from enclave.clock import utcnow
from enclave.db.models import (
    AuditEvent,
    DataRetention,
    Dataset,
    DatasetVersion,
    EgressRequest,
    EgressReview,
    Grant,
    Project,
    User,
)
from enclave.enums import EgressStatus, ProjectStatus
from enclave.errors import InvalidInput, NotFound
from enclave.register.destruction import destruction_statement, public_destruction_record
from enclave.register.details import ARTICLE6_WORDING, ARTICLE9_WORDING, CONFIDENTIALITY_WORDING
from enclave.register.policy import RegisterPolicy
from enclave.register.schemas import (
    LawfulBasisOut,
    OptOutOut,
    RegisterAboutOut,
    RegisterDatasetOut,
    RegisterEntryOut,
    ReleasedOutputOut,
)

PUBLIC_STATUSES = (ProjectStatus.APPROVED, ProjectStatus.ACTIVE, ProjectStatus.SUSPENDED, ProjectStatus.CLOSED)
STATUS_TEXT = {
    ProjectStatus.APPROVED: "approved, not started",
    ProjectStatus.ACTIVE: "active",
    ProjectStatus.SUSPENDED: "suspended",
    ProjectStatus.CLOSED: "finished",
}
NOT_STATED = "Not stated"
WITHHELD = "[name withheld]"
MAX_QUERY = 200
MAX_TERMS = 10


def about(policy: RegisterPolicy) -> RegisterAboutOut:
    """The register's publisher, contact and opt-out text."""
    return RegisterAboutOut(publisher=policy.publisher, contact_email=policy.contact_email,
                            opt_out=OptOutOut(applied=policy.opt_out.applied, text=policy.opt_out.text,
                                              url=str(policy.opt_out.url) if policy.opt_out.url else None))


def _like(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _matches(term: str) -> ColumnElement[bool]:
    """A project whose title, summaries, purpose, organisations or datasets mention ``term``."""
    pattern = _like(term)
    datasets = (select(Grant.project_id).join(DatasetVersion, Grant.dataset_version_id == DatasetVersion.id)
                .join(Dataset, DatasetVersion.dataset_id == Dataset.id)
                .where(or_(Dataset.name.ilike(pattern, escape="\\"), Dataset.description.ilike(pattern, escape="\\"))))
    return or_(*(column.ilike(pattern, escape="\\") for column in (
        Project.title, Project.lay_summary, Project.purpose, Project.public_benefit, Project.organisation,
        Project.data_controller, Project.funders)), Project.id.in_(datasets))


def _terms(text: str | None) -> list[str]:
    text = (text or "").strip()
    if len(text) > MAX_QUERY:
        raise InvalidInput(f"the search is longer than {MAX_QUERY} characters: search for fewer words", field="q")
    terms = text.split()
    if len(terms) > MAX_TERMS:
        raise InvalidInput(f"the search has more than {MAX_TERMS} words: search for fewer words", field="q")
    return terms


def search_register(session: Session, text: str | None = None,
                    status: ProjectStatus | None = None) -> list[RegisterEntryOut]:
    """Public entries whose text or datasets mention every word of ``text``, newest first."""
    if status is not None and status not in PUBLIC_STATUSES:
        raise InvalidInput(f"the register lists no {status.value} projects: choose one of "
                           f"{', '.join(s.value for s in PUBLIC_STATUSES)}", field="status")
    query = select(Project).where(Project.status.in_(PUBLIC_STATUSES))
    if status is not None:
        query = query.where(Project.status == status)
    for term in _terms(text):
        query = query.where(_matches(term))
    projects = session.scalars(query.order_by(Project.start_date.desc(), Project.slug)).unique()
    return [_entry(session, p) for p in projects]


def get_entry(session: Session, slug: str) -> RegisterEntryOut:
    """One project's public entry; unknown and unpublished projects are alike not found."""
    project = session.scalars(select(Project).where(Project.slug == slug,
                                                    Project.status.in_(PUBLIC_STATUSES))).one_or_none()
    if project is None:
        raise NotFound(f"the register has no project {slug!r}: search the register for it")
    return _entry(session, project)


def destruction_record(session: Session, slug: str) -> dict:
    """The destruction record of a finished project whose data were destroyed, as the public
    may see it: signed, naming who closed the project by role only (never a name)."""
    project = session.scalars(select(Project).where(Project.slug == slug)).one_or_none()
    row = session.get(DataRetention, project.id) if project is not None else None
    if row is None or row.destruction_record is None:
        raise NotFound(f"no destruction record for {slug!r}: see the register")
    return public_destruction_record(row.destruction_record)


def _transition_days(session: Session, project: Project) -> dict[ProjectStatus, dt.date]:
    """The last day the project entered each status (from the audit log)."""
    days: dict[ProjectStatus, dt.date] = {}
    for event in session.scalars(select(AuditEvent).where(AuditEvent.project == project.slug,
                                                          AuditEvent.action == AuditAction.PROJECT_TRANSITION)
                                 .order_by(AuditEvent.seq)):
        target = (event.details or {}).get("to")
        if target in ProjectStatus._value2member_map_:
            days[ProjectStatus(target)] = event.at.date()
    return days


def _datasets(session: Session, project: Project, now: dt.datetime) -> list[RegisterDatasetOut]:
    spans: dict[str, RegisterDatasetOut] = {}
    for grant in session.scalars(select(Grant).where(Grant.project_id == project.id).order_by(Grant.granted_at)):
        dataset = grant.dataset_version.dataset
        end = grant.revoked_at or grant.expires_at - dt.timedelta(microseconds=1)
        seen = spans.get(dataset.name)
        live = grant.is_live(now) or bool(seen and not seen.access_ended)
        spans[dataset.name] = RegisterDatasetOut(
            name=dataset.name, description=dataset.description or NOT_STATED,
            access_from=min(seen.access_from, grant.granted_at.date()) if seen else grant.granted_at.date(),
            access_until=max(seen.access_until, end.date()) if seen else end.date(),
            access_ended=not live)
    return sorted(spans.values(), key=lambda d: d.name)


def _outputs(session: Session, project: Project) -> list[ReleasedOutputOut]:
    requests = session.scalars(select(EgressRequest).where(EgressRequest.project_id == project.id,
                                                           EgressRequest.status == EgressStatus.RELEASED)
                               .order_by(EgressRequest.released_at, EgressRequest.id)).unique()
    return [ReleasedOutputOut(title=r.title.strip() or f"Released outputs {r.id}",
                              released_on=(r.released_at or r.updated_at).date(),
                              files=sorted(f.relpath.rsplit("/", 1)[-1] for f in r.files))
            for r in requests]


def _people(session: Session, project: Project) -> list[str]:
    """Everyone on or around the project: its lead, members (past ones too, from the
    audit log), the authors of its requests and their reviewers."""
    names = {project.pi.name, *project.member_names}
    names |= set(session.scalars(select(User.name).join(EgressRequest, EgressRequest.author_id == User.id)
                                 .where(EgressRequest.project_id == project.id)))
    names |= set(session.scalars(select(User.name).join(EgressReview, EgressReview.reviewer_id == User.id)
                                 .join(EgressRequest, EgressReview.request_id == EgressRequest.id)
                                 .where(EgressRequest.project_id == project.id)))
    names |= {t.removeprefix("user:") for t in session.scalars(
        select(AuditEvent.target).where(AuditEvent.project == project.slug, AuditEvent.target.like("user:%")))
        if t}
    return sorted(n for n in names if n)


def _withholder(names: list[str]):  # type: ignore[no-untyped-def]
    """Free text with every whole-word mention of these people replaced: what researchers
    typed (titles, summaries, file names) may name them, and the register names nobody."""
    if not names:
        return lambda text: text
    # A name counts where letters or digits do not go on around it: "for_Max.csv" names max, "maximum" does not.
    pattern = re.compile(r"(?<![^\W_])(" + "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
                         + r")(?![^\W_])", re.IGNORECASE)
    return lambda text: pattern.sub(WITHHELD, text)


def _entry(session: Session, project: Project) -> RegisterEntryOut:
    entry = _raw_entry(session, project)
    withhold = _withholder(_people(session, project))
    texts = {k: withhold(v) for k, v in entry.model_dump(include={
        "title", "lay_summary", "purpose", "public_benefit", "organisation", "data_controller", "funders"}).items()}
    return entry.model_copy(update={
        **texts,
        "lawful_basis": entry.lawful_basis.model_copy(update={"approvals": withhold(entry.lawful_basis.approvals)}),
        "outputs": [o.model_copy(update={"title": withhold(o.title), "files": [withhold(f) for f in o.files]})
                    for o in entry.outputs],
    })


def _raw_entry(session: Session, project: Project) -> RegisterEntryOut:
    now = utcnow()
    days = _transition_days(session, project)
    retention = session.get(DataRetention, project.id)
    outputs = _outputs(session, project)
    return RegisterEntryOut(
        slug=project.slug, title=project.title, status=project.status, status_text=STATUS_TEXT[project.status],
        lay_summary=project.lay_summary, purpose=project.purpose, public_benefit=project.public_benefit,
        organisation=project.organisation, data_controller=project.data_controller,
        contact_email=project.contact_email, funders=project.funders,
        lawful_basis=LawfulBasisOut(
            article6=project.gdpr_article6,
            article6_text=ARTICLE6_WORDING[project.gdpr_article6] if project.gdpr_article6 else NOT_STATED,
            article9=project.gdpr_article9,
            article9_text=ARTICLE9_WORDING[project.gdpr_article9] if project.gdpr_article9 else NOT_STATED,
            confidentiality=project.confidentiality_basis,
            confidentiality_text=(CONFIDENTIALITY_WORDING[project.confidentiality_basis]
                                  if project.confidentiality_basis else NOT_STATED),
            approvals=project.lawful_basis),
        start_date=project.start_date, end_date=project.end_date,
        approved_on=days.get(ProjectStatus.APPROVED),
        suspended_on=days.get(ProjectStatus.SUSPENDED) if project.status is ProjectStatus.SUSPENDED else None,
        finished_on=(retention.closed_at.date() if retention else days.get(ProjectStatus.CLOSED))
        if project.status is ProjectStatus.CLOSED else None,
        datasets=_datasets(session, project, now), outputs=outputs,
        released_outputs=sum(len(o.files) for o in outputs),
        data_kept_until=retention.destroy_after.date() if retention and not retention.destroyed_at else None,
        data_destroyed_on=retention.destroyed_at.date() if retention and retention.destroyed_at else None,
        data_destruction=destruction_statement(retention.destruction_record.get("record") or {})
        if retention and retention.destruction_record else None,
    )
