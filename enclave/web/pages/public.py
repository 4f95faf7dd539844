"""The start page, sign-in callback, sign-out and the public transparency register.

The register's pages need no sign-in and show only what ``enclave.register`` publishes."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse

from enclave.db.session import unit_of_work
from enclave.enums import ProjectStatus
from enclave.register import service as register_service
from enclave.register.policy import load_register_policy
from enclave.web.auth import SESSION_COOKIE, Identity
from enclave.web.context import acting, maybe_signed_in, render, signed_in, web

router = APIRouter()


@router.get("/")
def home(request: Request, ident: Identity = Depends(signed_in)):
    """The start page: the consoles this person may open."""
    with acting(request, ident) as (_session, actor):
        roles = sorted(r.value for r in actor.roles)
    return render(request, "home.html", roles=roles)


@router.get("/oauth_callback")
async def oauth_callback(request: Request):
    return await web(request).auth.finish_login(request)


@router.get("/logout")
def logout(request: Request):
    """Forget the service's session, then sign out of the hub too."""
    state = web(request)
    response = RedirectResponse(f"{state.hub_prefix}/logout", status_code=302)
    response.delete_cookie(SESSION_COOKIE, path=state.prefix + "/")
    return response


def _about(request: Request):  # type: ignore[no-untyped-def]
    return register_service.about(load_register_policy(web(request).settings.policies_dir))


@router.get("/register")
def register(request: Request, q: str | None = Query(None, max_length=1000),
             status: str | None = Query(None, max_length=32),
             ident: Identity | None = Depends(maybe_signed_in)):
    """The public transparency register, searched by words over title, purpose,
    organisation and datasets (no sign-in)."""
    about = _about(request)
    chosen = ProjectStatus(status) if status in {s.value for s in register_service.PUBLIC_STATUSES} else None
    with unit_of_work(web(request).settings) as session:
        entries = register_service.search_register(session, q, chosen)
    search = {k: v for k, v in (("q", (q or "").strip()), ("status", chosen.value if chosen else "")) if v}
    return render(request, "register.html", entries=entries, about=about, q=search.get("q", ""),
                  status=chosen, statuses=register_service.STATUS_TEXT,
                  feed_query=("?" + urlencode(search)) if search else "")


@router.get("/register/{slug}")
def register_project(request: Request, slug: str, ident: Identity | None = Depends(maybe_signed_in)):
    """One project on the public register (no sign-in)."""
    about = _about(request)
    with unit_of_work(web(request).settings) as session:
        entry = register_service.get_entry(session, slug)
    return render(request, "register_project.html", e=entry, about=about)


@router.get("/register/{slug}/destruction.json")
def destruction_record(request: Request, slug: str, ident: Identity | None = Depends(maybe_signed_in)):
    """A destroyed project's signed destruction record, for anyone to check."""
    with unit_of_work(web(request).settings) as session:
        envelope = register_service.destruction_record(session, slug)
    return JSONResponse(envelope)
