"""Read and write models of the web API, extending :mod:`enclave.schemas`."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field

from enclave.projects.lifecycle import ProjectAction
from enclave.schemas import AuditEventOut, ProjectOut, UserOut

__all__ = ["AuditEventOut", "ProjectOut", "UserOut"]


class MeOut(BaseModel):
    user: UserOut
    admin_console: bool = Field(description="The hub grants the enclave admin scope")
    reviewer_console: bool = Field(description="The hub grants the enclave reviewer scope")


class GrantOut(BaseModel):
    id: int
    dataset: str
    version: int
    granted_at: dt.datetime
    expires_at: dt.datetime
    revoked_at: dt.datetime | None
    live: bool

    @property
    def last_day(self) -> dt.date:
        """The last day of access (a grant expires at the start of the next day, UTC)."""
        return (self.expires_at - dt.timedelta(microseconds=1)).date()


class ProjectDetailOut(ProjectOut):
    grants: list[GrantOut]
    datasets_wanted: list[str]
    proposed_team: list[str]
    allowed_actions: list[ProjectAction]
    notebook_url: str | None = Field(description="Where a member starts or opens the project's server")


class TransitionIn(BaseModel):
    action: ProjectAction
    reason: str | None = Field(default=None, max_length=2000)


class MemberIn(BaseModel):
    user: str = Field(min_length=1, max_length=64)


class ChainOut(BaseModel):
    ok: bool
    checked: int
    first_bad: int | None
    problem: str


class CountOut(BaseModel):
    label: str
    count: int


class ExpiringGrantOut(BaseModel):
    project: str
    dataset: str
    version: int
    expires_at: dt.datetime
    days_left: int


class DashboardOut(BaseModel):
    running_servers: int | None = Field(description="None when the hub cannot be asked")
    projects_by_status: list[CountOut]
    requests_by_status: list[CountOut]
    decisions_by_week: list[CountOut]
    released_files_by_week: list[CountOut]
    grants_expiring: list[ExpiringGrantOut]
