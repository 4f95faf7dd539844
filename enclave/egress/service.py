"""Egress requests: create, add files in groups, submit (quarantine + checks), withdraw, list.

Every function takes the session and the acting user, raises ``enclave.errors`` with one
line saying what to do, appends an audit event in the caller's transaction, and never
commits (the caller's unit of work does). Notifications go out after commit.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from sqlalchemy import ColumnElement, String, cast, literal, select
from sqlalchemy.orm import Session

from enclave.audit import append_event
from enclave.db.models import (
    EgressFile,
    EgressFileGroup,
    EgressReply,
    EgressRequest,
    JobRun,
    User,
    utcnow,
)
from enclave.disclosure.evidence import EVIDENCE_SUFFIX, is_sidecar, sidecar_path
from enclave.disclosure.verdict import Verdict, worst
from enclave.egress import access, notify
from enclave.egress.canonical import canonicalise_objects, with_canonical_findings
from enclave.egress.checks import check_objects
from enclave.egress.policy import EgressEnv
from enclave.egress.quarantine import StoredFile, inspect_outbox_file, normalise_relpath, quarantine_file
from enclave.egress.replay import differencing_on_submit, evidence_verifier
from enclave.egress.votes import current_round, current_votes, file_outcome, file_round, required_reviews
from enclave.egress.workflow import EDITABLE, Owner, transition
from enclave.enums import EgressStatus, ReviewDecision
from enclave.errors import InvalidInput, InvalidTransition, NotFound
from enclave.projects.lifecycle import WORKING
from enclave.projects.service import get_project


class EgressAudit:
    """Audit actions written by the egress capability."""

    CREATE = "egress.create"
    ADD_FILES = "egress.add_files"
    REMOVE_FILE = "egress.remove_file"
    SET_GROUP = "egress.set_group"
    SUBMIT = "egress.submit"
    TRANSITION = "egress.transition"
    VOTE = "egress.vote"
    RELEASE = "egress.release"
    DOWNLOAD = "egress.download"
    REPLY = "egress.reply"


TARGET_PREFIX = "egress:"


def target_of(request: EgressRequest) -> str:
    return f"{TARGET_PREFIX}{request.id}"


def target_sql() -> ColumnElement[str]:
    """``target_of`` in SQL, for a query over requests."""
    return literal(TARGET_PREFIX) + cast(EgressRequest.id, String)


# --- reading -------------------------------------------------------------------------------

def get_request(session: Session, request_id: int, *, for_update: bool = False) -> EgressRequest:
    """The request, locked against concurrent changes when ``for_update``."""
    if for_update:
        # Lock the row alone (PostgreSQL refuses FOR UPDATE over the eager outer joins),
        # then reload it so the rest of the unit of work sees the latest committed state.
        session.execute(select(EgressRequest.id).where(EgressRequest.id == request_id).with_for_update())
    request = session.get(EgressRequest, request_id, populate_existing=for_update)
    if request is None:
        raise NotFound(f"no egress request {request_id}: see 'enclave egress list'")
    return request


def view_request(session: Session, actor: User, request_id: int) -> EgressRequest:
    """The request, if ``actor`` may see it."""
    request = get_request(session, request_id)
    access.check_view(actor, request)
    return request


def list_requests(
    session: Session, actor: User, *, project: str | None = None, status: EgressStatus | None = None
) -> list[EgressRequest]:
    """Requests the actor may see: their projects' requests; all but drafts for reviewers; all for admins."""
    query = select(EgressRequest).order_by(EgressRequest.id)
    if project:
        query = query.where(EgressRequest.project_id == get_project(session, project).id)
    if status:
        query = query.where(EgressRequest.status == status)
    return [r for r in session.scalars(query) if access.can_view(actor, r)]


# --- changing --------------------------------------------------------------------------------

def _note(request: EgressRequest, actor: User | str, old: EgressStatus, new: EgressStatus) -> dict[str, Any]:
    return {"request": request.id, "project": request.project.slug, "title": request.title,
            "from": str(old), "to": str(new), "actor": actor.name if isinstance(actor, User) else actor,
            "at": utcnow().isoformat(), "people": [request.author.name]}


def move(
    session: Session, env: EgressEnv, actor: User, request: EgressRequest, target: EgressStatus, by: Owner,
    **details: Any,
) -> None:
    """Make one transition of the table, audit it, and queue its notification."""
    step = transition(request.status, target, by)
    old = request.status
    request.status = target
    request.updated_at = utcnow()
    append_event(session, actor, EgressAudit.TRANSITION, project=request.project, target=target_of(request),
                 details={"action": step.action, "from": old, "to": target, "by": by, **details})
    notify.queue(session, env, _note(request, actor, old, target))


