"""Read-only egress views for the consoles: the outbox to pick files from, the reviewer's
queue, and one quarantined file rendered for review (never as a download).
"""

from __future__ import annotations

import base64
import csv
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from enclave.config import Settings
from enclave.db.models import User
from enclave.egress.policy import EgressEnv
from enclave.egress.quarantine import normalise_relpath, outbox_dir, read_object
from enclave.egress.schemas import EgressRequestOut
from enclave.egress.service import is_reviewer_for, list_requests, view_request
from enclave.enums import EgressStatus
from enclave.errors import NotFound, PermissionDenied
from enclave.permissions import check_member
from enclave.projects.service import get_project

MAX_TABLE_ROWS = 500
MAX_TEXT_BYTES = 200_000
IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif"}
_CELL = re.compile(r"line (\d+), column '((?:[^'\\]|\\.)*)'")
_COLUMN = re.compile(r"^column '((?:[^'\\]|\\.)*)'$")


def outbox_files(session: Session, actor: User, settings: Settings, slug: str) -> list[dict[str, Any]]:
    """Files in a project's outbox (members only): path and size; links and hidden files are left out."""
    project = get_project(session, slug)
    check_member(actor, project, f"see the outbox of project {slug}")
    root = outbox_dir(settings, slug)
    found: list[dict[str, Any]] = []
    if not root.is_dir():
        return found
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not os.path.islink(os.path.join(folder, d)))
        for name in sorted(files):
            path = Path(folder) / name
            if name.startswith(".") or path.is_symlink() or not path.is_file():
                continue
            found.append({"path": path.relative_to(root).as_posix(), "size": path.stat().st_size})
    return found


def review_queue(session: Session, actor: User) -> list[EgressRequestOut]:
    """Requests in review that ``actor`` may review, oldest submission first."""
    waiting = [r for r in list_requests(session, actor, status=EgressStatus.IN_REVIEW) if is_reviewer_for(actor, r)]
    waiting.sort(key=lambda r: (r.submitted_at or r.created_at, r.id))
    return [EgressRequestOut.of(r) for r in waiting]


@dataclass
class FileView:
    """One quarantined file as the review page shows it."""

    path: str
    kind: str  # table | notebook | image | text | other
    findings: list[dict[str, Any]]
    check_status: str | None
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    flagged: set[tuple[int, str]] = field(default_factory=set)  # (data row index, column)
    flagged_columns: set[str] = field(default_factory=set)
    truncated: bool = False
    cells: list[dict[str, Any]] = field(default_factory=list)
    flagged_notebook_cells: set[int] = field(default_factory=set)
    image_data: str | None = None
    text: str | None = None


def file_view(session: Session, actor: User, env: EgressEnv, request_id: int, relpath: str) -> FileView:
    """A file of a request rendered for its reviewers and its project's members."""
    request = view_request(session, actor, request_id)
    relpath = normalise_relpath(relpath)
    file = next((f for f in request.files if f.relpath == relpath), None)
    if file is None:
        raise NotFound(f"egress request {request.id} has no file {relpath}")
    findings = list((file.check_json or {}).get("findings", []))
    view = FileView(path=relpath, kind="other", findings=findings, check_status=file.check_status)
    if not file.sha256:
        return view  # a draft: not yet quarantined, nothing to show
    source = read_object(env.settings, file.sha256)
    suffix = Path(relpath).suffix.lower()
    if suffix == ".csv":
        _table(view, source)
    elif suffix == ".ipynb":
        _notebook(view, source)
    elif suffix in IMAGE_TYPES:
        view.kind = "image"
        view.image_data = f"data:{IMAGE_TYPES[suffix]};base64," + base64.b64encode(source.read_bytes()).decode()
    elif suffix in (".txt", ".md", ".log", ".tsv", ".json"):
        view.kind = "text"
        view.text = source.read_bytes()[:MAX_TEXT_BYTES].decode("utf-8", errors="replace")
    return view


def _table(view: FileView, source: Path) -> None:
    view.kind = "table"
    with open(source, newline="", encoding="utf-8", errors="replace") as fh:
        reader = csv.reader(fh)
        view.header = next(reader, [])
        for i, row in enumerate(reader):
            if i >= MAX_TABLE_ROWS:
                view.truncated = True
                break
            view.rows.append(row)
    for finding in view.findings:
        if finding.get("status") == "pass":
            continue
        for location in finding.get("locations", []):
            cell = _CELL.search(location)
            if cell:
                view.flagged.add((int(cell.group(1)) - 2, cell.group(2)))
            elif column := _COLUMN.match(location):
                view.flagged_columns.add(column.group(1))


def _notebook(view: FileView, source: Path) -> None:
    view.kind = "notebook"
    try:
        nb = json.loads(source.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        view.kind = "other"
        return
    for index, cell in enumerate(nb.get("cells", []) if isinstance(nb, dict) else []):
        outputs = []
        for out in cell.get("outputs", []) if isinstance(cell, dict) else []:
            data = out.get("data", {}) if isinstance(out, dict) else {}
            image = next((m for m in ("image/png", "image/jpeg") if m in data), None)
            if image:
                outputs.append({"image": f"data:{image};base64,{''.join(data[image]).strip()}"})
            elif "text/plain" in data or "text" in out:
                text = data.get("text/plain", out.get("text", ""))
                outputs.append({"text": "".join(text) if isinstance(text, list) else str(text)})
        src = cell.get("source", "") if isinstance(cell, dict) else ""
        view.cells.append({"index": index, "type": cell.get("cell_type", "code") if isinstance(cell, dict) else "?",
                           "source": "".join(src) if isinstance(src, list) else str(src), "outputs": outputs})
    for finding in view.findings:
        if finding.get("status") == "pass":
            continue
        for location in finding.get("locations", []):
            for match in re.finditer(r"cell (\d+)", location):
                view.flagged_notebook_cells.add(int(match.group(1)) - 1)  # the checker counts from 1


def check_may_review(actor: User, session: Session, request_id: int) -> None:
    """The reviewer console shows only requests this reviewer may vote on."""
    request = view_request(session, actor, request_id)
    if not is_reviewer_for(actor, request):
        raise PermissionDenied(f"{actor.name} may not review egress request {request_id}: "
                               "it is their own, their project's, or they are not a reviewer")

