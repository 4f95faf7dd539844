"""Irreversible steps in the web ask first, without any script: the form that takes the step
carries ``confirm=yes`` (a confirmation page's hidden field, or a required tick box beside the
button), and a POST without it is refused, so a stray or forged-but-XSRF-valid POST does nothing.
"""

from __future__ import annotations

from enclave.errors import InvalidInput

CONFIRM_FIELD = "confirm"


def check_confirmed(data: dict[str, str], doing: str) -> None:
    """Refuse unless the form confirmed ``doing`` (e.g. "close the project")."""
    if data.get(CONFIRM_FIELD) != "yes":
        raise InvalidInput(f"confirm that you want to {doing}: it cannot be undone", field=CONFIRM_FIELD,
                           web=f"tick the box to confirm that you want to {doing}: it cannot be undone")
