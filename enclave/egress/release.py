"""Release: copy an approved request's files to the export store with a signed record;
download released files; verify a record.

Layout of one release (also what ``download`` writes):

    export/<project>/request-<id>/release.json     the signed release record
    export/<project>/request-<id>/files/<path>     the approved file in its canonical form

Only the canonical form (``enclave.egress.canonical``) leaves: the bytes the reviewers saw,
rebuilt from what the file means, never the bytes the researcher submitted. The record
names both, per file: ``sha256``/``size`` of the released bytes and ``submitted`` (the
sha256 and size of what was submitted). Records of format ``enclave-release/1`` (released
the submitted bytes, so there the two were one) still verify.

The release is built in a staging folder and renamed into place before the database
commits; an interrupted release leaves the request approved and is simply run again
(leftover staging or an uncommitted final folder are replaced).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from enclave.audit import append_event
from enclave.db.models import EgressRequest, Grant, JobRun, User, utcnow
from enclave.egress.canonical import problem_of
from enclave.egress.crash import crash_point
from enclave.egress.policy import EgressEnv
from enclave.egress.quarantine import CHUNK, read_object
from enclave.egress import access
from enclave.egress.service import EgressAudit, get_request, move, target_of
from enclave.egress.signing import load_or_create_key, load_public_key, sign_record, site_verifier, verify_envelope
from enclave.egress.votes import current_votes, file_outcome, required_reviews
from enclave.egress.workflow import Owner
from enclave.enums import EgressStatus, ReviewDecision
from enclave.errors import Conflict, InvalidInput, InvalidTransition, NotFound
from enclave.projects.lifecycle import WORKING

RECORD_NAME = "release.json"
FILES_DIR = "files"
FORMAT = "enclave-release/2"
KNOWN_FORMATS = frozenset({"enclave-release/1", FORMAT})


def release_dir(env: EgressEnv, request: EgressRequest) -> Path:
    return env.settings.export_dir / request.project.slug / f"request-{request.id}"


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _cited_runs(session: Session, request: EgressRequest) -> list[dict[str, Any]]:
    """The job runs the request cites: which notebook (by digest) made which outputs."""
    runs = []
    for run_id in request.details_json.get("cited_runs", []):
        run = session.get(JobRun, run_id)
        if run is not None:
            runs.append({"id": run.id, "notebook": run.notebook, "notebook_sha256": run.notebook_sha256,
                         "status": str(run.status), "outputs": dict(run.outputs_json or {})})
    return runs


def build_record(session: Session, env: EgressEnv, actor: User, request: EgressRequest) -> dict[str, Any]:
    """The release record: what leaves, why it may, who decided, under which rules."""
    groups = {g.id: g for g in request.groups}
    files = []
    for file in request.files:
        files.append({
            "path": file.relpath,
            "group": groups[file.group_id].name if file.group_id in groups else None,
            "sha256": file.canonical_sha256,
            "size": file.canonical_size,
            "submitted": {"sha256": file.sha256, "size": file.size},
            # Rule and verdict only: a finding's message and locations quote the submitted
            # bytes (the very payload that canonical form leaves behind), so they stay inside.
            "check": {"status": file.check_status, "findings": [
                {"rule": f.get("rule"), "status": f.get("status")} for f in (file.check_json or {}).get("findings", [])]},
            "reviews": [{"reviewer": v.reviewer.name, "decision": str(v.decision), "comment": v.comment,
                         "round": v.round, "at": _iso(v.created_at)} for v in current_votes(request, file, session)],
        })
    grants = session.scalars(select(Grant).where(Grant.project_id == request.project_id).order_by(Grant.id))
    return {
        "format": FORMAT,
        "request": {"id": request.id, "title": request.title, "author": request.author.name,
                    "exception_justification": request.exception_justification,
                    "cited_runs": _cited_runs(session, request),
                    "round": request.details_json.get("round")},
        "project": {"slug": request.project.slug, "title": request.project.title, "tier": request.project.tier,
                    "pi": request.project.pi.name},
        "groups": [{"name": g.name, "context": g.context, "controls": g.controls} for g in request.groups],
        "files": files,
        "policies": {
            "disclosure": {"version": env.disclosure.version, "sha256": env.disclosure_digest},
            "egress": {"version": env.policy.version, "reviews_required": required_reviews(env, request)},
        },
        "datasets": [{"dataset": g.dataset_version.dataset.name, "version": g.dataset_version.version,
                      "sha256": g.dataset_version.sha256, "granted_at": _iso(g.granted_at),
                      "expires_at": _iso(g.expires_at), "revoked_at": _iso(g.revoked_at)} for g in grants],
        "timestamps": {"created": _iso(request.created_at), "submitted": _iso(request.submitted_at),
                       "released": _iso(utcnow())},
        "released_by": actor.name,
    }


def _copy_verified(source: Path, target: Path, sha256: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with open(source, "rb") as src, open(target, "wb") as dst:
        while chunk := src.read(CHUNK):
            digest.update(chunk)
            dst.write(chunk)
        dst.flush()
        os.fsync(dst.fileno())
    if digest.hexdigest() != sha256:
        raise InvalidInput(f"{target.name} changed while it was copied: release again")


def _safe_join(base: Path, relpath: str) -> Path:
    parts = PurePosixPath(relpath).parts
    if not parts or any(p in ("..", "") or p.startswith("/") for p in parts):
        raise InvalidInput(f"{relpath!r} is not a safe relative path")
    return base.joinpath(*parts)


def _make_writable(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            path.chmod(0o644)


def release_request(session: Session, actor: User, env: EgressEnv, request_id: int) -> EgressRequest:
    """Copy an approved request's files to the export store with a signed record; mark it released.

    Done by a reviewer or admin who is not a member of the project (the system's step).
    """
    request = get_request(session, request_id, for_update=True)
    access.check_release(actor, request)
    if request.status is not EgressStatus.APPROVED:
        raise InvalidTransition(f"egress request {request.id} is {request.status.value}: only an approved request can be released")
    if request.project.status not in WORKING:
        raise InvalidTransition(
            f"project {request.project.slug} is {request.project.status.value}: nothing is released while it is not active"
        )
    required = required_reviews(env, request)
    for file in request.files:  # fail closed: re-derive the decision rather than trust the status alone
        if file_outcome([v.decision for v in current_votes(request, file, session)], required) is not ReviewDecision.APPROVE:
            raise Conflict(f"outbox/{file.relpath} of request {request.id} is not approved by {required} reviewers: it cannot be released")
        if file.canonical_sha256 is None:  # only the reviewed canonical form may leave; there is none
            reason = problem_of(file.check_json) or (
                "it was submitted before releases were put in canonical form; request changes so that its author resubmits it")
            raise Conflict(f"outbox/{file.relpath} of request {request.id} cannot be released: {reason}")
    final = release_dir(env, request)
    final.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
    for stale in final.parent.glob(f".staging-request-{request.id}-*"):
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".staging-request-{request.id}-"))
    try:
        for file in request.files:
            assert file.canonical_sha256 is not None
            target = _safe_join(staging / FILES_DIR, file.relpath)
            _copy_verified(read_object(env.settings, file.canonical_sha256), target, file.canonical_sha256)
            target.chmod(0o444)  # released bytes are immutable
            crash_point("release.copy")
        record = build_record(session, env, actor, request)
        envelope = sign_record(record, load_or_create_key(env.settings.keys_dir))
        with open(staging / RECORD_NAME, "w", encoding="utf-8") as fh:
            json.dump(envelope, fh, indent=2, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        (staging / RECORD_NAME).chmod(0o444)
        if final.exists():  # left by a release that crashed before its commit: never handed out
            _make_writable(final)
            shutil.rmtree(final)
        os.rename(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    crash_point("release.commit")
    request.released_at = utcnow()
    request.release_record_path = str(final / RECORD_NAME)
    append_event(session, actor, EgressAudit.RELEASE, project=request.project, target=target_of(request), details={
        "record": request.release_record_path, "signature": envelope["signature"]["value"],
        "files": [{"path": f.relpath, "sha256": f.canonical_sha256, "size": f.canonical_size,
                   "submitted_sha256": f.sha256} for f in request.files],
    })
    move(session, env, actor, request, EgressStatus.RELEASED, Owner.SYSTEM)
    return request


def download_release(session: Session, actor: User, env: EgressEnv, request_id: int, dest: Path) -> list[Path]:
    """Copy a released request's files and record to ``dest``; only the author and project members."""
    request = get_request(session, request_id)
    access.check_download(actor, request)
    if request.status is not EgressStatus.RELEASED or not request.release_record_path:
        raise InvalidTransition(f"egress request {request.id} is {request.status.value}: only released requests can be downloaded")
    source = Path(request.release_record_path).parent
    report = verify_release(source / RECORD_NAME, site_verifier(env.settings.keys_dir))
    if not report.ok:
        raise Conflict(f"the export of request {request.id} no longer matches its record ({report.problems[0]}): tell the enclave operator")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    todo = []
    for item in report.record["files"]:
        target = _safe_join(dest / FILES_DIR, item["path"])
        if target.is_symlink() or (target.exists() and (not target.is_file() or _sha256_of(target) != item["sha256"])):
            raise Conflict(f"{target} already exists with other content: download into an empty folder")
        todo.append((item, target))
    for item, target in todo:
        if not target.exists():  # present and identical: an earlier, interrupted download got this far
            # Written under a temporary name and renamed: an interrupted copy never looks complete.
            partial = target.with_name(f".{target.name}.partial")
            _copy_verified(_safe_join(source / FILES_DIR, item["path"]), partial, item["sha256"])
            os.replace(partial, target)
        written.append(target)
    shutil.copyfile(source / RECORD_NAME, dest / RECORD_NAME)
    written.append(dest / RECORD_NAME)
    append_event(session, actor, EgressAudit.DOWNLOAD, project=request.project, target=target_of(request),
                 details={"files": [i["path"] for i in report.record["files"]], "to": str(dest)})
    return written


@dataclass
class VerifyReport:
    """The outcome of verifying a release record (and the files beside it, if present)."""

    ok: bool
    record: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    files_checked: int = 0


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_release(record_path: Path, public_key_path: Path) -> VerifyReport:
    """Check a record's signature and, when a ``files/`` folder lies beside it, every file's bytes.

    Needs no database: a data custodian runs it with the enclave's public key.
    """
    record_path = Path(record_path)
    try:
        envelope = json.loads(record_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NotFound(f"no release record at {record_path}: give the path of a release.json") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidInput(f"{record_path} is not JSON: give the path of a release.json") from None
    try:
        record = verify_envelope(envelope, load_public_key(public_key_path))
    except InvalidInput as exc:
        return VerifyReport(ok=False, problems=[str(exc)])
    report = VerifyReport(ok=True, record=record)
    if record.get("format") not in KNOWN_FORMATS:
        report.ok = False
        report.problems.append(f"unknown record format {record.get('format')!r}: verify it with a newer enclave")
        return report
    files_dir = record_path.parent / FILES_DIR
    if files_dir.is_dir():
        listed = set()
        for item in record.get("files", []):
            path = _safe_join(files_dir, item["path"])
            listed.add(path)
            if not path.is_file():
                report.problems.append(f"{item['path']} is missing")
            elif path.stat().st_size != item["size"] or _sha256_of(path) != item["sha256"]:
                report.problems.append(f"{item['path']} does not match the record (altered)")
            else:
                report.files_checked += 1
        extra = sorted(str(p.relative_to(files_dir)) for p in files_dir.rglob("*") if p.is_file() and p not in listed)
        report.problems += [f"{name} is not in the record (added)" for name in extra]
    report.ok = not report.problems
    return report
