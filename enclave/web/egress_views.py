"""Read-only egress views for the consoles: the outbox to pick files from, and the
reviewer console's door (the queues are ``enclave.egress.queues``; one file as it would
leave is ``enclave.web.preview``).
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from sqlalchemy.orm import Session

from enclave.config import Settings
from enclave.db.models import User
from enclave.disclosure.evidence import is_sidecar, sidecar_path
from enclave.egress import access
from enclave.egress.quarantine import open_outbox
from enclave.egress.service import view_request
from enclave.errors import NotFound
from enclave.projects.service import get_project
from enclave.workspace_fs import EntryKind, printable_name, utf8_name

UNUSABLE = "its name is not UTF-8: rename it in your workspace to add or open it"


def outbox_files(session: Session, actor: User, settings: Settings, slug: str) -> list[dict[str, Any]]:
    """Files in a project's outbox (members only): path, size and whether an evidence
    sidecar travels with it. Sidecars are never offered on their own (they go with their
    table at submission); links and hidden files are left out."""
    project = get_project(session, slug)
    access.check_see_outbox(actor, project)
    found: list[dict[str, Any]] = []
    try:
        outbox = open_outbox(settings, slug)
    except NotFound:
        return found
    with outbox:
        for path, entry in outbox.walk(enter=lambda folder: not folder.name.startswith(".")):
            if entry.kind is EntryKind.FILE and not entry.name.startswith("."):
                found.append({"path": path.as_posix(), "size": entry.size})
    sidecars = {f["path"] for f in found if is_sidecar(PurePosixPath(f["path"]))}
    # A name that is not UTF-8 is listed (shown as \xNN) but cannot be chosen: it must be renamed.
    return [{**f, "evidence": str(sidecar_path(PurePosixPath(f["path"]))) in sidecars} if utf8_name(f["path"])
            else {"path": printable_name(f["path"]), "size": f["size"], "evidence": False, "unusable": UNUSABLE}
            for f in found if f["path"] not in sidecars]


def check_may_review(actor: User, session: Session, request_id: int) -> None:
    """The reviewer console opens only requests this reviewer may see and vote on."""
    access.check_review(actor, view_request(session, actor, request_id))
