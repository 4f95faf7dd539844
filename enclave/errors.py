"""Typed domain errors.

Every error's message is one line that says what is wrong and what to do; the CLI and
the web layer show it as it is, never a traceback.

An error caused by one input may name it (``field=``: the form field or option it came
from) and say the same thing in the web's words (``web=``: no command-line flags or
commands), so a web form shows it beside the field and the CLI keeps its own message.
"""


class EnclaveError(Exception):
    """Base of every error a user may see."""

    exit_code = 1

    def __init__(self, message: str = "", *args: object, field: str | None = None, web: str | None = None) -> None:
        super().__init__(message, *args)
        self.field = field
        self.web = web


class NotFound(EnclaveError):
    """A named thing (user, project, dataset, request ...) does not exist."""


class PermissionDenied(EnclaveError):
    """The acting user may not do this."""


class InvalidTransition(EnclaveError):
    """A state machine refuses the requested move."""


class InvalidInput(EnclaveError):
    """A value given by the user is malformed or out of range."""


class Conflict(EnclaveError):
    """The change clashes with existing state (duplicate name, concurrent change)."""


class PolicyError(EnclaveError):
    """A policy file is missing, malformed or has an unknown key or bad value."""


class DatabaseError(EnclaveError):
    """The database is missing, corrupt or not at the expected schema."""
