"""Jobs: what researchers, reviewers and the worker do with runs.

Researchers submit a notebook of their project's workspace with parameters; the run waits
in a database-backed queue until a worker (``enclave job worker``) claims it and executes
it with papermill in a fresh container (``enclave.jobs.runner``). The notebook is copied
at submission into a content-addressed store, so what runs (and what a rerun repeats) is
exactly what was submitted, whatever happens to the workspace afterwards.

Every function takes the session and the acting user (or, for the worker's moves, the
worker's name) and writes an audit event in the caller's transaction.
"""

from __future__ import annotations

import datetime as dt
import json
import keyword
import re
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from enclave.audit import append_event
from enclave.clock import utcnow
from enclave.config import Settings
from enclave.db.models import AuditEvent, JobRun, Membership, Project, User
from enclave.enums import Role
from enclave.errors import InvalidInput, InvalidTransition, NotFound, PermissionDenied
from enclave.jobs.parameters import NotebookParameter, check_parameters, read_parameters
from enclave.jobs.provenance import sha256_bytes
from enclave.jobs.states import FINAL, JobAction, JobActor, JobStatus, transition_for
from enclave.permissions import check_member, is_member
from enclave.projects.lifecycle import WORKING
from enclave.projects.service import check_can_view, get_project
from enclave.workspace_fs import LinkRefused, NotRegularFile, TooLarge, open_workspace

# The name the worker acts under in the audit log.
WORKER = "system:job-worker"
# A notebook larger than this is refused at submission (it is copied and hashed).
MAX_NOTEBOOK_BYTES = 20 * 1024 * 1024
# The PostgreSQL advisory lock that serialises claims (any constant unique to jobs).
CLAIM_LOCK_KEY = 0x656E636A6F6273  # "encjobs"
PARAM_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


class JobEvent(StrEnum):
    SUBMIT = "job.submit"
    RERUN = "job.rerun"
    START = "job.start"
    SUCCEED = "job.succeed"
    FAIL = "job.fail"
    CANCEL = "job.cancel"
    REQUEUE = "job.requeue"


_EVENT = {JobAction.START: JobEvent.START, JobAction.SUCCEED: JobEvent.SUCCEED,
          JobAction.FAIL: JobEvent.FAIL, JobAction.CANCEL: JobEvent.CANCEL, JobAction.REQUEUE: JobEvent.REQUEUE}


# --- where a run's files live --------------------------------------------------------

def jobs_dir(settings: Settings) -> Path:
    """The jobs' private state (stored notebooks, logs): outside every container."""
    return settings.home / "jobs"


def stored_notebook(settings: Settings, sha256: str) -> Path:
    return jobs_dir(settings) / "notebooks" / f"{sha256}.ipynb"


def log_path(settings: Settings, run_id: int) -> Path:
    return jobs_dir(settings) / "runs" / str(run_id) / "log.txt"


def workspace_dir(settings: Settings, project: Project) -> Path:
    return settings.workspaces_dir / project.slug


OUTPUTS_RELDIR = PurePosixPath("outbox") / "jobs"


def rerun_output_dir(settings: Settings, run_id: int) -> Path:
    """Where a rerun's outputs go: the reviewers' area, outside every workspace."""
    return jobs_dir(settings) / "reruns" / str(run_id)


def output_dir(settings: Settings, run: JobRun) -> Path:
    """Where the executed notebook and every file the run wrote are: ``<workspace>/outbox/
    jobs/<run id>/`` for a run, the reviewers' area (:func:`rerun_output_dir`) for a rerun,
    which never writes into the researchers' outbox."""
    if run.rerun_of_id is not None:
        return rerun_output_dir(settings, run.id)
    return workspace_dir(settings, run.project) / OUTPUTS_RELDIR / str(run.id)


def output_area(run: JobRun) -> str:
    """Where a run's outputs are, as people are shown it: relative to the workspace for a
    run, under ``$ENCLAVE_HOME`` (the reviewers' area) for a rerun."""
    if run.rerun_of_id is not None:
        return f"$ENCLAVE_HOME/jobs/reruns/{run.id}"
    return f"{OUTPUTS_RELDIR}/{run.id}"


def executed_name(run: JobRun) -> str:
    """The executed notebook's file name in the run's output directory."""
    return PurePosixPath(run.notebook).name


# --- parsing what people type ----------------------------------------------------------

