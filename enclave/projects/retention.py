"""Retention and destruction of a closed project's data (``policies/retention.yaml``).

When a project closes (:func:`move_project`, or any close the periodic pass finds):

1. its views are deleted at once (servers already lose them: a closed project mounts nothing);
2. its workspace is packed into ``archive/<slug>.tar.enc``, encrypted under a key of its own
   (``keys/archive/<slug>.key``), read-only, and the workspace folder is removed once that
   is committed;
3. after the tier's ``archive_days`` the archive and its key, the project's pseudonym key
   and the egress files it submitted that were never released are destroyed, and a
   destruction record (what, when, under which policy), signed with the release-signing
   key, is stored, audited, written beside the project's releases as
   ``export/<slug>/destruction.json`` and shown on the public register. The record says
   who closed the project by role only (a salted commitment binds the name, which the
   custodians' copy keeps beside the signed record: :func:`closed_by_name`).

:func:`housekeeping` does every step that is due; the enforcer runs it on each pass.
Released outputs and their records are kept: custodians verify them for years.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import secrets
import tarfile
import tempfile
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationInfo, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from enclave.audit import append_event
from enclave.backup.crypto import encrypt_stream
from enclave.catalog.storage import remove_tree
from enclave.clock import utcnow
from enclave.config import Settings
from enclave.db.models import AuditEvent, DataRetention, EgressFile, EgressRequest, Grant, Project, User
from enclave.db.session import unit_of_work
from enclave.egress.signing import load_or_create_key, sign_record
from enclave.enums import EgressStatus, ProjectStatus, Role
from enclave.errors import InvalidInput, PolicyError
from enclave.policy import StrictModel, TierName, load_policy_file, policy_digest
from enclave.projects.lifecycle import ProjectAction
from enclave.projects.examples import install_examples
from enclave.projects.service import get_project, transition_project
from enclave.register.policy import load_register_policy

RETENTION_ACTOR = "enclave-retention"
# Format 2 names who closed the project by role, with a salted commitment to the name; the
# name and salt travel beside the signed record (``custodians``), never inside it, so the
# signed record can be published as it is. Format 1 (still verified) signed the name itself.
RECORD_FORMAT = "enclave-destruction/2"
EARLIER_FORMATS = ("enclave-destruction/1",)
RECORD_NAME = "destruction.json"


class RetentionAction(StrEnum):
    VIEWS_REMOVED = "retention.views_removed"
    ARCHIVE = "retention.archive"
    DESTROY = "retention.destroy"


class TierRetention(StrictModel):
    archive_days: int = Field(ge=0, le=36500, description="Days a closed project's archive is kept")


class RetentionPolicy(StrictModel):
    version: str = Field(min_length=1)
    tiers: dict[TierName, TierRetention] = Field(min_length=1)

    @model_validator(mode="after")
    def _every_tier_has_a_period(self, info: ValidationInfo) -> RetentionPolicy:
        context = (info.context or {}).get("policies")
        if context is not None:
            missing = sorted(context.names("tier") - set(self.tiers))
            if missing:
                raise ValueError(f"tier {missing[0]!r} of tiers.yaml has no retention period: add tiers.{missing[0]}.archive_days")
        return self

    def days_for(self, tier: str) -> int:
        if tier not in self.tiers:  # fail closed: never keep (or destroy) data by a guess
            raise PolicyError(f"retention.yaml has no period for tier {tier!r}: add tiers.{tier}.archive_days")
        return self.tiers[tier].archive_days


def load_retention(policies_dir: Path) -> RetentionPolicy:
    return load_policy_file(Path(policies_dir) / "retention.yaml", RetentionPolicy)


def archive_path(settings: Settings, slug: str) -> Path:
    return settings.home / "archive" / f"{slug}.tar.enc"


def archive_key_path(settings: Settings, slug: str) -> Path:
    return settings.keys_dir / "archive" / f"{slug}.key"


def _only_files_and_folders(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    # A link, device or FIFO a member left in the workspace is never followed or packed.
    return info if info.isreg() or info.isdir() else None


def _archive_workspace(settings: Settings, slug: str) -> tuple[Path, str, int] | None:
    """Pack and encrypt the workspace; (archive, sha256, size), or None if there is none."""
    workspace = settings.workspaces_dir / slug
    if not workspace.is_dir() or workspace.is_symlink():
        return None
    target = archive_path(settings, slug)
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key_file = archive_key_path(settings, slug)
    key_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = secrets.token_bytes(32)
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
        fh.flush()
        os.fsync(fh.fileno())
    with tempfile.TemporaryFile(dir=target.parent) as plain:
        with tarfile.open(fileobj=plain, mode="w") as tar:
            tar.add(workspace, arcname=slug, filter=_only_files_and_folders)
        plain.seek(0)
        partial = target.with_name(f".{target.name}.partial")
        with open(partial, "wb") as out:
            encrypt_stream(plain, out, key)
            out.flush()
            os.fsync(out.fileno())
    os.chmod(partial, 0o400)
    os.replace(partial, target)
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    return target, digest, target.stat().st_size


def _actor_name(actor: User | str) -> str:
    return actor.name if isinstance(actor, User) else actor


def retire_project_data(session: Session, actor: User | str, settings: Settings, project: Project,
                        policy: RetentionPolicy | None = None) -> DataRetention:
    """Remove a closed project's views and archive its workspace (once; audited)."""
    existing = session.get(DataRetention, project.id)
    if existing is not None:
        return existing
    if project.status is not ProjectStatus.CLOSED:
        raise PolicyError(f"project {project.slug} is {project.status.value}: only a closed project's data is retired")
    policy = policy or load_retention(settings.policies_dir)
    days = policy.days_for(project.tier)
    from enclave.catalog.service import _remove_view, view_files

    removed = {}
    for grant in session.scalars(select(Grant).where(Grant.project_id == project.id, Grant.view_path.is_not(None))):
        removed[str(grant.id)] = view_files(grant)
        _remove_view(session, grant)
    if removed:
        append_event(session, actor, RetentionAction.VIEWS_REMOVED, project=project, target=f"project:{project.slug}",
                     details={"grants": removed})
    archived = _archive_workspace(settings, project.slug)
    now = utcnow()
    row = DataRetention(project_id=project.id, closed_at=now, retention_days=days,
                        destroy_after=now + dt.timedelta(days=days), policy_version=policy.version,
                        archive_path=str(archived[0]) if archived else None,
                        archive_sha256=archived[1] if archived else None, archive_size=archived[2] if archived else None)
    session.add(row)
    session.flush()
    append_event(session, actor, RetentionAction.ARCHIVE, project=project, target=f"project:{project.slug}", details={
        "archive_sha256": row.archive_sha256, "archive_size": row.archive_size, "retention_days": days,
        "destroy_after": row.destroy_after.isoformat(), "policy_version": policy.version,
    })
    return row