def _check_editable(request: EgressRequest) -> None:
    if request.status not in EDITABLE:
        raise InvalidTransition(
            f"egress request {request.id} is {request.status.value}: files and groups change only while it is "
            "a draft or returned for changes"
        )


def _check_project_working(request_or_project: Any) -> None:
    project = getattr(request_or_project, "project", request_or_project)
    if project.status not in WORKING:
        raise InvalidTransition(f"project {project.slug} is {project.status.value}: egress needs an active project")


def create_request(
    session: Session, actor: User, env: EgressEnv, slug: str, title: str = "",
    cited_runs: list[int] | None = None,
) -> EgressRequest:
    """A researcher member of an active project opens a draft request."""
    project = get_project(session, slug)
    access.check_create(actor, project)
    _check_project_working(project)
    runs = sorted(set(cited_runs or []))
    for run_id in runs:
        run = session.get(JobRun, run_id)
        if run is None or run.project_id != project.id:
            raise InvalidInput(f"job run {run_id} is not a run of project {slug}: cite runs listed by 'enclave job list'")
    request = EgressRequest(project=project, author=actor, title=title.strip(), status=EgressStatus.DRAFT,
                            details_json={"round": 0, "cited_runs": runs})
    session.add(request)
    session.flush()
    append_event(session, actor, EgressAudit.CREATE, project=project, target=target_of(request),
                 details={"title": request.title, "cited_runs": runs})
    return request


def _group(session: Session, request: EgressRequest, name: str) -> EgressFileGroup | None:
    return next((g for g in request.groups if g.name == name), None)


def set_group(
    session: Session, actor: User, env: EgressEnv, request_id: int, name: str,
    context: str | None = None, controls: str | None = None,
) -> EgressFileGroup:
    """Create a group or change its context (what, which population) and controls applied."""
    request = get_request(session, request_id, for_update=True)
    access.check_edit(actor, request)
    return _set_group(session, actor, request, name, context, controls)


def _set_group(
    session: Session, actor: User, request: EgressRequest, name: str, context: str | None, controls: str | None,
) -> EgressFileGroup:
    _check_editable(request)
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise InvalidInput("give the group a name of 1-100 characters with --group, e.g. --group table1")
    group = _group(session, request, name)
    if group is None:
        group = EgressFileGroup(name=name, context="", controls="")
        request.groups.append(group)
    if context is not None:
        group.context = context.strip()
    if controls is not None:
        group.controls = controls.strip()
    request.updated_at = utcnow()
    session.flush()
    append_event(session, actor, EgressAudit.SET_GROUP, project=request.project, target=target_of(request),
                 details={"group": name, "context": group.context, "controls": group.controls})
    return group


def add_files(
    session: Session, actor: User, env: EgressEnv, request_id: int, relpaths: list[str], group: str,
    context: str | None = None, controls: str | None = None,
) -> list[EgressFile]:
    """Add outbox files to a group of the request (checked now, copied at submit)."""
    request = get_request(session, request_id, for_update=True)
    access.check_edit(actor, request)
    _check_editable(request)
    _check_project_working(request)
    if not relpaths:
        raise InvalidInput("name at least one file of the outbox to add, e.g. tables/counts.csv")
    cleaned = [normalise_relpath(p) for p in relpaths]
    for relpath in cleaned:
        # Evidence is read by the checker at submission, never released: it is not a file to choose.
        if is_sidecar(PurePosixPath(relpath)):
            table = relpath.removesuffix(EVIDENCE_SUFFIX)
            raise InvalidInput(f"outbox/{relpath} is the evidence of outbox/{table}: it goes with its table "
                               f"when the request is submitted; add {table} instead")
        inspect_outbox_file(env.settings, request.project.slug, relpath, env.policy.limits.max_file_bytes)
    known = {f.relpath: f for f in request.files}
    new_count = len(set(cleaned) - set(known))
    if len(known) + new_count > env.policy.limits.max_files:
        raise InvalidInput(
            f"a request may hold at most {env.policy.limits.max_files} files (this would make {len(known) + new_count}): "
            "split the outputs over several requests"
        )
    target_group = _set_group(session, actor, request, group, context, controls)
    added: list[EgressFile] = []
    for relpath in cleaned:
        file = known.get(relpath)
        if file is None:
            file = EgressFile(relpath=relpath, group_id=target_group.id)
            request.files.append(file)
        else:
            file.group_id = target_group.id
        added.append(file)
    session.flush()
    append_event(session, actor, EgressAudit.ADD_FILES, project=request.project, target=target_of(request),
                 details={"group": target_group.name, "files": cleaned})
    return added


