"""Copies of a revoked (or expired) view's files left in the project's workspace.

A revoke or expiry event records each view file's sha256 and size
(:func:`enclave.catalog.service.view_files`), because the view itself is deleted at once.
After each enforcement round, every such event not yet scanned is handled: the project's
workspace is walked beneath a descriptor without following any link
(:mod:`enclave.workspace_fs`), files of a view file's size are hashed, and byte copies are
reported to admins as an incident (``revoked_view_copy``, about the project's PI, who is
answerable for the workspace: the files carry no owner but the container's user). Each
scan writes ``hub.revoked_copies_scan`` in the audit log, so it runs once per event.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from enclave.audit import append_event
from enclave.config import Settings
from enclave.db.models import AuditEvent, Project
from enclave.db.session import unit_of_work
from enclave.enums import IncidentKind
from enclave.errors import EnclaveError
from enclave.incidents import open_incident
from enclave.workspace_fs import EntryKind, open_workspace, printable_name

log = logging.getLogger(__name__)

SCAN_ACTION = "hub.revoked_copies_scan"
ENDED_ACTIONS = ("grant.revoke", "grant.expire")


@dataclass(frozen=True)
class Copy:
    path: str      # relative to the workspace
    of: str        # the view file it copies
    sha256: str


def pending_scans(session: Session) -> list[AuditEvent]:
    """Revoke and expiry events with recorded view files that have not been scanned."""
    scanned = set(session.scalars(select(AuditEvent.target).where(AuditEvent.action == SCAN_ACTION)))
    ended = session.scalars(
        select(AuditEvent).where(AuditEvent.action.in_(ENDED_ACTIONS)).order_by(AuditEvent.seq)
    ).all()
    return [e for e in ended if e.target not in scanned and e.project and (e.details or {}).get("files")]


def find_copies(settings: Settings, slug: str, files: dict[str, dict]) -> list[Copy]:
    """Files in the workspace of ``slug`` whose bytes are those of a view file."""
    by_size: dict[int, dict[str, str]] = {}
    for name, info in files.items():
        by_size.setdefault(int(info["size"]), {})[str(info["sha256"])] = name
    found: list[Copy] = []
    try:
        workspace = open_workspace(settings.workspaces_dir, slug)
    except EnclaveError:
        return found  # no workspace yet: nothing can have been copied into it
    with workspace:
        for rel, entry in workspace.walk():
            wanted = by_size.get(entry.size) if entry.kind is EntryKind.FILE else None
            if not wanted:
                continue
            try:
                digest = workspace.sha256_listed(rel.parts)  # whatever bytes its name has
            except EnclaveError:
                continue  # changed or replaced by a link meanwhile
            if digest in wanted:
                found.append(Copy(printable_name(str(rel)), wanted[digest], digest))
    return found


def report_revoked_copies(settings: Settings, actor: str) -> list[tuple[str, list[Copy]]]:
    """Scan the workspaces of grants that ended since the last scan; open an incident for
    each one holding copies. Returns (event target, copies) of each scan."""
    with unit_of_work(settings) as session:
        todo = [(e.target or "", e.project or "", dict(e.details["files"]), e.details.get("dataset"))
                for e in pending_scans(session)]
    done = []
    for target, slug, files, dataset in todo:
        copies = find_copies(settings, slug, files)
        with unit_of_work(settings) as session:
            project = session.scalars(select(Project).where(Project.slug == slug)).one_or_none()
            listed = [{"path": c.path, "copy_of": c.of, "sha256": c.sha256} for c in copies]
            if copies and project is not None:
                open_incident(
                    session, actor, IncidentKind.REVOKED_VIEW_COPY, user=project.pi, project=project, server="",
                    details={"grant": target, "dataset": dataset, "copies": listed,
                             "members": sorted(m.user.name for m in project.memberships)},
                    settings=settings,
                )
                log.warning("%s: %d copies of the ended %s in the workspace of %s", target, len(copies), dataset, slug)
            append_event(session, actor, SCAN_ACTION, project=slug[:40], target=target,
                         details={"copies": listed, "files": len(files)})
        done.append((target, copies))
    return done
