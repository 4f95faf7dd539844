"""Job pages: a project's runs with the submit form (the notebook's own parameters as
fields), one run (provenance, a log that follows the run, cancel, rerun) and starting an
egress request that cites a run.

The pages work without JavaScript; ``static/jobs.js`` only refreshes them while runs are
queued or running, from the JSON API (``/api/jobs``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path as PathParam, Request
from fastapi.responses import RedirectResponse

from enclave.egress.policy import EgressEnv
from enclave.errors import InvalidInput, NotFound
from enclave.jobs import service
from enclave.jobs.egress import request_egress_for_run, run_output_files
from enclave.jobs.parameters import form_values
from enclave.jobs.states import FINAL, JobStatus
from enclave.enums import Role
from enclave.permissions import can, is_member
from enclave.projects.lifecycle import WORKING
from enclave.projects.service import get_project
from enclave.web import jobs_views
from enclave.web.auth import Identity
from enclave.web.context import acting, render, signed_in, web
from enclave.web.pages.forms import done_message, form_fields

router = APIRouter()

RUN_ID = PathParam(ge=1, le=2**31 - 1)
# Messages after a change on these pages (reached by redirect), before the shared ones.
JOB_DONE = {
    "job_queued": "The run is queued: it starts when the job worker picks it up, and this page follows it.",
}


# What reviewers need to know about a run's files, asked before the request is made.
EGRESS_FIELDS = {
    "context": "say what the files show and for which population",
    "controls": "say which disclosure controls were applied (suppression, rounding, thresholds)",
}


def _done(request: Request) -> str | None:
    return JOB_DONE.get(request.query_params.get("done", "")) or done_message(request)


def _to_run(request: Request, run_id: int, done: str) -> RedirectResponse:
    return RedirectResponse(f"{web(request).prefix}/jobs/{run_id}?done={done}", status_code=303)


def _jobs_page(request: Request, ident: Identity, slug: str, notebook: str | None, *, values: dict[str, str] | None = None,
               errors: dict[str, str] | None = None, error: str | None = None, status_code: int = 200) -> Any:
    """The runs of a project and the form for ``notebook`` (else the first notebook), with
    what was typed and the errors beside their fields when a submission was refused."""
    settings = web(request).settings
    with acting(request, ident) as (session, actor):
        runs = [service.provenance_of(r) for r in service.list_jobs(session, actor, slug)]
        project = get_project(session, slug)
        may_submit = is_member(actor, project) and project.status in WORKING
        notebooks = jobs_views.workspace_notebooks(session, actor, settings, slug) if may_submit else []
        chosen = notebook if notebook in notebooks else (notebooks[0] if notebooks else None)
        declared, problem = None, None
        if chosen is not None:
            try:
                declared = service.notebook_parameters(session, actor, settings, slug, chosen)
            except (InvalidInput, NotFound) as exc:
                problem = str(exc)
        title, status = project.title, project.status.value
    fields = {p.name: (values or {}).get(p.name, p.form_value()) for p in declared or []}
    return render(request, "jobs/list.html", status_code=status_code, slug=slug, title=title, project_status=status,
                  runs=runs, may_submit=may_submit, notebooks=notebooks, chosen=chosen, declared=declared,
                  fields=fields, errors=errors or {}, error=error or problem,
                  live=any(r.status not in FINAL for r in runs), done=_done(request))


@router.get("/projects/{slug}/jobs")
def project_jobs(request: Request, slug: str, notebook: str | None = None, ident: Identity = Depends(signed_in)):
    """A project's runs, newest first; members of an active project also get the submit form."""
    return _jobs_page(request, ident, slug, notebook)


