"""Read-only job views for the consoles: the workspace notebooks a member may submit, a
run's log (whole, or from an offset for the live page), and where an egress file came from.

Every function checks who may see what through ``enclave.jobs.service`` first.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import PurePosixPath

from sqlalchemy.orm import Session

from enclave.config import Settings
from enclave.db.models import User
from enclave.egress.schemas import EgressRequestDetail
from enclave.jobs.service import (
    OUTPUTS_RELDIR,
    RunProvenance,
    get_job,
    get_run_provenance,
    log_path,
    output_origin,
)
from enclave.permissions import check_member
from enclave.errors import NotFound
from enclave.projects.service import get_project
from enclave.workspace_fs import EntryKind, open_workspace, utf8_name

MAX_NOTEBOOKS = 500
MAX_DEPTH = 6
LOG_TAIL_BYTES = 256 * 1024


def workspace_notebooks(session: Session, actor: User, settings: Settings, slug: str) -> list[str]:
    """The ``.ipynb`` files of a project's workspace (members only), outside ``outbox/``;
    hidden folders, checkpoints and links are left out."""
    project = get_project(session, slug)
    check_member(actor, project, f"see the workspace of project {slug}")
    found: list[str] = []
    try:
        workspace = open_workspace(settings.workspaces_dir, project.slug)
    except NotFound:
        return found

    def enter(folder: PurePosixPath) -> bool:
        return not folder.name.startswith(".") and folder != PurePosixPath(OUTPUTS_RELDIR.parts[0])

    with workspace:
        for path, entry in workspace.walk(max_depth=MAX_DEPTH, enter=enter):
            if entry.kind is EntryKind.FILE and entry.name.endswith(".ipynb") and not entry.name.startswith(".") \
                    and utf8_name(path.as_posix()):  # a job is asked for by name: rename one that is not UTF-8
                found.append(path.as_posix())
                if len(found) >= MAX_NOTEBOOKS:
                    break
    return found


def run_log(session: Session, actor: User, settings: Settings, run_id: int) -> str:
    """The end of a run's log (papermill's progress and the cells' output), for those who may see the run."""
    chunk = log_since(session, actor, settings, run_id)
    return "[... earlier lines left out ...]\n" + chunk.text if chunk.cut else chunk.text


@dataclass(frozen=True)
class LogChunk:
    """Part of a run's log: the text, the byte offset to ask from next, and whether earlier
    bytes were left out (a log longer than LOG_TAIL_BYTES)."""

    text: str
    next_offset: int
    cut: bool


def log_since(session: Session, actor: User, settings: Settings, run_id: int, offset: int = 0) -> LogChunk:
    """The log after byte ``offset``, at most its last LOG_TAIL_BYTES, for the run page that
    follows a run live (those who may see the run)."""
    get_job(session, actor, run_id)
    path = log_path(settings, run_id)
    if not path.is_file():
        return LogChunk("", 0, False)
    with open(path, "rb") as fh:
        size = fh.seek(0, os.SEEK_END)
        start = min(max(0, offset), size)
        cut = size - start > LOG_TAIL_BYTES
        if cut:
            start = size - LOG_TAIL_BYTES
        fh.seek(start)
        data = fh.read(size - start)
    # Never split a UTF-8 character: up to 3 trailing bytes wait for the next poll.
    for keep in range(len(data), max(-1, len(data) - 4), -1):
        try:
            return LogChunk(data[:keep].decode("utf-8"), start + keep, cut)
        except UnicodeDecodeError:
            continue
    return LogChunk(data.decode("utf-8", errors="replace"), start + len(data), cut)


@dataclass(frozen=True)
class FileOrigin:
    """Which run wrote an egress file, and whether the submitted bytes are what it recorded."""

    run_id: int
    path: str
    unchanged: bool | None  # None: not yet submitted (no quarantined copy to compare)


def file_origins(session: Session, actor: User, detail: EgressRequestDetail) -> dict[str, FileOrigin]:
    """Per file of an egress request written by one of its project's runs: the run, and whether unchanged."""
    origins: dict[str, FileOrigin] = {}
    for f in detail.file_list:
        found = output_origin(session, actor, detail.project, f.path, f.sha256 or "")
        if found is not None:
            origins[f.path] = FileOrigin(found.run_id, found.path, found.unchanged if f.sha256 else None)
    return origins


def cited_runs(session: Session, actor: User, detail: EgressRequestDetail) -> list[RunProvenance]:
    """The provenance of the runs an egress request cites."""
    return [get_run_provenance(session, actor, int(run_id)) for run_id in detail.cited_runs]
