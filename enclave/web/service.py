"""How JupyterHub runs the web app: the managed service entry and its role.

:mod:`enclave.hub.config` adds these to the hub's services and roles.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from enclave.config import Settings

SERVICE_NAME = "enclave"
DEFAULT_PORT = 10101
# What every signed-in person needs in the hub's ``user`` role to sign in to the service.
USER_SCOPES = (f"access:services!service={SERVICE_NAME}",)
# What a person's sign-in token to the service carries beyond identity and access.
SIGN_IN_SCOPES = ("read:servers!user", "servers!user")


def hub_service(settings: Settings, environment: dict[str, str], port: int | None = None) -> dict[str, Any]:
    """The managed service ``enclave`` at ``/services/enclave/`` on a loopback port
    (``port``, else ENCLAVE_WEB_PORT, else 10101)."""
    port = port or int(environment.get("ENCLAVE_WEB_PORT") or os.environ.get("ENCLAVE_WEB_PORT") or DEFAULT_PORT)
    return {
        "name": SERVICE_NAME,
        "url": f"http://127.0.0.1:{port}",
        "command": [sys.executable, "-m", "enclave.web.app"],
        "environment": dict(environment),
        # One sign-in: the hub does not ask people to confirm access to its own service.
        "oauth_no_confirm": True,
        # A person's sign-in token may start and stop that person's own servers (the console's
        # buttons) and nothing of anybody else's: ``!user`` is the token's owner.
        "oauth_client_allowed_scopes": list(SIGN_IN_SCOPES),
        "display": True,
        "info": {"description": "Projects, applications, egress review, the audit log and the public register"},
    }


def hub_template_paths() -> list[str]:
    """Template folders for ``c.JupyterHub.template_paths``: the hub's home page gains a
    button to the enclave consoles."""
    return [str(Path(__file__).resolve().parent / "hub_templates")]


def hub_service_role() -> dict[str, Any]:
    """What the service's own token may do: read people's hub roles (which console they
    may open) and read servers (the dashboard's count, the console's states). Starting and
    stopping goes with the person's own sign-in token (:data:`SIGN_IN_SCOPES`), never this one."""
    return {
        "name": "enclave-web",
        "description": "The enclave web service: reads hub roles and server states",
        "scopes": ["list:users", "read:users:name", "read:roles:users", "read:servers"],
        "services": [SERVICE_NAME],
    }
