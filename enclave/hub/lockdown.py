"""Jupyter server extension that refuses the notebook server's download endpoints.

Loaded inside every notebook container (the image's jupyter_server config enables it).
It answers 403 with a one-line plain-text reason for:

- ``files/...``     raw file downloads; what JupyterLab's "Download", "Copy Download Link"
                    and "Open in New Browser Tab" use;
- ``view/...``      the HTML page that wraps ``files/`` for viewing in a browser tab;
- ``nbconvert/...`` "Save and Export Notebook As", which sends the export as a download.

It is a speed bump against casual copying, not the disclosure boundary: the contents API
(which JupyterLab needs to open and save files) still serves files under the server's
root, and whatever the screen shows can be copied or photographed. docs/containers.md
says exactly what is and is not prevented. Results leave the enclave only through an
egress request.
"""

from __future__ import annotations

from typing import Any

from tornado import web

REFUSAL = (
    "403: downloads are disabled in the enclave; save results in project/outbox/ "
    "and submit an egress request to have them reviewed and released."
)

# Patterns relative to the server's base URL (e.g. /user/alice/project/).
REFUSED_PATTERNS: tuple[str, ...] = (r"files(?:/.*)?", r"view(?:/.*)?", r"nbconvert(?:/.*)?")


class RefusedHandler(web.RequestHandler):
    """Refuses every method with 403 and the plain-text REFUSAL."""

    def check_xsrf_cookie(self) -> None:
        """Nothing to protect: every request is refused (and gets the plain reason)."""

    def prepare(self) -> None:
        self.set_status(403)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        if self.request.method == "HEAD":
            self.finish()
        else:
            self.finish(REFUSAL + "\n")


def refused_handlers(base_url: str) -> list[tuple[str, type[web.RequestHandler]]]:
    """The (pattern, handler) pairs that shadow the server's download endpoints."""
    base = "/" + base_url.strip("/") + "/" if base_url.strip("/") else "/"
    return [(base + pattern, RefusedHandler) for pattern in REFUSED_PATTERNS]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "enclave.hub.lockdown"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    """Register the refusing handlers ahead of the server's own (tornado tries handlers
    added with add_handlers before the application's initial ones)."""
    handlers = refused_handlers(serverapp.web_app.settings.get("base_url", "/"))
    serverapp.web_app.add_handlers(".*$", handlers)
    serverapp.log.info("enclave lockdown: refusing %s", ", ".join(p for p, _ in handlers))
