"""Who is calling: JupyterHub identities for the enclave web service.

The hub signs people in (one sign-in, one session). This module only asks the hub who a
token belongs to and what the token may do:

- a browser gets its token through the hub's OAuth flow (``/oauth_callback``), kept in
  an HttpOnly cookie limited to the service's path;
- a script sends a JupyterHub API token as ``Authorization: token ...``.

The hub decides which consoles a person may open: its roles ``enclave-admin`` and
``enclave-reviewer`` (which the service reads with its own token) or the custom scopes
``custom:enclave:admin`` and ``custom:enclave:review`` on the caller's token. The enclave
database roles, checked again by every service function, decide what they may do there.
Both must agree (fail closed).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from enclave.errors import EnclaveError, PermissionDenied

# Custom scopes defined in the hub's configuration (see docs/web.md).
SCOPE_ADMIN = "custom:enclave:admin"
SCOPE_REVIEW = "custom:enclave:review"
# Hub roles (managed by the enclave's authenticator) that open the same consoles.
HUB_ROLE_ADMIN = "enclave-admin"
HUB_ROLE_REVIEW = "enclave-reviewer"

SESSION_COOKIE = "enclave-session"
STATE_COOKIE = "enclave-oauth-state"
XSRF_FIELD = "_xsrf"
XSRF_HEADER = "X-XSRF-Token"


class HubUnavailable(EnclaveError):
    """The hub did not answer: nobody can be identified (fail closed, 503)."""


@dataclass(frozen=True)
class Identity:
    """A hub user as seen through one token: their name and the token's scopes."""

    name: str
    scopes: frozenset[str] = field(default_factory=frozenset)
    roles: frozenset[str] = field(default_factory=frozenset)
    # How the token arrived: "cookie" needs an XSRF token on every change, "header" not.
    via: str = "cookie"
    token: str = ""

    @property
    def is_admin(self) -> bool:
        return SCOPE_ADMIN in self.scopes or HUB_ROLE_ADMIN in self.roles

    @property
    def is_reviewer(self) -> bool:
        return SCOPE_REVIEW in self.scopes or HUB_ROLE_REVIEW in self.roles


class Authenticator(Protocol):
    """What the web app needs from a sign-in mechanism."""

    cookie_secure: bool

    async def identify(self, token: str, via: str) -> Identity | None:
        """The identity behind ``token``, or None when the hub does not accept it."""

    def login_redirect(self, request: Request, next_url: str) -> Response:
        """Send a browser to sign in, coming back to ``next_url``."""

    async def finish_login(self, request: Request) -> Response:
        """Handle the OAuth callback: set the session cookie and go back."""

    def xsrf_secret(self) -> bytes:
        """The key XSRF tokens are derived from."""

    async def running_servers(self) -> int | None:
        """How many notebook servers run now, or None when the hub cannot be asked."""