def parse_parameters(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` pairs into papermill parameters; values are JSON when they parse as JSON
    (numbers, true/false, null, lists), otherwise strings."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not PARAM_RE.match(key) or keyword.iskeyword(key):
            raise InvalidInput(f"parameter {pair!r} is not NAME=VALUE with NAME a Python identifier, e.g. -p min_age=40")
        if key in params:
            raise InvalidInput(f"parameter {key!r} is given twice: give each parameter once")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        params[key] = value
    return params


def _workspace_notebook(settings: Settings, project: Project, notebook: str) -> tuple[str, bytes]:
    """The notebook's path relative to the workspace, and its bytes; refuse anything outside."""
    rel = PurePosixPath(notebook.strip().removeprefix("./"))
    if not notebook.strip() or rel.is_absolute() or ".." in rel.parts:
        raise InvalidInput(f"notebook {notebook!r} must be a path inside the project workspace, e.g. notebooks/analysis.ipynb")
    if rel.suffix != ".ipynb":
        raise InvalidInput(f"{notebook!r} is not a notebook: give an .ipynb file of the workspace")
    if rel.parts and rel.parts[0] == "outbox":
        raise InvalidInput(f"{notebook!r} is in the outbox: run a notebook from the workspace, not an output")
    # Opened relative to the workspace with no link followed at any depth, and read once
    # from that descriptor: a member swapping a folder for a link to another project's
    # workspace (renameat2 in a loop) gets a refusal, never the other project's bytes.
    try:
        with open_workspace(settings.workspaces_dir, project.slug) as workspace:
            data = workspace.read_bytes(rel, max_bytes=MAX_NOTEBOOK_BYTES)
    except LinkRefused:
        raise InvalidInput(f"notebook {notebook!r} is a link or lies in a linked folder, which may lead outside the "
                           "project workspace: links are not followed; give a real file inside it") from None
    except TooLarge:
        raise InvalidInput(f"notebook {rel} is larger than {MAX_NOTEBOOK_BYTES // 2**20} MiB: clear its outputs and retry") from None
    except NotRegularFile:
        raise InvalidInput(f"{rel} is not a regular file: give an .ipynb file of the workspace") from None
    except NotFound:
        raise NotFound(f"no notebook {rel} in the workspace of {project.slug}: save it there first") from None
    try:
        nb = json.loads(data)
        if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
            raise ValueError
    except ValueError:
        raise InvalidInput(f"{rel} is not a valid notebook (not nbformat JSON): open and save it in JupyterLab") from None
    return rel.as_posix(), data


def _store_notebook(settings: Settings, data: bytes) -> str:
    digest = sha256_bytes(data)
    target = stored_notebook(settings, digest)
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.chmod(0o444)
        tmp.replace(target)
    return digest


# --- permissions -------------------------------------------------------------------------

def check_can_run(actor: User, project: Project, doing: str) -> None:
    """Members run jobs, and only while the project is in a working status."""
    check_member(actor, project, doing)
    _check_working(project, doing)


def _check_working(project: Project, doing: str) -> None:
    if project.status not in WORKING:
        raise InvalidTransition(f"cannot {doing}: project {project.slug} is {project.status.value}, not active")


def check_can_rerun(actor: User, project: Project) -> None:
    """Members repeat their runs; reviewers and admins repeat any run to check it."""
    if not (is_member(actor, project) or actor.roles & {Role.REVIEWER, Role.ADMIN}):
        raise PermissionDenied(f"{actor.name} may not rerun jobs of {project.slug}: that needs membership or the reviewer role")
    _check_working(project, "rerun a job")


def check_can_cancel(actor: User, run: JobRun) -> None:
    if not (is_member(actor, run.project) or Role.ADMIN in actor.roles):
        raise PermissionDenied(f"{actor.name} may not cancel run {run.id}: they are not a member of {run.project.slug}")


# --- what people do ----------------------------------------------------------------------

def submit_job(
    session: Session, actor: User, settings: Settings, slug: str, notebook: str,
    parameters: dict[str, Any] | None = None,
) -> JobRun:
    """Queue a run of a workspace notebook with papermill ``parameters``."""
    project = get_project(session, slug)
    check_can_run(actor, project, f"run jobs in {slug}")
    params = dict(parameters or {})
    for key in params:
        if not isinstance(key, str) or not PARAM_RE.match(key) or keyword.iskeyword(key):
            raise InvalidInput(f"parameter name {key!r} is not a Python identifier")
    try:
        json.dumps(params, allow_nan=False)
    except (TypeError, ValueError):
        raise InvalidInput("parameters must be JSON values (numbers, strings, true/false, lists)") from None
    relpath, data = _workspace_notebook(settings, project, notebook)
    # Only the names the notebook declares, each of its default's kind: a typo is refused
    # here rather than silently ignored by the run.
    params = check_parameters(read_parameters(json.loads(data)), relpath, params)
    digest = _store_notebook(settings, data)
    run = JobRun(project=project, submitted_by=actor, notebook=relpath, notebook_sha256=digest,
                 parameters_json=params, status=JobStatus.QUEUED)
    session.add(run)
    session.flush()
    append_event(session, actor, JobEvent.SUBMIT, project=project, target=f"job:{run.id}",
                 details={"notebook": relpath, "notebook_sha256": digest, "parameters": params})
    return run


def notebook_parameters(session: Session, actor: User, settings: Settings, slug: str,
                        notebook: str) -> list[NotebookParameter] | None:
    """The parameters a workspace notebook declares in its cell tagged ``parameters``
    (members of the project); None when it has no such cell."""
    project = get_project(session, slug)
    check_member(actor, project, f"see the notebooks of project {slug}")
    _, data = _workspace_notebook(settings, project, notebook)
    return read_parameters(json.loads(data))


def rerun_job(session: Session, actor: User, settings: Settings, run_id: int) -> JobRun:
    """Queue the same record again (stored notebook, parameters) to check it reproduces."""
    original = get_job(session, actor, run_id)
    check_can_rerun(actor, original.project)
    if original.status is not JobStatus.SUCCEEDED:
        raise InvalidTransition(f"run {run_id} is {original.status.value}: only a succeeded run can be re-run to check its outputs")
    if not stored_notebook(settings, original.notebook_sha256).is_file():
        raise NotFound(f"the stored notebook of run {run_id} is missing from {jobs_dir(settings)}: restore it from a backup")
    run = JobRun(project=original.project, submitted_by=actor, notebook=original.notebook,
                 notebook_sha256=original.notebook_sha256, parameters_json=dict(original.parameters_json),
                 status=JobStatus.QUEUED, rerun_of_id=original.id)
    session.add(run)
    session.flush()
    append_event(session, actor, JobEvent.RERUN, project=original.project, target=f"job:{run.id}",
                 details={"rerun_of": original.id})
    return run


def get_job(session: Session, actor: User, run_id: int) -> JobRun:
    """A run the actor may see (members of its project, reviewers, admins)."""
    run = session.get(JobRun, run_id)
    if run is None:
        raise NotFound(f"no job run {run_id}: check the number against the project's list of runs")
    check_can_view(actor, run.project)
    return run


def list_jobs(session: Session, actor: User, slug: str | None = None, limit: int = 100) -> list[JobRun]:
    """Newest first: a project's runs, or every run the actor may see."""
    query = select(JobRun).order_by(JobRun.id.desc()).limit(limit)
    if slug is not None:
        project = get_project(session, slug)
        check_can_view(actor, project)
        query = query.where(JobRun.project_id == project.id)
    elif not actor.roles & {Role.ADMIN, Role.REVIEWER}:
        query = query.where(JobRun.project_id.in_(select(Membership.project_id).where(Membership.user_id == actor.id)))
    return list(session.scalars(query))


def cancel_job(session: Session, actor: User, run_id: int) -> JobRun:
    """Cancel a queued or running run; the caller then stops its container (runner.stop)."""
    run = get_job(session, actor, run_id)
    check_can_cancel(actor, run)
    _move(session, actor, run, JobAction.CANCEL, JobActor.PERSON, error=f"cancelled by {actor.name}")
    return run


# --- what the worker does ----------------------------------------------------------------

def _move(session: Session, actor: User | str, run: JobRun, action: JobAction, by: JobActor,
          details: dict[str, Any] | None = None, error: str | None = None) -> None:
    move = transition_for(run.status, action, by)
    if move is None:
        raise InvalidTransition(f"run {run.id} is {run.status.value}: it cannot {action.value} now")
    old = run.status
    run.status = move.target
    now = utcnow()
    if move.target is JobStatus.RUNNING:
        run.started_at = now
    if move.target in FINAL:
        run.finished_at = now
        if error is not None:
            run.error = error
    session.flush()
    append_event(session, actor, _EVENT[action], project=run.project, target=f"job:{run.id}",
                 details={"from": old, "to": move.target, **({"error": error} if error else {}), **(details or {})})


def running_count(session: Session) -> int:
    return session.scalar(select(func.count(JobRun.id)).where(JobRun.status == JobStatus.RUNNING)) or 0


def claim_next(session: Session, concurrency: int, run_id: int | None = None) -> JobRun | None:
    """Take the oldest queued run (or ``run_id``) if fewer than ``concurrency`` run now.

    Called in its own unit of work, which the caller commits after :func:`start_run`.
    Claims are serialised (SQLite's immediate transactions; a transaction-level advisory
    lock on PostgreSQL), so the count of running runs cannot be read by two workers at
    once and two workers never claim the same run. Returns None when nothing may start.
    A run whose project left its working status is failed here, not started (fail closed).
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CLAIM_LOCK_KEY})
    if running_count(session) >= concurrency:
        return None
    query = select(JobRun.id).where(JobRun.status == JobStatus.QUEUED).order_by(JobRun.id)
    if run_id is not None:
        query = query.where(JobRun.id == run_id)
    # Lock the row alone: PostgreSQL refuses FOR UPDATE over the outer joins of JobRun's
    # eagerly loaded relationships.
    claimed = session.scalars(query.limit(1).with_for_update()).first()
    if claimed is None:
        return None
    run = session.get(JobRun, claimed)
    if run.project.status not in WORKING:
        _move(session, WORKER, run, JobAction.FAIL, JobActor.WORKER,
              error=f"project {run.project.slug} is {run.project.status.value}: jobs run only in active projects")
        return None
    return run


def start_run(session: Session, run: JobRun, *, image: str, image_digest: str, container_name: str,
              views: list[dict[str, Any]], limits: dict[str, Any]) -> None:
    """Record what the run starts with (image, views, limits) and mark it running."""
    run.image, run.image_digest, run.container_name = image, image_digest, container_name
    run.views_json, run.limits_json = views, limits
    _move(session, WORKER, run, JobAction.START, JobActor.WORKER,
          details={"image_digest": image_digest, "views": [{k: v.get(k) for k in ("dataset", "version", "sha256")} for v in views],
                   "limits": limits})


def finish_run(session: Session, run: JobRun, *, succeeded: bool, exit_code: int | None,
               outputs: dict[str, str], error: str | None = None,
               comparison: dict[str, Any] | None = None) -> bool:
    """Record the outcome; False when the run was cancelled meanwhile (nothing recorded)."""
    session.refresh(run)
    if run.status is JobStatus.CANCELLED:
        return False
    run.exit_code, run.outputs_json, run.comparison_json = exit_code, outputs, comparison
    action = JobAction.SUCCEED if succeeded else JobAction.FAIL
    details: dict[str, Any] = {"exit_code": exit_code, "outputs": outputs}
    if comparison is not None:
        details["reproduced"] = comparison.get("matches")
    _move(session, WORKER, run, action, JobActor.WORKER, details=details, error=None if succeeded else error)
    return True


def requeue_count(session: Session, run: JobRun) -> int:
    """How many times the run was put back in the queue: its job.requeue events (the
    audit log is the record; it cannot be rewritten)."""
    return session.scalar(select(func.count(AuditEvent.id)).where(
        AuditEvent.action == JobEvent.REQUEUE, AuditEvent.target == f"job:{run.id}")) or 0


def requeue_run(session: Session, run: JobRun, reason: str, *, attempt: int, discarded: int) -> bool:
    """Put a running run whose node was lost back in the queue, audited with the reason,
    the ``attempt`` that was lost (1 = the first) and how many partial output files were
    deleted. False, and nothing changed, if it is no longer running (cancelled meanwhile)."""
    session.refresh(run)
    if run.status is not JobStatus.RUNNING:
        return False
    run.started_at, run.container_name = None, None
    _move(session, WORKER, run, JobAction.REQUEUE, JobActor.WORKER,
          details={"reason": reason, "attempt": attempt, "discarded_outputs": discarded})
    return True


def fail_run(session: Session, run: JobRun, error: str) -> None:
    """The worker could not run it at all (image missing, container refused to start)."""
    session.refresh(run)
    if run.status not in FINAL:
        _move(session, WORKER, run, JobAction.FAIL, JobActor.WORKER, error=error)


# --- provenance, for people and for the egress and web pages ------------------------------

@dataclass(frozen=True)
class RunProvenance:
    """Everything recorded about one run, as reviewers see it next to the files."""

    run_id: int
    project: str
    submitted_by: str
    status: JobStatus
    notebook: str
    notebook_sha256: str
    parameters: dict[str, Any]
    image: str | None
    image_digest: str | None
    views: list[dict[str, Any]]
    limits: dict[str, Any]
    created_at: str
    started_at: str | None
    finished_at: str | None
    exit_code: int | None
    error: str | None
    output_dir: str
    outputs: dict[str, str]
    rerun_of: int | None
    comparison: dict[str, Any] | None

    def inputs(self) -> dict[str, Any]:
        """The recorded inputs that :func:`enclave.jobs.provenance.input_changes` compares."""
        return {"notebook_sha256": self.notebook_sha256, "parameters": self.parameters,
                "image_digest": self.image_digest, "views": self.views}

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "status": self.status.value}


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def provenance_of(run: JobRun) -> RunProvenance:
    """The provenance record of a run (no permission check: see get_run_provenance)."""
    return RunProvenance(
        run_id=run.id, project=run.project.slug, submitted_by=run.submitted_by.name, status=run.status,
        notebook=run.notebook, notebook_sha256=run.notebook_sha256, parameters=dict(run.parameters_json),
        image=run.image, image_digest=run.image_digest, views=list(run.views_json), limits=dict(run.limits_json),
        created_at=run.created_at.isoformat(), started_at=_iso(run.started_at), finished_at=_iso(run.finished_at),
        exit_code=run.exit_code, error=run.error, output_dir=output_area(run),
        outputs=dict(run.outputs_json), rerun_of=run.rerun_of_id, comparison=run.comparison_json,
    )


def get_run_provenance(session: Session, actor: User, run_id: int) -> RunProvenance:
    """The provenance of a run the actor may see (for egress requests citing it)."""
    return provenance_of(get_job(session, actor, run_id))


def reruns_of(session: Session, actor: User, run_id: int) -> list[JobRun]:
    """The reruns of a run, newest first (a reviewer's checks of it)."""
    get_job(session, actor, run_id)
    return list(session.scalars(select(JobRun).where(JobRun.rerun_of_id == run_id).order_by(JobRun.id.desc())))


# --- citing runs from egress requests -------------------------------------------------------

def check_citable_runs(session: Session, actor: User, slug: str, run_ids: list[int]) -> list[JobRun]:
    """The runs an egress request of project ``slug`` may cite: existing, of that project,
    and succeeded. Raises with the first one that is not."""
    project = get_project(session, slug)
    runs = []
    for run_id in dict.fromkeys(run_ids):
        run = get_job(session, actor, run_id)
        if run.project_id != project.id:
            raise InvalidInput(f"run {run_id} belongs to project {run.project.slug}, not {slug}: cite runs of this project")
        if run.status is not JobStatus.SUCCEEDED:
            raise InvalidInput(f"run {run_id} is {run.status.value}: cite only succeeded runs")
        runs.append(run)
    return runs


@dataclass(frozen=True)
class OutputOrigin:
    """Where an outbox file came from: the run that wrote it, and whether it is unchanged."""

    run_id: int
    path: str  # relative to the run's output directory
    recorded_sha256: str
    unchanged: bool


def output_origin(session: Session, actor: User, slug: str, outbox_relpath: str, sha256: str) -> OutputOrigin | None:
    """For an outbox file ``jobs/<run>/<path>`` of project ``slug``: the run that wrote it and
    whether ``sha256`` (the file as submitted) is still what the run recorded. None for a
    file no run of this project wrote."""
    parts = PurePosixPath(outbox_relpath.removeprefix("outbox/")).parts
    if len(parts) < 3 or parts[0] != OUTPUTS_RELDIR.name or not parts[1].isdigit():
        return None
    run = session.get(JobRun, int(parts[1]))
    if run is None or run.project.slug != slug:
        return None
    check_can_view(actor, run.project)
    rel = "/".join(parts[2:])
    recorded = run.outputs_json.get(rel)
    if recorded is None:
        return None
    return OutputOrigin(run.id, rel, recorded, recorded == sha256)