def move_project(session: Session, actor: User, settings: Settings, slug: str, action: ProjectAction,
                 reason: str | None = None) -> Project:
    """A lifecycle move (``transition_project``); closing also retires the project's data,
    and a first activation gives the workspace the example notebooks."""
    first_activation = action is ProjectAction.ACTIVATE and get_project(session, slug).status is ProjectStatus.APPROVED
    # Read afresh for each approval: a site's change of what approval needs applies at once.
    register = load_register_policy(settings.policies_dir) if action is ProjectAction.APPROVE else None
    project = transition_project(session, actor, slug, action, reason, register_policy=register)
    if project.status is ProjectStatus.CLOSED:
        retire_project_data(session, actor, settings, project)
    if first_activation:
        install_examples(session, actor, settings, project)
    return project


def sweep_workspaces(session: Session, settings: Settings) -> list[str]:
    """Remove the workspace folders of archived (or destroyed) projects; call after commit."""
    removed = []
    for row in session.scalars(select(DataRetention)):
        folder = settings.workspaces_dir / row.project.slug
        if os.path.lexists(folder):
            if folder.is_symlink() or not folder.is_dir():
                folder.unlink()
            else:
                remove_tree(folder)
            removed.append(row.project.slug)
    return removed


def _closed_by(session: Session, slug: str) -> str | None:
    for event in session.scalars(select(AuditEvent).where(AuditEvent.project == slug,
                                                          AuditEvent.action == "project.transition")
                                 .order_by(AuditEvent.seq.desc())):
        if event.details.get("to") == ProjectStatus.CLOSED.value:
            return event.actor
    return None