@router.post("/projects/{slug}/jobs")
async def submit(request: Request, slug: str, ident: Identity = Depends(signed_in)):
    """Queue a run with the form's parameters, read by the kinds the notebook's defaults
    have; a refusal shows the page again with the error beside the field."""
    data = await form_fields(request)
    notebook = data.get("notebook", "")
    settings = web(request).settings
    typed = {key[2:]: value for key, value in data.items() if key.startswith("p_")}
    with acting(request, ident) as (session, actor):
        declared = service.notebook_parameters(session, actor, settings, slug, notebook) or []
    parameters, errors = form_values(declared, data)
    if errors:
        return _jobs_page(request, ident, slug, notebook, values=typed, errors=errors, status_code=400,
                          error="Some parameters are not right: see the fields marked below.")
    try:
        with acting(request, ident) as (session, actor):
            run_id = service.submit_job(session, actor, settings, slug, notebook, parameters).id
    except InvalidInput as exc:
        return _jobs_page(request, ident, slug, notebook, values=typed, error=str(exc), status_code=400)
    return _to_run(request, run_id, "job_queued")


def _run_page(request: Request, ident: Identity, run_id: int, *, values: dict[str, str] | None = None,
              errors: dict[str, str] | None = None, status_code: int = 200) -> Any:
    settings = web(request).settings
    with acting(request, ident) as (session, actor):
        run = service.get_job(session, actor, run_id)
        prov = service.get_run_provenance(session, actor, run_id)
        reruns = [service.provenance_of(r) for r in service.reruns_of(session, actor, run_id)]
        log = jobs_views.log_since(session, actor, settings, run_id)
        may_cancel = run.status not in FINAL and can(service.check_can_cancel, actor, run)
        may_rerun = run.status is JobStatus.SUCCEEDED and run.project.status in WORKING and can(
            service.check_can_rerun, actor, run.project)
        # The author of an egress request is a researcher member of the run's active project.
        requestable = (run_output_files(session, actor, run_id)
                       if run.status is JobStatus.SUCCEEDED and run.rerun_of_id is None and is_member(actor, run.project)
                       and Role.RESEARCHER in actor.roles and run.project.status in WORKING else [])
    return render(request, "jobs/run.html", status_code=status_code, run=prov, reruns=reruns, log=log,
                  may_cancel=may_cancel, may_rerun=may_rerun, requestable=requestable,
                  live=prov.status not in FINAL, values=values or {}, errors=errors or {}, done=_done(request))


@router.get("/jobs/{run_id}")
def run_page(request: Request, run_id: int = RUN_ID, ident: Identity = Depends(signed_in)):
    """One run: its provenance, log and reruns (members of its project, reviewers, admins)."""
    return _run_page(request, ident, run_id)


@router.post("/jobs/{run_id}/cancel")
def cancel(request: Request, run_id: int = RUN_ID, ident: Identity = Depends(signed_in)):
    with acting(request, ident) as (session, actor):
        service.cancel_job(session, actor, run_id)
    return _to_run(request, run_id, "job_cancelled")


@router.post("/jobs/{run_id}/rerun")
def rerun(request: Request, run_id: int = RUN_ID, ident: Identity = Depends(signed_in)):
    with acting(request, ident) as (session, actor):
        new_id = service.rerun_job(session, actor, web(request).settings, run_id).id
    return _to_run(request, new_id, "rerun_queued")


@router.post("/jobs/{run_id}/egress")
async def start_egress(request: Request, run_id: int = RUN_ID, ident: Identity = Depends(signed_in)):
    """A draft egress request citing the run, with its output files described by the form's
    context and controls; then on to that request, ready to submit."""
    data = await form_fields(request)
    typed = {k: data.get(k, "").strip() for k in ("context", "controls")}
    errors = {k: EGRESS_FIELDS[k] for k, v in typed.items() if not v}
    if errors:
        return _run_page(request, ident, run_id, values=typed, errors=errors, status_code=400)
    env = EgressEnv.load(web(request).settings)
    with acting(request, ident) as (session, actor):
        number = request_egress_for_run(session, actor, env, run_id, typed["context"], typed["controls"]).id
    return RedirectResponse(f"{web(request).prefix}/egress/{number}?done=created_from_run", status_code=303)
