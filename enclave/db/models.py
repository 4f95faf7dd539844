"""The enclave's domain model (SQLAlchemy 2.0, typed).

Rows change only through the service layer, which appends an audit event in the same
transaction as every change.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Enum,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from enclave.clock import utcnow
from enclave.enums import (
    ConfidentialityBasis,
    EgressStatus,
    GdprArticle6,
    GdprArticle9,
    IncidentKind,
    IncidentStatus,
    ProjectStatus,
    ReviewDecision,
    Role,
)

__all__ = ["utcnow"]  # re-exported for callers that build rows


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value


def _enum(cls: type) -> Enum:
    # Store the enum's value (lower-case words), checked by the database where it can.
    return Enum(cls, values_callable=lambda e: [m.value for m in e], native_enum=False, length=32)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class User(Base):
    """A person: their JupyterHub user name, roles and training expiry."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    training_expires: Mapped[dt.date | None] = mapped_column(Date)
    # Sign-in secrets (hashed password, TOTP seed); set by the hub's authenticator.
    password_hash: Mapped[str | None] = mapped_column(String(255))
    totp_secret: Mapped[str | None] = mapped_column(String(64))
    # The TOTP time step of the last accepted code: that step and earlier ones are refused
    # (RFC 6238 section 5.2), so a code cannot sign in twice.
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Set when repeated incidents disable the account (enclave.incidents); an admin re-enables it.
    disabled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    disabled_reason: Mapped[str | None] = mapped_column(Text)

    role_rows: Mapped[list[UserRole]] = relationship(
        back_populates="user", cascade="all, delete-orphan", lazy="selectin"
    )

    @property
    def roles(self) -> frozenset[Role]:
        return frozenset(r.role for r in self.role_rows)

    def has_role(self, role: Role) -> bool:
        return role in self.roles

    def training_valid_on(self, day: dt.date) -> bool:
        """Unknown training counts as expired (fail closed)."""
        return self.training_expires is not None and self.training_expires >= day


class UserRole(Base):
    __tablename__ = "user_roles"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    role: Mapped[Role] = mapped_column(_enum(Role), primary_key=True)

    user: Mapped[User] = relationship(back_populates="role_rows")


class Project(Base):
    """An approved (or proposed) use of data, with its lifecycle status."""

    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(40), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    lay_summary: Mapped[str] = mapped_column(Text)
    purpose: Mapped[str] = mapped_column(Text, default="")
    lawful_basis: Mapped[str] = mapped_column(Text, default="")
    pi_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    organisation: Mapped[str] = mapped_column(String(200), default="")
    # What the public register publishes (enclave.register): why the data may be used, by whom.
    public_benefit: Mapped[str] = mapped_column(Text, default="")
    gdpr_article6: Mapped[GdprArticle6 | None] = mapped_column(_enum(GdprArticle6))
    gdpr_article9: Mapped[GdprArticle9 | None] = mapped_column(_enum(GdprArticle9))
    confidentiality_basis: Mapped[ConfidentialityBasis | None] = mapped_column(_enum(ConfidentialityBasis))
    data_controller: Mapped[str] = mapped_column(String(200), default="")
    contact_email: Mapped[str] = mapped_column(String(254), default="")
    funders: Mapped[str] = mapped_column(String(500), default="")
    start_date: Mapped[dt.date] = mapped_column(Date)
    end_date: Mapped[dt.date] = mapped_column(Date)
    tier: Mapped[str] = mapped_column(String(32))
    status: Mapped[ProjectStatus] = mapped_column(_enum(ProjectStatus), default=ProjectStatus.PROPOSED)
    status_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    # Optimistic locking: concurrent transitions of one project cannot both win.
    version_id: Mapped[int] = mapped_column(Integer, default=1)

    pi: Mapped[User] = relationship(foreign_keys=[pi_id], lazy="joined")
    memberships: Mapped[list[Membership]] = relationship(
        back_populates="project", cascade="all, delete-orphan", lazy="selectin"
    )

    __mapper_args__ = {"version_id_col": version_id}

    @property
    def member_names(self) -> list[str]:
        return sorted(m.user.name for m in self.memberships)