def actor_commitment(name: str, salt: str) -> str:
    """The sha256 that binds a signed record to a person's name without showing it."""
    return hashlib.sha256(f"{salt}\0{name}".encode("utf-8")).hexdigest()


def _closer(session: Session, slug: str) -> tuple[dict[str, Any], dict[str, str] | None]:
    """Who closed the project as the signed record gives it (a role and a commitment), and
    the name with its salt for the custodians' copy."""
    name = _closed_by(session, slug)
    if name is None:
        return {"role": None, "sha256": None}, None
    user = session.scalars(select(User).where(User.name == name)).one_or_none()
    if user is None:
        role = "system"
    else:
        role = Role.ADMIN.value if user.has_role(Role.ADMIN) else ",".join(sorted(r.value for r in user.roles)) or "user"
    salt = secrets.token_hex(16)
    return {"role": role, "sha256": actor_commitment(name, salt)}, {"name": name, "salt": salt}


def closed_by_name(envelope: dict[str, Any]) -> str | None:
    """The name of whoever closed the project, from a custodians' copy of a destruction
    record (its signature checked apart, with ``verify_envelope``): the name the signed
    commitment binds, or the name a format-1 record signed. InvalidInput when the copy's
    name does not match its record; None when it holds none."""
    record = envelope.get("record") or {}
    if record.get("format") in EARLIER_FORMATS:
        return record.get("closed_by")
    opened = (envelope.get("custodians") or {}).get("closed_by")
    signed = record.get("closed_by") or {}
    if not opened or not signed.get("sha256"):
        return None
    if actor_commitment(str(opened.get("name")), str(opened.get("salt"))) != signed["sha256"]:
        raise InvalidInput("the name beside this destruction record is not the one its signature binds: do not trust it")
    return str(opened["name"])


def _unreleased_objects(session: Session, project: Project) -> list[str]:
    """Quarantined objects of the project's requests (as submitted and in canonical form)
    that no released request (of any project) and no other project's request refers to."""
    def objects(where: Any) -> set[str]:
        rows = session.execute(select(EgressFile.sha256, EgressFile.canonical_sha256).join(EgressRequest).where(where))
        return {sha for row in rows for sha in row if sha is not None}

    mine = objects(EgressRequest.project_id == project.id)
    kept = objects((EgressRequest.status == EgressStatus.RELEASED) | (EgressRequest.project_id != project.id))
    return sorted(mine - kept)


