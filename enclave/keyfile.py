"""Secret key files on the host: created once (random, 0600, written with O_EXCL so two
racing processes agree on one key), and refused when too widely readable or the wrong size.

Used for the per-project pseudonym keys and the enclave-wide differencing key; never
mounted into any container.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from enclave.errors import EnclaveError


def secret_key(path: Path, size: int, what: str, error: type[EnclaveError]) -> bytes:
    """The key at ``path`` (``size`` random bytes), created on first use; ``what`` names it
    in the one-line ``error`` raised for an unsafe or damaged file."""
    try:
        # O_EXCL: if two processes race, one creates the key and the other reads it.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_bytes(size))
            fh.flush()
            os.fsync(fh.fileno())
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise error(f"{what} {path} is readable by others (mode {mode:o}): chmod 600 it and check who read it")
    key = path.read_bytes()
    if len(key) != size:
        raise error(f"{what} {path} is {len(key)} bytes, not {size}: restore it from backup")
    return key
