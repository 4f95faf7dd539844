"""Crash injection for the crash-safety tests.

``crash_point("quarantine.copy")`` ends the process at once (exit status 137, as if
killed) when ``ENCLAVE_CRASH_AT`` names that point; otherwise it does nothing. Tests set
the variable in a subprocess to prove every step can be interrupted and retried.
"""

from __future__ import annotations

import os

CRASH_ENV = "ENCLAVE_CRASH_AT"


def crash_point(name: str) -> None:
    if os.environ.get(CRASH_ENV) == name:
        os._exit(137)
