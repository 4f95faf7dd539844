"""What the public register shows of a project: this and nothing else (no people)."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field

from enclave.enums import ConfidentialityBasis, GdprArticle6, GdprArticle9, ProjectStatus


class LawfulBasisOut(BaseModel):
    article6: GdprArticle6 | None = Field(description="UK GDPR Article 6(1) lawful basis (None: not stated)")
    article6_text: str
    article9: GdprArticle9 | None = Field(description="UK GDPR Article 9(2) condition (None: not stated)")
    article9_text: str
    confidentiality: ConfidentialityBasis | None = Field(
        description="Basis under the common law duty of confidentiality (None: not stated)")
    confidentiality_text: str
    approvals: str = Field(description="Approvals and references the project gave (ethics, CAG ...)")


class RegisterDatasetOut(BaseModel):
    name: str
    description: str = Field(description="The catalogue's description of the dataset (never its data)")
    access_from: dt.date
    access_until: dt.date = Field(description="The last day of access (or the day it was revoked)")
    access_ended: bool


class ReleasedOutputOut(BaseModel):
    title: str
    released_on: dt.date
    files: list[str] = Field(description="Names of the released files")


class RegisterEntryOut(BaseModel):
    """One project on the public register."""

    slug: str
    title: str
    status: ProjectStatus
    status_text: str = Field(description="The status in words: active, suspended, finished ...")
    lay_summary: str
    purpose: str
    public_benefit: str
    organisation: str
    data_controller: str
    contact_email: str
    funders: str
    lawful_basis: LawfulBasisOut
    start_date: dt.date
    end_date: dt.date
    approved_on: dt.date | None
    suspended_on: dt.date | None
    finished_on: dt.date | None
    datasets: list[RegisterDatasetOut]
    outputs: list[ReleasedOutputOut]
    released_outputs: int = Field(description="How many files were released after review")
    # A finished project's data: kept (archived) until, or destroyed on, these dates.
    data_kept_until: dt.date | None = None
    data_destroyed_on: dt.date | None = None
    # How they were destroyed: who closed the project (a role, never a name), under which
    # retention policy, when.
    data_destruction: str | None = None


class OptOutOut(BaseModel):
    applied: bool
    text: str
    url: str | None


class RegisterAboutOut(BaseModel):
    """What the register says on the enclave's behalf (policies/register.yaml)."""

    publisher: str
    contact_email: str
    opt_out: OptOutOut
