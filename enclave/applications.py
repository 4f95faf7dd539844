"""Applying for a project with a Five Safes form.

The project itself is created by :func:`enclave.projects.service.create_project`; the
answers that have no column of their own (datasets wanted, proposed team) are kept as a
``project.application`` audit event in the same transaction, so the application the
admins decided on is tamper-evident and never edited afterwards.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from enclave.audit import append_event
from enclave.db.models import AuditEvent, Dataset, Project, User
from enclave.errors import InvalidInput, NotFound
from enclave.projects.service import create_project
from enclave.projects.tiers import TierPolicy
from enclave.register.details import RegisterDetails
from enclave.users import get_user

APPLICATION_EVENT = "project.application"


class ProjectApplication(RegisterDetails):
    """The Five Safes application: safe project, people, data, settings and outputs, with
    what the public register publishes (:class:`RegisterDetails`)."""

    slug: str = Field(min_length=1, max_length=40, description="Short name: lower-case letters, digits, '-'")
    title: str = Field(min_length=1, max_length=200)
    purpose: str = Field(min_length=1, max_length=5000, description="Safe project: what and why, public benefit")
    lay_summary: str = Field(min_length=1, max_length=2000, description="Shown on the public register")
    lawful_basis: str = Field(min_length=1, max_length=2000,
                              description="Approvals and references: ethics, CAG, data sharing agreement")
    organisation: str = Field(default="", max_length=200)
    datasets_wanted: list[str] = Field(default_factory=list, max_length=50, description="Safe data: dataset names")
    team: list[str] = Field(default_factory=list, max_length=50, description="Safe people: user names")
    end_date: dt.date


def apply_for_project(session: Session, actor: User, tiers: TierPolicy, form: ProjectApplication) -> Project:
    """Propose a project led by ``actor``; it waits in the admins' application queue."""
    team = sorted({name.strip() for name in form.team if name.strip()} - {actor.name})
    for name in team:
        try:
            get_user(session, name)
        except NotFound as exc:
            exc.field = "team"  # the form's field that named the unknown person
            raise
    datasets = sorted({name.strip() for name in form.datasets_wanted if name.strip()})
    if any(len(d) > 64 for d in datasets):
        raise InvalidInput("a dataset name is longer than 64 characters: use the names shown in the catalogue",
                           field="datasets_wanted")
    project = create_project(
        session, actor, tiers, slug=form.slug.strip(), title=form.title, pi=actor.name,
        lay_summary=form.lay_summary, end_date=form.end_date, purpose=form.purpose.strip(),
        lawful_basis=form.lawful_basis.strip(), organisation=form.organisation.strip(),
        register=RegisterDetails.model_validate(form.model_dump(include=set(RegisterDetails.model_fields))),
    )
    append_event(session, actor, APPLICATION_EVENT, project=project, target=f"project:{project.slug}",
                 details={"datasets_wanted": datasets, "team": team})
    return project


def application_details(session: Session, slug: str) -> dict[str, Any]:
    """The datasets wanted and proposed team recorded with a project's application."""
    event = session.scalars(
        select(AuditEvent).where(AuditEvent.action == APPLICATION_EVENT, AuditEvent.project == slug)
        .order_by(AuditEvent.seq.desc())
    ).first()
    details = event.details if event is not None else {}
    return {"datasets_wanted": list(details.get("datasets_wanted", [])), "team": list(details.get("team", []))}


@dataclass(frozen=True)
class WantedDataset:
    """A dataset named in an application, and whether the catalogue holds it."""

    name: str
    in_catalogue: bool


def wanted_datasets(session: Session, names: list[str]) -> list[WantedDataset]:
    """The datasets an application names, each flagged when the catalogue has no such
    dataset (a typo, or data the enclave would first have to obtain)."""
    known = set(session.scalars(select(Dataset.name).where(Dataset.name.in_(names)))) if names else set()
    return [WantedDataset(name=name, in_catalogue=name in known) for name in names]
