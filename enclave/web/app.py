"""The enclave web service: researcher, admin and reviewer consoles, a JSON API and the
public transparency register, served by JupyterHub as the managed service ``enclave``.

``create_app(settings, auth)`` builds the app; ``main()`` runs it as the hub starts it.
Every page and API call goes through the same service functions as the CLI.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from enclave.config import Settings
from enclave.errors import (
    Conflict,
    DatabaseError,
    EnclaveError,
    InvalidInput,
    InvalidTransition,
    NotFound,
    PermissionDenied,
    PolicyError,
)
from enclave.web.auth import Authenticator, HubUnavailable
from enclave.web.context import TEMPLATES_DIR, SignInRequired, WebState, render
from enclave.web.wording import web_message, without_cli

log = logging.getLogger("enclave.web")

STATIC_DIR = Path(__file__).resolve().parent / "static"
DEFAULT_PREFIX = "/services/enclave"

# Only the app's own scripts, styles and images; no inline script, no framing, forms
# post only back to the app (and the hub, for sign-out).
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

STATUS_OF: tuple[tuple[type[EnclaveError], int], ...] = (
    (NotFound, 404),
    (PermissionDenied, 403),
    (InvalidInput, 400),
    (InvalidTransition, 409),
    (Conflict, 409),
    (DatabaseError, 503),
    (HubUnavailable, 503),
    (PolicyError, 503),
)
TITLES = {400: "Check what you entered", 401: "Please sign in", 403: "Not allowed", 404: "Not found",
          405: "Not allowed", 409: "Not possible right now", 422: "Check what you entered",
          500: "Something went wrong", 503: "Temporarily unavailable"}


class SecurityHeaders:
    """Adds the content security policy and related headers to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"content-security-policy", CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"same-origin"),
                    (b"x-frame-options", b"DENY"),
                    (b"cross-origin-opener-policy", b"same-origin"),
                ]
                if not any(k.lower() == b"cache-control" for k, _ in headers):
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(settings: Settings, auth: Authenticator, prefix: str = DEFAULT_PREFIX,
               hub_prefix: str = "/hub") -> FastAPI:
    """The web app for ``settings``' enclave, signing people in through ``auth``."""
    from enclave.web.api import router as api_router
    from enclave.web.pages import router as pages_router

    prefix = "/" + prefix.strip("/")
    app = FastAPI(
        title="Enclave API",
        version="1",
        description="The enclave's REST API. Authenticate with a JupyterHub API token: "
                    "`Authorization: token <token>`.",
        openapi_url=f"{prefix}/api/openapi.json",
        docs_url=None,  # the bundled docs pages load scripts from a CDN, which the CSP forbids
        redoc_url=None,
    )
    templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
    app.state.web = WebState(settings=settings, auth=auth, prefix=prefix, hub_prefix=hub_prefix.rstrip("/"),
                             templates=templates)
    app.mount(f"{prefix}/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(api_router, prefix=f"{prefix}/api")
    app.include_router(pages_router, prefix=prefix)
    app.add_middleware(SecurityHeaders)
    _install_error_handlers(app, prefix)
    return app


def _wants_json(request: Request, prefix: str) -> bool:
    return request.url.path.startswith(f"{prefix}/api/")


def _back_link(request: Request, prefix: str) -> str | None:
    """The page the person came from, if it is one of the app's own pages (never elsewhere)."""
    from urllib.parse import urlsplit

    referer = urlsplit(request.headers.get("referer", ""))
    if referer.netloc != request.url.netloc or not referer.path.startswith(prefix + "/"):
        return None
    if referer.path == request.url.path and request.method == "GET":
        return None  # the page that failed is no way back
    return referer.path + (f"?{referer.query}" if referer.query else "")


def _error(request: Request, prefix: str, status: int, message: str,  # type: ignore[no-untyped-def]
           web_text: str | None = None):
    if _wants_json(request, prefix):
        return JSONResponse({"detail": message}, status_code=status)
    return render(request, "error.html", status_code=status, status=status, title=TITLES.get(status, "Error"),
                  message=web_text if web_text is not None else without_cli(message),
                  back=_back_link(request, prefix))


def _install_error_handlers(app: FastAPI, prefix: str) -> None:
    @app.exception_handler(SignInRequired)
    async def _sign_in(request: Request, exc: SignInRequired):  # type: ignore[no-untyped-def]
        if _wants_json(request, prefix) or request.method != "GET":
            return JSONResponse({"detail": "sign in first: send a JupyterHub token as 'Authorization: token ...'"},
                                status_code=401, headers={"WWW-Authenticate": "token"})
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return request.app.state.web.auth.login_redirect(request, target)

    @app.exception_handler(EnclaveError)
    async def _domain(request: Request, exc: EnclaveError):  # type: ignore[no-untyped-def]
        status = next((code for cls, code in STATUS_OF if isinstance(exc, cls)), 400)
        return _error(request, prefix, status, str(exc), web_message(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):  # type: ignore[no-untyped-def]
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path"))
        message = f"{where}: {first.get('msg')}" if where else str(first.get("msg"))
        return _error(request, prefix, 422, message.replace("\n", " "))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):  # type: ignore[no-untyped-def]
        message = {404: "there is no such page: check the address or go back to the start page",
                   405: "this address does not accept that kind of request"}.get(exc.status_code, str(exc.detail))
        return _error(request, prefix, exc.status_code, message)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):  # type: ignore[no-untyped-def]
        # Logged for operators; users see one line and never a traceback.
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return _error(request, prefix, 500, "something went wrong on our side: nothing was changed; "
                                            "try again, and tell the enclave team if it keeps happening")


def main() -> None:
    """Run as the hub-managed service ``enclave`` (the hub sets the JUPYTERHUB_* variables)."""
    import uvicorn
    from urllib.parse import urlparse

    from enclave.policy import load_policies_or_exit
    from enclave.web.auth import HubAuthenticator

    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", DEFAULT_PREFIX + "/").rstrip("/")
    url = urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:10101"))
    hub_prefix = os.environ.get("JUPYTERHUB_BASE_URL", "/").rstrip("/") + "/hub"
    secure = os.environ.get("ENCLAVE_WEB_SECURE_COOKIES", "") == "1"
    logging.basicConfig(level=logging.INFO)
    settings = Settings.from_env()
    load_policies_or_exit(settings.policies_dir, "the enclave web service")
    app = create_app(settings, HubAuthenticator(prefix, cookie_secure=secure), prefix=prefix,
                     hub_prefix=hub_prefix)
    uvicorn.run(app, host=url.hostname or "127.0.0.1", port=url.port or 10101, proxy_headers=True,
                forwarded_allow_ips="127.0.0.1", log_level="info", log_config=None)


if __name__ == "__main__":
    main()
