"""The start page, sign-in callback, sign-out and the public transparency register."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, RedirectResponse

from enclave.db.session import unit_of_work
from enclave.web import readmodels
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


@router.get("/register")
def register(request: Request, ident: Identity | None = Depends(maybe_signed_in)):
    """The public transparency register (no sign-in)."""
    with unit_of_work(web(request).settings) as session:
        entries = readmodels.register(session)
    return render(request, "register.html", entries=entries)


@router.get("/register/{slug}/destruction.json")
def destruction_record(request: Request, slug: str, ident: Identity | None = Depends(maybe_signed_in)):
    """A destroyed project's signed destruction record, for anyone to check."""
    with unit_of_work(web(request).settings) as session:
        envelope = readmodels.destruction_record(session, slug)
    return JSONResponse(envelope)
