"""Read models: what the CLI's --json and the web API show of the domain objects."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict

from enclave.db.models import AuditEvent, Project, User
from enclave.enums import ConfidentialityBasis, GdprArticle6, GdprArticle9, ProjectStatus, Role


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class UserOut(_Out):
    name: str
    roles: list[Role]
    training_expires: dt.date | None
    created_at: dt.datetime

    @classmethod
    def of(cls, user: User) -> UserOut:
        return cls(name=user.name, roles=sorted(user.roles), training_expires=user.training_expires,
                   created_at=user.created_at)


class ProjectOut(_Out):
    slug: str
    title: str
    status: ProjectStatus
    status_reason: str | None
    lay_summary: str
    purpose: str
    lawful_basis: str
    pi: str
    organisation: str
    tier: str
    start_date: dt.date
    end_date: dt.date
    members: list[str]
    created_at: dt.datetime
    # What the public register publishes (enclave.register).
    public_benefit: str
    gdpr_article6: GdprArticle6 | None
    gdpr_article9: GdprArticle9 | None
    confidentiality_basis: ConfidentialityBasis | None
    data_controller: str
    contact_email: str
    funders: str

    @classmethod
    def of(cls, project: Project) -> ProjectOut:
        return cls(
            slug=project.slug, title=project.title, status=project.status, status_reason=project.status_reason,
            lay_summary=project.lay_summary, purpose=project.purpose, lawful_basis=project.lawful_basis,
            pi=project.pi.name, organisation=project.organisation, tier=project.tier,
            start_date=project.start_date, end_date=project.end_date, members=project.member_names,
            created_at=project.created_at, public_benefit=project.public_benefit, gdpr_article6=project.gdpr_article6,
            gdpr_article9=project.gdpr_article9, confidentiality_basis=project.confidentiality_basis,
            data_controller=project.data_controller, contact_email=project.contact_email, funders=project.funders,
        )


class AuditEventOut(_Out):
    seq: int
    at: dt.datetime
    actor: str
    action: str
    project: str | None
    target: str | None
    details: dict[str, Any]
    hash: str

    @classmethod
    def of(cls, event: AuditEvent) -> AuditEventOut:
        return cls.model_validate(event)
