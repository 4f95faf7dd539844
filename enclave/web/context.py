"""What every handler shares: the caller's identity, a unit of work with the acting
enclave user, XSRF checking and page rendering.

Handlers stay thin: ``ident = Depends(signed_in)``; ``with acting(request, ident) as
(session, actor): service_function(session, actor, ...)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session

from enclave.config import Settings
from enclave.db.models import User
from enclave.db.session import unit_of_work
from enclave.egress.inbox import inbox_total
from enclave.errors import PermissionDenied
from enclave.policy import load_policy_file
from enclave.projects.tiers import TierPolicy
from enclave.users import find_user
from enclave.web.auth import (
    XSRF_FIELD,
    XSRF_HEADER,
    Authenticator,
    Identity,
    token_from_request,
    xsrf_ok,
    xsrf_token,
)

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class SignInRequired(Exception):
    """No valid hub token: pages redirect to the hub's sign-in, the API answers 401."""


class XsrfRejected(PermissionDenied):
    """A change sent with the session cookie but without this session's XSRF token."""


@dataclass
class WebState:
    settings: Settings
    auth: Authenticator
    prefix: str
    hub_prefix: str
    templates: Jinja2Templates


def web(request: Request) -> WebState:
    return request.app.state.web


async def signed_in(request: Request) -> Identity:
    """The caller's hub identity; changes by cookie must carry the session's XSRF token."""
    state = web(request)
    found = token_from_request(request)
    if found is None:
        raise SignInRequired()
    token, via = found
    ident = await state.auth.identify(token, via)
    if ident is None:
        raise SignInRequired()
    if request.method not in SAFE_METHODS and via == "cookie":
        presented = request.headers.get(XSRF_HEADER)
        if not presented and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")
        ):
            presented = (await request.form()).get(XSRF_FIELD)  # type: ignore[assignment]
        if not xsrf_ok(state.auth.xsrf_secret(), token, presented if isinstance(presented, str) else None):
            raise XsrfRejected("this form has expired or did not come from the enclave: reload the page and try again")
    request.state.identity = ident
    return ident


async def maybe_signed_in(request: Request) -> Identity | None:
    """The identity if the caller sent a valid token, else None (public pages)."""
    try:
        found = token_from_request(request)
        if found is None:
            return None
        ident = await web(request).auth.identify(*found)
    except Exception:  # noqa: BLE001 - a public page must render even if the hub is away
        return None
    if ident is not None:
        request.state.identity = ident
    return ident


def check_console(ident: Identity, console: str) -> None:
    """The hub's custom scopes open the admin and reviewer consoles (fail closed)."""
    if console == "admin" and not ident.is_admin:
        raise PermissionDenied(f"{ident.name} may not open the admin console: it needs the enclave-admin role in the hub")
    if console == "review" and not ident.is_reviewer:
        raise PermissionDenied(
            f"{ident.name} may not open the reviewer console: it needs the enclave-reviewer role in the hub"
        )


@contextmanager
def acting(request: Request, ident: Identity) -> Iterator[tuple[Session, User]]:
    """One unit of work and the enclave user behind the hub identity (commits at the end)."""
    with unit_of_work(web(request).settings) as session:
        user = find_user(session, ident.name)
        if user is None:
            raise PermissionDenied(
                f"{ident.name} is signed in to the hub but is not an enclave user: ask an administrator to register you"
            )
        yield session, user


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> Any:
    """A page in the common layout, with the caller, their XSRF token and the base paths."""
    state = web(request)
    ident: Identity | None = getattr(request.state, "identity", None)
    context.update(
        request=request,
        base=state.prefix,
        hub=state.hub_prefix,
        ident=ident,
        xsrf=xsrf_token(state.auth.xsrf_secret(), ident.token) if ident and ident.via == "cookie" else "",
        xsrf_field=XSRF_FIELD,
    )
    if ident is not None and "inbox_total" not in context:
        context["inbox_total"] = _inbox_total(request, state.settings, ident)
    return state.templates.TemplateResponse(request, template, context, status_code=status_code)


def _inbox_total(request: Request, settings: Settings, ident: Identity) -> int | None:
    """The count on the top bar's inbox badge: counted (not the inbox built) at most once
    per request; None if it cannot be read (the page still renders)."""
    if hasattr(request.state, "inbox_total"):
        return request.state.inbox_total  # type: ignore[no-any-return]
    try:
        with unit_of_work(settings) as session:
            user = find_user(session, ident.name)
            total = inbox_total(session, user) if user is not None else None
    except Exception:  # noqa: BLE001 - a badge must never turn a page (or an error page) into a failure
        total = None
    request.state.inbox_total = total
    return total


def tiers(request: Request) -> TierPolicy:
    """The tier policy, read afresh so an edited policy applies without a restart."""
    settings = web(request).settings
    return load_policy_file(settings.policies_dir / "tiers.yaml", TierPolicy)
