"""A fixed token table standing in for the hub, for tests and screenshots only.

Nothing in the production entry point (:func:`enclave.web.app.main`) can select it: a
test builds the app with ``create_app(settings, StaticTokenAuthenticator({...}))``
explicitly. Everything after identification (scopes, XSRF, the enclave's own roles) is
the production code path.
"""

from __future__ import annotations

import secrets

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from enclave.web.auth import Identity


class StaticTokenAuthenticator:
    """Tokens mapped to (user name, scopes), as the hub would answer for them."""

    cookie_secure = False

    def __init__(self, tokens: dict[str, tuple[str, set[str]]], running: int | None = None) -> None:
        """``tokens``: token -> (user name, the token's scopes and hub roles)."""
        self._tokens = {token: (name, frozenset(scopes)) for token, (name, scopes) in tokens.items()}
        self._secret = secrets.token_bytes(32)
        self._running = running

    async def identify(self, token: str, via: str) -> Identity | None:
        found = self._tokens.get(token)
        if found is None:
            return None
        return Identity(name=found[0], scopes=found[1], roles=found[1], via=via, token=token)

    def login_redirect(self, request: Request, next_url: str) -> Response:
        return PlainTextResponse("sign in through the hub (test mode: set the session cookie)", status_code=401)

    async def finish_login(self, request: Request) -> Response:
        return PlainTextResponse("no OAuth in test mode", status_code=400)

    def xsrf_secret(self) -> bytes:
        return self._secret

    async def running_servers(self) -> int | None:
        return self._running