def token_from_request(request: Request) -> tuple[str, str] | None:
    """(token, via) from the Authorization header, else from the session cookie."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() in ("token", "bearer") and value.strip():
        return value.strip(), "header"
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        return cookie, "cookie"
    return None


def xsrf_token(secret: bytes, session_token: str) -> str:
    """The XSRF token for one session: a keyed hash of the session's token.

    It is bound to the session (a token from another session does not verify) and needs
    no server-side storage.
    """
    return hmac.new(secret, b"xsrf:" + session_token.encode(), hashlib.sha256).hexdigest()


def xsrf_ok(secret: bytes, session_token: str, presented: str | None) -> bool:
    return bool(presented) and hmac.compare_digest(xsrf_token(secret, session_token), presented or "")


def safe_next(prefix: str, next_url: str | None) -> str:
    """Only local paths inside the service may be a place to come back to (no open redirect)."""
    if next_url and next_url.startswith(prefix + "/") and not next_url.startswith("//") and "\\" not in next_url:
        return next_url
    return prefix + "/"


class HubAuthenticator:
    """Production sign-in: JupyterHub's OAuth provider through ``HubOAuth``.

    Configured entirely from the environment the hub gives a managed service
    (JUPYTERHUB_API_TOKEN, JUPYTERHUB_CLIENT_ID, JUPYTERHUB_API_URL,
    JUPYTERHUB_OAUTH_CALLBACK_URL, JUPYTERHUB_OAUTH_ACCESS_SCOPES ...).
    """

    cookie_secure = False  # the hub's proxy terminates TLS; set True behind https

    def __init__(self, prefix: str, *, cookie_secure: bool = False, cache_max_age: int = 60) -> None:
        from jupyterhub.services.auth import HubOAuth

        self._hub = HubOAuth(cache_max_age=cache_max_age)
        if not self._hub.access_scopes:
            raise RuntimeError("JUPYTERHUB_OAUTH_ACCESS_SCOPES is empty: run the web app as a hub-managed service")
        self.prefix = prefix
        self.cookie_secure = cookie_secure
        # Pending sign-ins: state id -> (next url, PKCE verifier, expiry).
        self._states: dict[str, tuple[str, str, float]] = {}
        self._roles_cache: dict[str, tuple[list[str], float]] = {}

    async def identify(self, token: str, via: str) -> Identity | None:
        try:
            model = await self._hub.user_for_token(token, use_cache=True, sync=False)
        except Exception:  # noqa: BLE001 - whatever the transport raised, nobody is identified
            raise HubUnavailable("the hub cannot be reached to check your sign-in: try again in a minute") from None
        if not model or model.get("kind", "user") != "user":
            return None
        scopes = frozenset(model.get("scopes") or ())
        if not self._hub.check_scopes(self._hub.access_scopes, model):
            return None
        roles = model.get("roles")
        if roles is None:
            roles = await self._hub_roles(model["name"])
        return Identity(name=model["name"], scopes=scopes, roles=frozenset(roles), via=via, token=token)

    async def _hub_roles(self, name: str) -> list[str]:
        """The user's hub roles, read with the service's own token (scope read:roles:users);
        none when the hub will not say (fail closed: no console beyond the researcher's)."""
        cached = self._roles_cache.get(name)
        if cached and cached[1] > time.monotonic():
            return cached[0]
        import httpx

        try:
            async with httpx.AsyncClient(timeout=5) as client:
                reply = await client.get(f"{self._hub.api_url.rstrip('/')}/users/{name}",
                                         headers={"Authorization": f"token {self._hub.api_token}"})
            reply.raise_for_status()
            roles = [str(r) for r in reply.json().get("roles") or []]
        except (httpx.HTTPError, ValueError, AttributeError):
            return []
        self._roles_cache[name] = (roles, time.monotonic() + 60)
        return roles

    def login_redirect(self, request: Request, next_url: str) -> Response:
        now = time.monotonic()
        self._states = {k: v for k, v in self._states.items() if v[2] > now}
        state = secrets.token_urlsafe(24)
        verifier, challenge, method = self._hub.generate_pkce_code_challenge()
        self._states[state] = (next_url, verifier, now + 600)
        query = urlencode({
            "client_id": self._hub.oauth_client_id,
            "redirect_uri": self._hub.oauth_redirect_uri,
            "response_type": "code",
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": method,
        })
        response = RedirectResponse(f"{self._hub.oauth_authorization_url}?{query}", status_code=302)
        response.set_cookie(STATE_COOKIE, state, max_age=600, path=self.prefix + "/", httponly=True,
                            secure=self.cookie_secure, samesite="lax")
        return response

    async def finish_login(self, request: Request) -> Response:
        state = request.query_params.get("state", "")
        code = request.query_params.get("code", "")
        cookie_state = request.cookies.get(STATE_COOKIE, "")
        pending = self._states.pop(state, None)
        if not code or not state or not hmac.compare_digest(state, cookie_state) or pending is None:
            raise PermissionDenied("this sign-in link is stale or was not started here: open the enclave again")
        next_url, verifier, expires = pending
        if expires < time.monotonic():
            raise PermissionDenied("the sign-in took too long: open the enclave again")
        try:
            token = await self._hub.token_for_code(code, code_verifier=verifier, sync=False)
        except Exception:  # noqa: BLE001 - a refused or failed exchange is a failed sign-in
            raise PermissionDenied("the hub did not accept this sign-in: open the enclave again") from None
        response = RedirectResponse(safe_next(self.prefix, next_url), status_code=302)
        response.delete_cookie(STATE_COOKIE, path=self.prefix + "/")
        set_session_cookie(response, token, self.prefix, self.cookie_secure)
        return response

    def xsrf_secret(self) -> bytes:
        return hashlib.sha256(b"enclave-web-xsrf:" + self._hub.api_token.encode()).digest()

    async def running_servers(self) -> int | None:
        # Needs the service's own scopes list:users and read:servers (see docs/web.md).
        import httpx

        try:
            async with httpx.AsyncClient(timeout=5) as client:
                reply = await client.get(self._hub.api_url.rstrip("/") + "/users", params={"state": "active"},
                                         headers={"Authorization": f"token {self._hub.api_token}"})
            reply.raise_for_status()
            return sum(len(user.get("servers") or {}) for user in reply.json())
        except (httpx.HTTPError, ValueError, TypeError, AttributeError):
            return None


def set_session_cookie(response: Response, token: str, prefix: str, secure: bool) -> None:
    response.set_cookie(SESSION_COOKIE, token, path=prefix + "/", httponly=True, secure=secure, samesite="lax")