def destroy_project_data(session: Session, settings: Settings, row: DataRetention, *,
                         by: str = RETENTION_ACTOR, now: dt.datetime | None = None) -> dict[str, Any]:
    """Destroy what a closed project's retention row keeps; returns the signed record."""
    from enclave.catalog.pseudonym import key_path
    from enclave.disclosure.differencing.store import DifferencingStore
    from enclave.egress.quarantine import object_path

    now = now or utcnow()
    project = row.project
    objects = _unreleased_objects(session, project)
    for sha in objects:
        object_path(settings, sha).unlink(missing_ok=True)
    archive = Path(row.archive_path) if row.archive_path else archive_path(settings, project.slug)
    archive.unlink(missing_ok=True)
    archive_key_path(settings, project.slug).unlink(missing_ok=True)
    key_path(settings.keys_dir, project.slug).unlink(missing_ok=True)
    maps = DifferencingStore.of_home(settings.home).forget_project(project.slug)
    for leftover in (settings.workspaces_dir / project.slug, settings.views_dir / project.slug):
        if leftover.is_dir() and not leftover.is_symlink():
            remove_tree(leftover)
    policy_file = settings.policies_dir / "retention.yaml"
    closer, opened = _closer(session, project.slug)
    record = {
        "format": RECORD_FORMAT,
        # No title: researchers may have typed a name into it (the register withholds such names).
        "project": {"slug": project.slug, "tier": project.tier},
        "closed_at": row.closed_at.isoformat(), "closed_by": closer,
        "retention_days": row.retention_days, "destroy_after": row.destroy_after.isoformat(),
        "policy": {"file": "retention.yaml", "version": row.policy_version,
                   "sha256": policy_digest(policy_file) if policy_file.exists() else None},
        "destroyed": {"workspace_archive": {"sha256": row.archive_sha256, "size": row.archive_size}
                      if row.archive_sha256 else None,
                      "keys": ["archive key", "pseudonym key"], "pseudonym_maps": maps},
        "quarantine_objects": objects,
        "kept": "released outputs and their signed release records; the audit log",
        "destroyed_at": now.isoformat(), "destroyed_by": by, "signed_at": now.isoformat(),
    }
    envelope = sign_record(record, load_or_create_key(settings.keys_dir))
    # The custodians' copy (database, export store) keeps beside the signed record what the
    # register must not show; public_destruction_record leaves it out.
    envelope["custodians"] = {"project_title": project.title, **({"closed_by": opened} if opened else {})}
    folder = settings.export_dir / project.slug
    folder.mkdir(parents=True, exist_ok=True, mode=0o750)
    target = folder / RECORD_NAME
    partial = folder / f".{RECORD_NAME}.partial"
    partial.write_text(json.dumps(envelope, indent=2, sort_keys=True), encoding="utf-8")
    os.chmod(partial, 0o444)
    os.replace(partial, target)
    row.archive_path = None
    row.destroyed_at, row.destroyed_by, row.destruction_record = now, by, envelope
    session.flush()
    append_event(session, by, RetentionAction.DESTROY, project=project, target=f"project:{project.slug}", details={
        "record": str(target), "signature": envelope["signature"]["value"], "quarantine_objects": len(objects),
        "archive_sha256": row.archive_sha256, "policy_version": row.policy_version,
    })
    return envelope


def remove_expired_views(session: Session, by: str, now: dt.datetime) -> list[int]:
    """Delete the views of grants past their expiry (what ``enclave grant expire`` does,
    here done by the enforcer's own pass); returns the grants' ids."""
    from enclave.catalog.service import CatalogAction, _remove_view, view_files

    expired = session.scalars(select(Grant).where(Grant.revoked_at.is_(None), Grant.expires_at <= now,
                                                  Grant.view_path.is_not(None))).all()
    for grant in expired:
        files = view_files(grant)
        _remove_view(session, grant)
        append_event(session, by, CatalogAction.GRANT_EXPIRE, project=grant.project, target=f"grant {grant.id}",
                     details={"files": files})
    return [g.id for g in expired]


@dataclass
class HousekeepingReport:
    expired_views: list[int] = field(default_factory=list)
    retired: list[str] = field(default_factory=list)
    swept: list[str] = field(default_factory=list)
    destroyed: list[str] = field(default_factory=list)


def housekeeping(settings: Settings, now: dt.datetime | None = None) -> HousekeepingReport:
    """Every data-lifecycle step that is due: delete expired grants' views, retire closed
    projects' data, remove archived workspaces, destroy expired archives. Each step in its
    own unit of work."""
    now = now or utcnow()
    report = HousekeepingReport()
    with unit_of_work(settings) as session:
        report.expired_views = remove_expired_views(session, RETENTION_ACTOR, now)
    with unit_of_work(settings) as session:
        pending = list(session.scalars(select(Project.slug).where(
            Project.status == ProjectStatus.CLOSED, Project.id.not_in(select(DataRetention.project_id)))))
    if pending:
        policy = load_retention(settings.policies_dir)
        for slug in pending:
            with unit_of_work(settings) as session:
                project = session.scalars(select(Project).where(Project.slug == slug)).one()
                retire_project_data(session, RETENTION_ACTOR, settings, project, policy)
            report.retired.append(slug)
    with unit_of_work(settings) as session:
        report.swept = sweep_workspaces(session, settings)
        due = list(session.scalars(select(DataRetention.project_id).where(
            DataRetention.destroyed_at.is_(None), DataRetention.destroy_after <= now)))
    for project_id in due:
        with unit_of_work(settings) as session:
            row = session.get(DataRetention, project_id)
            if row is not None and row.destroyed_at is None:
                destroy_project_data(session, settings, row, now=now)
                report.destroyed.append(row.project.slug)
    return report
