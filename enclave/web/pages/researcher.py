"""The researcher console: my projects with each project server's state (start, stop),
one project with its outbox, and one outbox file previewed as it would leave (applying:
``pages/apply.py``)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse

from enclave.egress.policy import EgressEnv
from enclave.hub import breakglass
from enclave.permissions import is_member
from enclave.projects import service
from enclave.web import egress_views, outbox_views, preview, readmodels
from enclave.web.auth import Identity
from enclave.web.context import acting, render, signed_in, web
from enclave.web.pages.forms import done_message, form_fields
from enclave.web.servers import (
    PENDING,
    HubRefused,
    Server,
    ServerChange,
    ServerState,
    request_server_start,
    request_server_stop,
    server_control,
)

router = APIRouter()

SERVER_DONE = {
    "server_running": "The server is running: open JupyterLab from here.",
    "server_starting": "The server is starting: this page shows when it is ready.",
    "server_stopped": "The server was stopped. Your workspace is kept; start the server again when you need it.",
    "server_stopping": "The server is stopping.",
}


async def _servers(request: Request, ident: Identity) -> dict[str, Server] | None:
    control = server_control(request)
    return None if control is None else await control.servers(ident.name)


def _server_of(servers: dict[str, Server] | None, slug: str) -> Server:
    if servers is None:
        return Server(ServerState.UNKNOWN)
    return servers.get(slug, Server(ServerState.STOPPED))


def _done(request: Request) -> str | None:
    return SERVER_DONE.get(request.query_params.get("done", "")) or done_message(request)


@router.get("/projects")
async def my_projects(request: Request, ident: Identity = Depends(signed_in)):
    """The projects I am a member of, each with its server's state, members, grants and dates."""
    hub = web(request).hub_prefix
    with acting(request, ident) as (session, actor):
        projects = [readmodels.project_detail(session, actor, p.slug, hub) for p in service.projects_of(session, actor)]
    servers = await _servers(request, ident)
    states = {p.slug: _server_of(servers, p.slug) for p in projects}
    return render(request, "researcher/projects.html", projects=projects, servers=states,
                  pending=any(s.state in PENDING for s in states.values()), done=_done(request))


@router.get("/projects/{slug}")
async def project_page(request: Request, slug: str, ident: Identity = Depends(signed_in)):
    """One project (members, admins and reviewers), with the member's server and outbox, and
    every break-glass window an admin opened into its servers."""
    settings = web(request).settings
    with acting(request, ident) as (session, actor):
        project = readmodels.project_detail(session, actor, slug, web(request).hub_prefix)
        model = service.get_project(session, slug)
        opened = [breakglass.describe(w) for w in breakglass.windows(session, model)]
        member = is_member(actor, model)
        outbox = egress_views.outbox_files(session, actor, settings, slug) if member else []
    server = _server_of(await _servers(request, ident), slug) if member else None
    return render(request, "researcher/project.html", project=project, break_glass=opened, server=server,
                  outbox=outbox, member=member, pending=server is not None and server.state in PENDING,
                  done=_done(request))


def _back(request: Request, slug: str, where: str, done: str) -> RedirectResponse:
    page = "projects" if where == "projects" else f"projects/{slug}"
    return RedirectResponse(f"{web(request).prefix}/{page}?done={done}#p-{slug}", status_code=303)


# Per change: the check and record made first, and where to go instead when there is no hub.
CHANGES = {
    ServerChange.START: (request_server_start, "open the server with 'Start or open notebook server'"),
    ServerChange.STOP: (request_server_stop, "stop the server from the hub's home page"),
}


@router.post("/projects/{slug}/server/{change}")
async def change_server(request: Request, slug: str, change: ServerChange, ident: Identity = Depends(signed_in)):
    """Start or stop my server of the project: checked and recorded here, done by the hub
    with my own sign-in token (its spawner checks a start again); a stop keeps the workspace."""
    data = await form_fields(request)
    control = server_control(request)
    record, instead = CHANGES[change]
    if control is None:
        raise HubRefused(f"the console cannot reach the hub here: {instead}")
    with acting(request, ident) as (session, actor):
        record(session, actor, slug)
    ask = control.start if change is ServerChange.START else control.stop
    state = await ask(ident.name, slug, ident.token)
    return _back(request, slug, data.get("back", ""), f"server_{state.value}")


@router.get("/projects/{slug}/outbox/file")
def outbox_file(request: Request, slug: str, path: str, part: int = 0, ident: Identity = Depends(signed_in)):
    """One file of my project's outbox as it would leave (its canonical form), before any request."""
    env = EgressEnv.load(web(request).settings)
    with acting(request, ident) as (session, actor):
        view = outbox_views.outbox_file_view(session, actor, env, slug, path, part)
        title = service.get_project(session, slug).title
    return render(request, "researcher/outbox_file.html", slug=slug, title=title, view=view, visible=preview.visible)
