"""The researcher console: my projects, one project, and applying for a new one."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse

from enclave.applications import ProjectApplication, apply_for_project
from enclave.hub import breakglass
from enclave.projects import service
from enclave.web import readmodels
from enclave.web.auth import Identity
from enclave.web.context import acting, render, signed_in, tiers, web
from enclave.web.pages.forms import done_message, form_fields, lines, parse

router = APIRouter()


@router.get("/projects")
def my_projects(request: Request, ident: Identity = Depends(signed_in)):
    """The projects I am a member of, with members, grants and dates."""
    hub = web(request).hub_prefix
    with acting(request, ident) as (session, actor):
        projects = [readmodels.project_detail(session, actor, p.slug, hub) for p in service.projects_of(session, actor)]
    return render(request, "researcher/projects.html", projects=projects, done=done_message(request))


@router.get("/projects/{slug}")
def project_page(request: Request, slug: str, ident: Identity = Depends(signed_in)):
    """One project (members, admins and reviewers), with every break-glass window an
    admin opened into its servers."""
    with acting(request, ident) as (session, actor):
        project = readmodels.project_detail(session, actor, slug, web(request).hub_prefix)
        opened = [breakglass.describe(w) for w in breakglass.windows(session, service.get_project(session, slug))]
    return render(request, "researcher/project.html", project=project, break_glass=opened,
                  done=done_message(request))


@router.get("/apply")
def apply_form(request: Request, ident: Identity = Depends(signed_in)):
    """The Five Safes application form."""
    with acting(request, ident):
        pass  # only enclave users may apply
    return render(request, "researcher/apply.html", values={})


@router.post("/apply")
async def apply(request: Request, ident: Identity = Depends(signed_in)):
    data = await form_fields(request)
    form = parse(ProjectApplication, {
        **{k: data.get(k, "") for k in ("slug", "title", "purpose", "lay_summary", "lawful_basis", "organisation")},
        "datasets_wanted": lines(data.get("datasets_wanted", "")),
        "team": lines(data.get("team", "")),
        "end_date": data.get("end_date") or None,
    })
    policy = tiers(request)
    with acting(request, ident) as (session, actor):
        project = apply_for_project(session, actor, policy, form)
        slug = project.slug
    return RedirectResponse(f"{web(request).prefix}/projects/{slug}?done=applied", status_code=303)
