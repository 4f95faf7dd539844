"""From a run to an egress request: a draft that cites the run and holds its output files.

Everything goes through the egress service (``create_request``, ``add_files``), so the
request is checked, audited and reviewed like any other. The executed notebook is the
run's record, not a result, and the tables' ``.evidence.json`` sidecars travel with their
tables at submission: neither is added as a file.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from sqlalchemy.orm import Session

from enclave.db.models import EgressRequest, User
from enclave.disclosure.evidence import is_sidecar
from enclave.egress import service as egress
from enclave.egress.policy import EgressEnv
from enclave.errors import InvalidInput, InvalidTransition
from enclave.jobs.service import OUTPUTS_RELDIR, executed_name, get_job
from enclave.jobs.states import JobStatus
from enclave.workspace_fs import SYMLINK

# The outbox path of run outputs is relative to the outbox: ``jobs/<run>/<file>``.
RUN_OUTBOX = PurePosixPath(OUTPUTS_RELDIR.name)


def run_output_files(session: Session, actor: User, run_id: int) -> list[str]:
    """The outbox paths (``jobs/<run>/...``) of the files a run wrote that may be requested:
    not the executed notebook, not evidence sidecars, never a link."""
    run = get_job(session, actor, run_id)
    notebook = executed_name(run)
    return [str(RUN_OUTBOX / str(run.id) / path) for path, digest in sorted(run.outputs_json.items())
            if path != notebook and digest != SYMLINK and not is_sidecar(PurePosixPath(path))]


def request_egress_for_run(session: Session, actor: User, env: EgressEnv, run_id: int,
                           context: str | None = None, controls: str | None = None) -> EgressRequest:
    """A draft egress request citing run ``run_id``, with the run's output files in one group
    (``run-<id>``) described by ``context`` (what the files show, for which population) and
    ``controls`` (the disclosure controls applied); the author then submits it."""
    run = get_job(session, actor, run_id)
    if run.rerun_of_id is not None:
        raise InvalidInput(f"run {run.id} is a rerun, a check whose outputs stay with the reviewers: "
                           f"start the request from run {run.rerun_of_id}")
    if run.status is not JobStatus.SUCCEEDED:
        raise InvalidTransition(f"run {run.id} is {run.status.value}: only a succeeded run's outputs can be requested")
    files = run_output_files(session, actor, run_id)
    if not files:
        raise InvalidInput(f"run {run.id} wrote no files besides its executed notebook: "
                           "save outputs to $ENCLAVE_JOB_OUTPUT in the notebook and run it again")
    title = f"Outputs of run {run.id} ({PurePosixPath(run.notebook).name})"
    request = egress.create_request(session, actor, env, run.project.slug, title, cited_runs=[run.id])
    egress.add_files(session, actor, env, request.id, files, f"run-{run.id}", context, controls)
    return request