class Membership(Base):
    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("project_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    added_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    added_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))

    project: Mapped[Project] = relationship(back_populates="memberships")
    user: Mapped[User] = relationship(foreign_keys=[user_id], lazy="joined")


class Dataset(Base):
    """A curated dataset in the catalogue; its content lives in immutable versions."""

    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    tier: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    versions: Mapped[list[DatasetVersion]] = relationship(
        back_populates="dataset", order_by="DatasetVersion.version", lazy="selectin"
    )


class DatasetVersion(Base):
    """One immutable ingest of a dataset: files, checksum, row count, dictionary."""

    __tablename__ = "dataset_versions"
    __table_args__ = (UniqueConstraint("dataset_id", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    version: Mapped[int] = mapped_column(Integer)
    description: Mapped[str] = mapped_column(Text, default="")
    tier: Mapped[str] = mapped_column(String(32))
    storage_path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    row_count: Mapped[int] = mapped_column(BigInteger)
    schema_json: Mapped[dict[str, Any]] = mapped_column(default=dict)
    stats_json: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))

    dataset: Mapped[Dataset] = relationship(back_populates="versions", lazy="joined")


class Grant(Base):
    """A project's approval to use one dataset version until a date."""

    __tablename__ = "grants"

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    dataset_version_id: Mapped[int] = mapped_column(ForeignKey("dataset_versions.id"))
    granted_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    granted_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    revoked_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    # Data minimisation: the approved columns (None = all but direct identifiers) and rows.
    columns_json: Mapped[list[Any] | None] = mapped_column()
    row_filter: Mapped[str | None] = mapped_column(Text)
    view_path: Mapped[str | None] = mapped_column(Text)

    project: Mapped[Project] = relationship(lazy="joined")
    dataset_version: Mapped[DatasetVersion] = relationship(lazy="joined")

    def is_live(self, now: dt.datetime) -> bool:
        """Granted, not revoked and not yet expired at ``now``."""
        return self.revoked_at is None and self.expires_at > now


class EgressRequest(Base):
    """A researcher's request to take files out of the enclave."""

    __tablename__ = "egress_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    title: Mapped[str] = mapped_column(String(200), default="")
    status: Mapped[EgressStatus] = mapped_column(_enum(EgressStatus), default=EgressStatus.DRAFT)
    exception_justification: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    submitted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    released_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    release_record_path: Mapped[str | None] = mapped_column(Text)
    details_json: Mapped[dict[str, Any]] = mapped_column(default=dict)
    version_id: Mapped[int] = mapped_column(Integer, default=1)

    project: Mapped[Project] = relationship(lazy="joined")
    author: Mapped[User] = relationship(lazy="joined")
    groups: Mapped[list[EgressFileGroup]] = relationship(
        back_populates="request", cascade="all, delete-orphan", lazy="selectin", order_by="EgressFileGroup.id"
    )
    files: Mapped[list[EgressFile]] = relationship(
        back_populates="request", cascade="all, delete-orphan", lazy="selectin", order_by="EgressFile.id"
    )

    __mapper_args__ = {"version_id_col": version_id}


class EgressFileGroup(Base):
    """Files that share a context (what, which population) and controls applied."""

    __tablename__ = "egress_file_groups"
    __table_args__ = (UniqueConstraint("request_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("egress_requests.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    context: Mapped[str] = mapped_column(Text, default="")
    controls: Mapped[str] = mapped_column(Text, default="")

    request: Mapped[EgressRequest] = relationship(back_populates="groups")


class EgressFile(Base):
    """One file of a request, as quarantined (content-addressed) at submit."""

    __tablename__ = "egress_files"
    __table_args__ = (UniqueConstraint("request_id", "relpath"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("egress_requests.id", ondelete="CASCADE"))
    group_id: Mapped[int | None] = mapped_column(ForeignKey("egress_file_groups.id"))
    relpath: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str | None] = mapped_column(String(64))
    size: Mapped[int | None] = mapped_column(BigInteger)
    check_status: Mapped[str | None] = mapped_column(String(16))
    check_json: Mapped[dict[str, Any] | None] = mapped_column()
    # The canonical form (enclave.egress.canonical): what reviewers see and release writes;
    # None when the file has none (it cannot be released) or was not yet submitted.
    canonical_sha256: Mapped[str | None] = mapped_column(String(64))
    canonical_size: Mapped[int | None] = mapped_column(BigInteger)
    added_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    request: Mapped[EgressRequest] = relationship(back_populates="files")
    group: Mapped[EgressFileGroup | None] = relationship(lazy="joined")


class EgressReview(Base):
    """One reviewer's vote on one file of a request (per review round)."""

    __tablename__ = "egress_reviews"
    __table_args__ = (UniqueConstraint("file_id", "reviewer_id", "round"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("egress_requests.id", ondelete="CASCADE"))
    file_id: Mapped[int] = mapped_column(ForeignKey("egress_files.id", ondelete="CASCADE"))
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    round: Mapped[int] = mapped_column(Integer, default=1)
    decision: Mapped[ReviewDecision] = mapped_column(_enum(ReviewDecision))
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    reviewer: Mapped[User] = relationship(lazy="joined")


class AuditEvent(Base):
    """One entry of the hash-chained audit log (see enclave.audit)."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64), index=True)
    project: Mapped[str | None] = mapped_column(String(40), index=True)
    target: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """The chain's tip (count and last hash), updated with every append.

    A single row locked for update serialises appends on PostgreSQL and lets
    verification notice events cut from the end of the chain.
    """

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, default=0)
    hash: Mapped[str] = mapped_column(String(64))


# --- Jobs (enclave.jobs): papermill runs and their provenance --------------------------

from enclave.jobs.states import JobStatus  # noqa: E402  (jobs block kept separate)


class JobRun(Base):
    """One papermill run of a workspace notebook, with everything needed to repeat it."""

    __tablename__ = "job_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    submitted_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    # The notebook as submitted: its path in the workspace and the sha256 of the stored copy.
    notebook: Mapped[str] = mapped_column(Text)
    notebook_sha256: Mapped[str] = mapped_column(String(64))
    parameters_json: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[JobStatus] = mapped_column(_enum(JobStatus), default=JobStatus.QUEUED, index=True)
    error: Mapped[str | None] = mapped_column(Text)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # Recorded when the run starts: the image, the views it saw, the limits applied.
    image: Mapped[str | None] = mapped_column(Text)
    # The image id, or on Swarm with a registry the pinned reference <registry>/<name>@sha256:<digest>.
    image_digest: Mapped[str | None] = mapped_column(String(300))
    views_json: Mapped[list[Any]] = mapped_column(default=list)
    limits_json: Mapped[dict[str, Any]] = mapped_column(default=dict)
    container_name: Mapped[str | None] = mapped_column(String(100))
    # Recorded when it ends: output path (relative to outbox/) -> sha256.
    outputs_json: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # A rerun points at the run it repeats and, once finished, says whether outputs matched.
    rerun_of_id: Mapped[int | None] = mapped_column(ForeignKey("job_runs.id"))
    comparison_json: Mapped[dict[str, Any] | None] = mapped_column()
    version_id: Mapped[int] = mapped_column(Integer, default=1)

    project: Mapped[Project] = relationship(lazy="joined")
    submitted_by: Mapped[User] = relationship(lazy="joined")

    __mapper_args__ = {"version_id_col": version_id}


# --- Catalogue (enclave.catalog): opt-out registry and materialised views ---------------


class OptOut(Base):
    """A patient who declined the use of their data for research (national data opt-out).

    Ingest and view materialisation exclude these identifiers and record only counts.
    """

    __tablename__ = "opt_outs"

    id: Mapped[int] = mapped_column(primary_key=True)
    identifier: Mapped[str] = mapped_column(String(128), unique=True)
    added_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    added_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))


class GrantView(Base):
    """What materialising a grant wrote: the view's checksum and row counts."""

    __tablename__ = "grant_views"

    grant_id: Mapped[int] = mapped_column(ForeignKey("grants.id", ondelete="CASCADE"), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))
    rows_json: Mapped[dict[str, Any]] = mapped_column(default=dict)
    excluded_rows: Mapped[int] = mapped_column(BigInteger, default=0)
    materialised_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    removed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    grant: Mapped[Grant] = relationship(lazy="joined")


# --- Egress replies (enclave.egress.service.reply_to_comment): answers to reviewers --------


class EgressReply(Base):
    """A researcher's answer to the reviewers' comments on one file of a returned request.

    It names no reviewer and no vote, so showing it to a reviewer reveals nothing of how
    the others voted.
    """

    __tablename__ = "egress_replies"

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("egress_requests.id", ondelete="CASCADE"), index=True)
    file_id: Mapped[int] = mapped_column(ForeignKey("egress_files.id", ondelete="CASCADE"))
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    round: Mapped[int] = mapped_column(Integer)
    message: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    author: Mapped[User] = relationship(lazy="joined")


# --- Incidents (enclave.incidents): what the egress meter and the enforcer report -------


class Incident(Base):
    """A security incident about one person's server, open until an admin clears it.

    While an open incident ``suspends`` its person, they can neither sign in nor start a
    server (``enclave.incidents.check_not_suspended``).
    """

    __tablename__ = "incidents"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[IncidentKind] = mapped_column(_enum(IncidentKind))
    status: Mapped[IncidentStatus] = mapped_column(_enum(IncidentStatus), default=IncidentStatus.OPEN, index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id"))
    server: Mapped[str] = mapped_column(String(64), default="")
    suspends: Mapped[bool] = mapped_column(Boolean, default=False)
    details_json: Mapped[dict[str, Any]] = mapped_column(default=dict)
    opened_by: Mapped[str] = mapped_column(String(64))
    opened_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    cleared_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    cleared_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    clear_note: Mapped[str | None] = mapped_column(Text)

    user: Mapped[User] = relationship(foreign_keys=[user_id], lazy="joined")
    project: Mapped[Project | None] = relationship(lazy="joined")
    cleared_by: Mapped[User | None] = relationship(foreign_keys=[cleared_by_id], lazy="joined")


# --- Retention (enclave.projects.retention): a closed project's archive and its destruction --


class DataRetention(Base):
    """What happened to a closed project's data: archived when it closed, destroyed after
    the retention period of its tier, with the signed destruction record.

    Once ``destroyed_at`` is set the row is immutable (database triggers refuse changes).
    """

    __tablename__ = "data_retention"

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), primary_key=True)
    closed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    retention_days: Mapped[int] = mapped_column(Integer)
    destroy_after: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    policy_version: Mapped[str] = mapped_column(String(64))
    archive_path: Mapped[str | None] = mapped_column(Text)
    archive_sha256: Mapped[str | None] = mapped_column(String(64))
    archive_size: Mapped[int | None] = mapped_column(BigInteger)
    destroyed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    destroyed_by: Mapped[str | None] = mapped_column(String(64))
    destruction_record: Mapped[dict[str, Any] | None] = mapped_column()

    project: Mapped[Project] = relationship(lazy="joined")


# --- Break-glass (enclave.hub.breakglass): an admin's time-limited access to one server --


class BreakGlass(Base):
    """An admin's window into one researcher's project server, with the written reason.

    While it is open (``opened_at`` <= now < ``expires_at``, not ``closed_at``) the hub
    gives ``actor`` access to the server ``owner``/``project.slug`` and nothing else.
    """

    __tablename__ = "break_glass"

    id: Mapped[int] = mapped_column(primary_key=True)
    actor_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    reason: Mapped[str] = mapped_column(Text)
    opened_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    closed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    actor: Mapped[User] = relationship(foreign_keys=[actor_id], lazy="joined")
    owner: Mapped[User] = relationship(foreign_keys=[owner_id], lazy="joined")
    project: Mapped[Project] = relationship(lazy="joined")
