"""EnclaveAuthenticator: JupyterHub sign-in against the enclave's own users.

A password (bcrypt hash) and a TOTP code from an authenticator app are both required;
the checks, the lockout and the audit events live in ``enclave.hub.signin``. The hub's
roles follow the enclave's: every user holds the managed roles ``enclave-<role>`` for
their enclave roles, which services such as the web app read from the hub's user model.
Nobody is a hub admin: an enclave admin gets no scope on other people's servers, and
reaches one only through an open break-glass window (``enclave.hub.breakglass``), which
adds a role for that one server while it lasts.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from collections.abc import Sequence
from typing import Any

from jupyterhub.auth import Authenticator
from sqlalchemy.orm import Session
from tornado import web
from traitlets import Integer, Unicode, default

from enclave.clock import utcnow
from enclave.config import Settings
from enclave.db.models import BreakGlass, User
from enclave.db.session import unit_of_work
from enclave.enums import Role
from enclave.audit import append_event
from enclave.hub import actors, breakglass
from enclave.hub.signin import Lockout, SignInAction, SignInRefused, verify_sign_in
from enclave.incidents import suspension_reason
from enclave.users import find_user

ROLE_PREFIX = "enclave-"


def hub_roles(user: User, windows: Sequence[BreakGlass] = ()) -> list[dict[str, Any]]:
    """The hub roles (as JupyterHub role dicts) of ``user``: JupyterHub's own ``user``
    (one's own servers only), the enclave roles mirrored (no scopes), and one role per
    open break-glass window in ``windows``. Never JupyterHub's ``admin``: its scopes
    (``admin:servers``, ``access:servers``, ``servers``) reach into everyone's servers."""
    names = ["user", *(f"{ROLE_PREFIX}{role.value}" for role in sorted(user.roles))]
    return [{"name": name} for name in names] + [breakglass.hub_role(w) for w in windows]


def auth_model(session: Session, user: User) -> dict[str, Any]:
    """What the hub stores for ``user`` at sign-in and at every refresh."""
    windows = breakglass.open_windows_of(session, user, utcnow()) if user.has_role(Role.ADMIN) else []
    return {"name": user.name, "admin": False, "roles": hub_roles(user, windows)}


class EnclaveAuthenticator(Authenticator):
    """Password + TOTP sign-in for the people in the enclave database."""

    enclave_home = Unicode(
        "",
        help="""ENCLAVE_HOME of the enclave whose users may sign in (empty: from the
        environment, as Settings.from_env() reads it).""",
    ).tag(config=True)

    lockout_failures = Integer(
        5,
        help="""Failed sign-ins within lockout_minutes that lock an account until the
        window passes without further failures. Every attempt is audited.""",
    ).tag(config=True)

    lockout_minutes = Integer(15, help="The lockout window in minutes (see lockout_failures).").tag(config=True)

    @default("auth_refresh_age")
    def _default_auth_refresh_age(self) -> int:
        # Roles follow the enclave database within seconds: a break-glass window that ends
        # or a person removed from the enclave loses access at their next request.
        return 5

    @default("refresh_pre_stop")
    def _default_refresh_pre_stop(self) -> bool:
        # The refresh before a stop is where the requester of the stop is learnt (enclave.hub.actors).
        return True

    @default("request_otp")
    def _default_request_otp(self) -> bool:
        return True

    @default("otp_prompt")
    def _default_otp_prompt(self) -> str:
        return "Authenticator code:"

    @default("manage_roles")
    def _default_manage_roles(self) -> bool:
        return True

    @default("allow_all")
    def _default_allow_all(self) -> bool:
        # Who may sign in is decided by the enclave database, not by hub allow lists.
        return True

    def settings(self) -> Settings:
        if not self.enclave_home:
            return Settings.from_env()
        return Settings.from_env({**os.environ, "ENCLAVE_HOME": self.enclave_home})

    async def authenticate(self, handler: Any, data: dict[str, str]) -> dict[str, Any]:
        """Check name, password and code; refuse with a 403 and one line saying why."""
        lockout = Lockout(self.lockout_failures, dt.timedelta(minutes=self.lockout_minutes))
        try:
            return await asyncio.to_thread(
                self._check, data.get("username", ""), data.get("password", ""), data.get("otp", ""), lockout
            )
        except SignInRefused as exc:
            raise web.HTTPError(403, str(exc)) from None

    def _check(self, name: str, password: str, otp: str, lockout: Lockout) -> dict[str, Any]:
        with unit_of_work(self.settings()) as session:
            try:
                user = verify_sign_in(session, name, password, otp, utcnow(), lockout)
            except SignInRefused:
                session.commit()  # keep the audit event of the refusal
                raise
            return auth_model(session, user)

    async def refresh_user(self, user: Any, handler: Any = None, **kwargs: Any) -> bool | dict[str, Any]:
        """Keep the hub's admin flag and roles in step with the enclave database; a
        person removed from it loses their hub session. Before a stop, the hub calls this
        with the stop's request: its requester is kept for the audit (enclave.hub.actors)."""
        actors.remember(handler)

        def lookup() -> dict[str, Any] | None:
            with unit_of_work(self.settings()) as session:
                found = find_user(session, user.name)
                # Suspended or disabled (enclave.incidents): the hub session ends too.
                return None if found is None or suspension_reason(session, found) else auth_model(session, found)

        found = await asyncio.to_thread(lookup)
        return found if found is not None else False

    async def load_managed_roles(self) -> list[dict[str, Any]]:
        return managed_roles()


def managed_roles() -> list[dict[str, Any]]:
    """The hub roles mirroring enclave roles. They grant no extra hub scopes: services
    read them to decide what a person may do in the enclave's own pages. (Break-glass
    roles are created by the hub from the auth model while a window is open.)"""
    return [
        {"name": f"{ROLE_PREFIX}{role.value}", "description": f"enclave {role.value} (managed by the enclave)",
         "scopes": []}
        for role in Role
    ]


def enclave_post_auth_hook(authenticator: Any, handler: Any, authentication: dict[str, Any]) -> dict[str, Any]:
    """``post_auth_hook`` for a site's own OAuth/OIDC authenticator (docs/hub.md): the
    identity provider proves who signed in (with its own second factor); the enclave
    database still decides who may enter and with which roles. Audited like a password
    sign-in; a name unknown to the enclave is refused with a 403."""
    name = str(authentication.get("name", ""))
    with unit_of_work(Settings.from_env()) as session:
        user = find_user(session, name)
        if user is None:
            append_event(session, name[:64] or "anonymous", SignInAction.LOGIN_FAILED, target=f"user:{name[:64]}",
                         details={"reason": "not an enclave user", "via": type(authenticator).__name__})
            session.commit()
            raise web.HTTPError(403, f"{name} is not an enclave user: ask an admin to add you")
        suspended = suspension_reason(session, user)
        if suspended is not None:
            append_event(session, name, SignInAction.LOGIN_FAILED, target=f"user:{name}",
                         details={"reason": "suspended", "via": type(authenticator).__name__})
            session.commit()
            raise web.HTTPError(403, suspended)
        append_event(session, user, SignInAction.LOGIN, target=f"user:{name}",
                     details={"via": type(authenticator).__name__})
        return {**authentication, **auth_model(session, user)}