def remove_file(session: Session, actor: User, env: EgressEnv, request_id: int, relpath: str) -> None:
    """Take a file out of a draft or returned request."""
    request = get_request(session, request_id, for_update=True)
    access.check_edit(actor, request)
    _check_editable(request)
    relpath = normalise_relpath(relpath)
    file = next((f for f in request.files if f.relpath == relpath), None)
    if file is None:
        raise NotFound(f"egress request {request.id} has no file {relpath}: see 'enclave egress show {request.id}'")
    request.files.remove(file)
    request.updated_at = utcnow()
    session.flush()
    append_event(session, actor, EgressAudit.REMOVE_FILE, project=request.project, target=target_of(request),
                 details={"file": relpath})


def _last_outcome_was_approve(session: Session, env: EgressEnv, request: EgressRequest, file: EgressFile) -> bool:
    votes = [v.decision for v in current_votes(request, file, session)]
    return file_outcome(votes, required_reviews(env, request)) is ReviewDecision.APPROVE


def submit_request(
    session: Session, actor: User, env: EgressEnv, request_id: int, exception: str | None = None
) -> EgressRequest:
    """Quarantine and check every file, then send the request to review (or back, on a hard fail).

    A hard fail returns the request to its author with the findings unless ``exception``
    (a written justification, which reviewers see) is given. Files whose content changed,
    and files not approved last time, get their reviews reset.
    """
    request = get_request(session, request_id, for_update=True)
    access.check_submit(actor, request)
    _check_project_working(request)
    transition(request.status, EgressStatus.SUBMITTED, Owner.RESEARCHER)
    files = list(request.files)
    if not files:
        raise InvalidInput(f"egress request {request.id} has no files: add some with 'enclave egress add {request.id} PATH --group NAME'")
    limits = env.policy.limits
    if len(files) > limits.max_files:
        raise InvalidInput(f"a request may hold at most {limits.max_files} files (it has {len(files)}): remove some or split the request")
    groups = {g.id: g for g in request.groups}
    for file in files:
        group = groups.get(file.group_id) if file.group_id is not None else None
        if group is None:
            raise InvalidInput(f"outbox/{file.relpath} is in no group: add it again with --group NAME")
    for group in request.groups:
        if any(f.group_id == group.id for f in files):
            missing = [w for w, text in (("context", group.context), ("controls", group.controls)) if not text.strip()]
            if missing:
                raise InvalidInput(
                    f"group {group.name} has no {' and no '.join(missing)}: describe it with "
                    f"'enclave egress add {request.id} --group {group.name} --context TEXT --controls TEXT' "
                    "(context: what the output is and which population; controls: suppression, rounding, thresholds applied)"
                )
    justification = (exception or "").strip() or None
    new_round = current_round(request) + 1
    previous = {f.id: (f.sha256, _last_outcome_was_approve(session, env, request, f) if f.sha256 else False) for f in files}
    stored = {f.relpath: quarantine_file(env.settings, request.project.slug, f.relpath, limits.max_file_bytes) for f in files}
    # What reviewers will see and release will write; a file without one fails its check.
    canonical = canonicalise_objects(env.settings, env.disclosure, {p: s.path for p, s in stored.items()})
    evidence = {p: e for p in stored if (e := _quarantine_evidence(env, request.project.slug, p)) is not None}
    # Evidence is trusted only once re-run in a container over the project's views.
    verify = evidence_verifier(session, env, request.project) if evidence else None
    results = check_objects(env.settings, env.disclosure, {p: s.path for p, s in stored.items()},
                            {p: e.path for p, e in evidence.items()}, verify)
    results = with_canonical_findings(results, canonical)
    # Cells that differ from earlier outputs' cells by a few people (enclave.disclosure.differencing).
    # With the cell-key method on, a table's canonical form becomes its perturbed bytes.
    results = differencing_on_submit(session, env, request, stored, results, verify, canonical)
    reset: list[str] = []
    for file in files:
        copy = stored[file.relpath]
        old_sha, was_approved = previous[file.id]
        keep_round = old_sha == copy.sha256 and was_approved and file.canonical_sha256 == canonical[file.relpath].sha256
        if not keep_round:
            reset.append(file.relpath)
        result = results[file.relpath]
        file.sha256, file.size = copy.sha256, copy.size
        file.canonical_sha256, file.canonical_size = canonical[file.relpath].sha256, canonical[file.relpath].size
        file.check_status = result["status"]
        file.check_json = {"round": file_round(file) if keep_round else new_round, **result,
                           "evidence_sha256": evidence[file.relpath].sha256 if file.relpath in evidence else None}
    request.details_json = {**request.details_json, "round": new_round}
    request.exception_justification = justification
    request.submitted_at = utcnow()
    session.flush()
    overall = worst(Verdict(f.check_status) for f in files)
    append_event(session, actor, EgressAudit.SUBMIT, project=request.project, target=target_of(request), details={
        "round": new_round, "check_status": overall, "exception": justification, "reviews_reset": reset,
        "files": [{"path": f.relpath, "sha256": f.sha256, "size": f.size, "canonical_sha256": f.canonical_sha256,
                   "check": f.check_status, "evidence": (f.check_json or {}).get("evidence", {}).get("status")}
                  for f in files],
    })
    move(session, env, actor, request, EgressStatus.SUBMITTED, Owner.RESEARCHER, round=new_round)
    if overall is Verdict.FAIL and justification is None:
        failed = [f.relpath for f in files if f.check_status == Verdict.FAIL]
        move(session, env, actor, request, EgressStatus.CHANGES_REQUESTED, Owner.SYSTEM,
             reason="automated checks failed", failed=failed)
    else:
        move(session, env, actor, request, EgressStatus.IN_REVIEW, Owner.SYSTEM, check_status=overall)
    return request


