"""Job pages: a project's runs with the submit form, and one run (provenance, log, cancel, rerun)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path as PathParam, Request
from fastapi.responses import RedirectResponse

from enclave.jobs import service
from enclave.jobs.states import FINAL, JobStatus
from enclave.permissions import can, is_member
from enclave.projects.lifecycle import WORKING
from enclave.projects.service import get_project
from enclave.web import jobs_views
from enclave.web.auth import Identity
from enclave.web.context import acting, render, signed_in, web
from enclave.web.pages.forms import done_message, form_fields

router = APIRouter()

RUN_ID = PathParam(ge=1, le=2**31 - 1)


def _to_run(request: Request, run_id: int, done: str) -> RedirectResponse:
    return RedirectResponse(f"{web(request).prefix}/jobs/{run_id}?done={done}", status_code=303)


@router.get("/projects/{slug}/jobs")
def project_jobs(request: Request, slug: str, ident: Identity = Depends(signed_in)):
    """A project's runs, newest first; members of an active project also get the submit form."""
    settings = web(request).settings
    with acting(request, ident) as (session, actor):
        runs = [service.provenance_of(r) for r in service.list_jobs(session, actor, slug)]
        project = get_project(session, slug)
        may_submit = is_member(actor, project) and project.status in WORKING
        notebooks = jobs_views.workspace_notebooks(session, actor, settings, slug) if may_submit else []
        title, status = project.title, project.status.value
    return render(request, "jobs/list.html", slug=slug, title=title, project_status=status, runs=runs,
                  may_submit=may_submit, notebooks=notebooks, done=done_message(request))


@router.post("/projects/{slug}/jobs")
async def submit(request: Request, slug: str, ident: Identity = Depends(signed_in)):
    form = await request.form()
    names = [v for v in form.getlist("param_name") if isinstance(v, str)]
    values = [v for v in form.getlist("param_value") if isinstance(v, str)]
    data = await form_fields(request)
    parameters = jobs_views.form_parameters(names, values)
    with acting(request, ident) as (session, actor):
        run = service.submit_job(session, actor, web(request).settings, slug, data.get("notebook", ""), parameters)
        run_id = run.id
    return _to_run(request, run_id, "job_queued")


@router.get("/jobs/{run_id}")
def run_page(request: Request, run_id: int = RUN_ID, ident: Identity = Depends(signed_in)):
    """One run: its provenance, log and reruns (members of its project, reviewers, admins)."""
    settings = web(request).settings
    with acting(request, ident) as (session, actor):
        run = service.get_job(session, actor, run_id)
        prov = service.get_run_provenance(session, actor, run_id)
        reruns = [service.provenance_of(r) for r in service.reruns_of(session, actor, run_id)]
        log = jobs_views.run_log(session, actor, settings, run_id)
        may_cancel = run.status not in FINAL and can(service.check_can_cancel, actor, run)
        may_rerun = run.status is JobStatus.SUCCEEDED and run.project.status in WORKING and can(
            service.check_can_rerun, actor, run.project)
    return render(request, "jobs/run.html", run=prov, reruns=reruns, log=log, may_cancel=may_cancel,
                  may_rerun=may_rerun, done=done_message(request))


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
