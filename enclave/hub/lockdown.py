"""Jupyter server extension that refuses the notebook server's download endpoints.

Loaded inside every notebook container (the image's jupyter_server config enables it).
It answers 403 with a one-line plain-text reason for:

- ``files/...``     raw file downloads; what JupyterLab's "Download", "Copy Download Link"
                    and "Open in New Browser Tab" use;
- ``view/...``      the HTML page that wraps ``files/`` for viewing in a browser tab;
- ``nbconvert/...`` "Save and Export Notebook As", which sends the export as a download.

With the tier's settings from the hub (``ENCLAVE_BROWSER_POLICY``) it also:

- refuses ``terminals/...`` and ``api/terminals...`` when the tier has no terminals, and
  otherwise serves terminal websockets through ``output_guard.BoundedTermSocket``;
- refuses (403) JupyterLab settings and workspace answers over 1 MiB (those files live on
  the home tmpfs, where code in the container can write them);
- refuses to let the server start unless its contents manager is
  ``contents_guard.GuardedContentsManager`` and its kernel websocket connection is
  ``output_guard.BoundedKernelWebsocketConnection`` (fail closed: a server started
  without the hub's options, or with a replaced class, does not serve at all).

All of this runs as the same user as the researcher's code: it is defence in depth against
casual copying, and whatever the screen shows can still be copied or photographed. The
bound the container cannot change is the egress meter outside it. docs/containers.md says
exactly what is and is not prevented. Results leave the enclave only through an egress
request.
"""

from __future__ import annotations

import re
from typing import Any

from tornado import httputil, web
from tornado.web import OutputTransform

REFUSAL = (
    "403: downloads are disabled in the enclave; save results in project/outbox/ "
    "and submit an egress request to have them reviewed and released."
)

# Patterns relative to the server's base URL (e.g. /user/alice/project/).
REFUSED_PATTERNS: tuple[str, ...] = (r"files(?:/.*)?", r"view(?:/.*)?", r"nbconvert(?:/.*)?")


class RefusedHandler(web.RequestHandler):
    """Refuses every method with 403 and the plain-text REFUSAL."""

    reason = REFUSAL

    def check_xsrf_cookie(self) -> None:
        """Nothing to protect: every request is refused (and gets the plain reason)."""

    def prepare(self) -> None:
        self.set_status(403)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        if self.request.method == "HEAD":
            self.finish()
        else:
            self.finish(self.reason + "\n")


# JupyterLab keeps its settings and layout in files on the home tmpfs, which code in the
# container can write too; their API answers are capped so they are not a bulk channel.
LAB_STATE_PATH = re.compile(r"/lab/api/(?:workspaces|settings)(?:/|$)")
LAB_STATE_CAP = 1024 * 1024
LAB_STATE_REFUSAL = b'{"message": "403: this JupyterLab settings or workspace answer is over 1 MiB; the enclave does not send it"}'


class CapLabState(OutputTransform):
    """Refuses (403) a settings or workspace answer over LAB_STATE_CAP bytes."""

    def __init__(self, request: httputil.HTTPServerRequest) -> None:
        self.capped = bool(LAB_STATE_PATH.search(request.path))
        self.sent = 0

    def transform_first_chunk(self, status_code: int, headers: httputil.HTTPHeaders, chunk: bytes,
                              finishing: bool) -> tuple[int, httputil.HTTPHeaders, bytes]:
        if self.capped and len(chunk) > LAB_STATE_CAP:
            headers["Content-Type"] = "application/json"
            headers["Content-Length"] = str(len(LAB_STATE_REFUSAL))
            self.sent = LAB_STATE_CAP + 1
            return 403, headers, LAB_STATE_REFUSAL
        self.sent = len(chunk)
        return status_code, headers, chunk

    def transform_chunk(self, chunk: bytes, finishing: bool) -> bytes:
        if not self.capped:
            return chunk
        if self.sent > LAB_STATE_CAP:
            return b""
        self.sent += len(chunk)
        return chunk if self.sent <= LAB_STATE_CAP else b""


TERMINAL_REFUSAL = "403: terminals are not available at this project's tier."
TERMINAL_PATTERNS: tuple[str, ...] = (r"terminals(?:/.*)?", r"api/terminals(?:/.*)?")
TERMINAL_SOCKET = r"terminals/websocket/(\w+)"


class TerminalRefusedHandler(RefusedHandler):
    """Refuses terminals at a tier without them."""

    reason = TERMINAL_REFUSAL


def _prefix(base_url: str) -> str:
    return "/" + base_url.strip("/") + "/" if base_url.strip("/") else "/"


def refused_handlers(base_url: str, terminals: bool = True) -> list[tuple[str, type[web.RequestHandler]]]:
    """The (pattern, handler) pairs that shadow the server's download endpoints (and its
    terminals, when the tier has none)."""
    base = _prefix(base_url)
    handlers = [(base + pattern, RefusedHandler) for pattern in REFUSED_PATTERNS]
    if not terminals:
        handlers += [(base + pattern, TerminalRefusedHandler) for pattern in TERMINAL_PATTERNS]
    return handlers


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "enclave.hub.lockdown"}]


def check_guarded(serverapp: Any) -> None:
    """Raise unless the server runs the enclave's contents manager and kernel connection."""
    from enclave.hub.contents_guard import GuardedContentsManager
    from enclave.hub.output_guard import BoundedKernelWebsocketConnection

    if not isinstance(serverapp.contents_manager, GuardedContentsManager):
        raise RuntimeError("enclave lockdown: the contents manager is not GuardedContentsManager; "
                           "start this server from the enclave's hub")
    connection = serverapp.kernel_websocket_connection_class
    if not (isinstance(connection, type) and issubclass(connection, BoundedKernelWebsocketConnection)):
        raise RuntimeError("enclave lockdown: the kernel websocket connection is not "
                           "BoundedKernelWebsocketConnection; start this server from the enclave's hub")


def _load_jupyter_server_extension(serverapp: Any) -> None:
    """Register the refusing handlers ahead of the server's own (tornado tries handlers
    added with add_handlers before the application's initial ones, and extensions load in
    name order, so before jupyter_server_terminals' own socket)."""
    from enclave.hub.browser_policy import from_environment

    try:
        settings = from_environment()  # without the hub's settings the server must not run
        check_guarded(serverapp)
    except Exception as exc:
        serverapp.log.critical("enclave lockdown: %s", exc)
        # SystemExit, not the exception: jupyter_server logs and ignores an extension's
        # Exception unless reraise_server_extension_failures is set. Fail closed anyway.
        raise SystemExit(f"enclave lockdown: {exc}") from None
    base_url = serverapp.web_app.settings.get("base_url", "/")
    handlers: list[tuple[str, Any, dict[str, Any]] | tuple[str, Any]] = list(
        refused_handlers(base_url, terminals=settings.terminals))
    if settings.terminals:
        from enclave.hub.output_guard import BoundedTermSocket

        handlers.append((_prefix(base_url) + TERMINAL_SOCKET, BoundedTermSocket, {"name": "jupyter_server_terminals"}))
    serverapp.web_app.add_handlers(".*$", handlers)
    serverapp.web_app.add_transform(CapLabState)
    serverapp.log.info("enclave lockdown: %s", ", ".join(h[0] for h in handlers))