def _quarantine_evidence(env: EgressEnv, slug: str, relpath: str) -> StoredFile | None:
    """The table's evidence sidecar, quarantined for the checker (never released), if there is one."""
    if is_sidecar(PurePosixPath(relpath)):
        return None
    try:
        return quarantine_file(env.settings, slug, str(sidecar_path(PurePosixPath(relpath))), env.policy.limits.max_file_bytes)
    except NotFound:
        return None


def withdraw_request(session: Session, actor: User, env: EgressEnv, request_id: int) -> EgressRequest:
    """The author withdraws a draft, returned or in-review request."""
    request = get_request(session, request_id, for_update=True)
    access.check_withdraw(actor, request)
    move(session, env, actor, request, EgressStatus.WITHDRAWN, Owner.RESEARCHER)
    return request


# --- answering reviewers ------------------------------------------------------------------------

MAX_REPLY_CHARS = 5000


def reply_to_comment(
    session: Session, actor: User, env: EgressEnv, request_id: int, relpath: str, message: str
) -> EgressReply:
    """The author or a project member answers the reviewers' comments on one file of a
    request returned for changes (before resubmitting it).

    The reply is kept with the round it answers and shown to everyone who may see the
    request; it records no reviewer or vote, so reviewers learn nothing of others' votes.
    """
    request = get_request(session, request_id, for_update=True)
    access.check_reply(actor, request)
    if request.status is not EgressStatus.CHANGES_REQUESTED:
        raise InvalidTransition(
            f"egress request {request.id} is {request.status.value}: replies to reviewers are taken only while "
            "it is returned for changes"
        )
    _check_project_working(request)
    relpath = normalise_relpath(relpath)
    file = next((f for f in request.files if f.relpath == relpath), None)
    if file is None:
        raise NotFound(f"egress request {request.id} has no file {relpath}: see 'enclave egress show {request.id}'")
    text = (message or "").strip()
    if not text:
        raise InvalidInput("write the reply with --message TEXT: what you changed, or why the output is safe as it is")
    if len(text) > MAX_REPLY_CHARS:
        raise InvalidInput(f"a reply may have at most {MAX_REPLY_CHARS} characters (this has {len(text)}): shorten it")
    if not any(v.comment for v in current_votes(request, file, session)):
        raise InvalidInput(f"no reviewer commented on outbox/{relpath}: there is nothing to reply to")
    reply = EgressReply(request_id=request.id, file_id=file.id, author_id=actor.id, round=current_round(request),
                        message=text)
    session.add(reply)
    session.flush()
    append_event(session, actor, EgressAudit.REPLY, project=request.project, target=target_of(request),
                 details={"file": relpath, "round": reply.round, "message": text})
    return reply


def replies_of(session: Session, request: EgressRequest) -> list[EgressReply]:
    """The replies on a request, oldest first (callers have checked the viewer may see it)."""
    return list(session.scalars(
        select(EgressReply).where(EgressReply.request_id == request.id).order_by(EgressReply.id)
    ))
