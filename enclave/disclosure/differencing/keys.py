"""The enclave-wide differencing key and what it derives: fingerprints and record keys.

The key lives in ``ENCLAVE_HOME/keys/differencing.key`` (0600, in the 0700 keys folder),
like the per-project pseudonym keys, and is never mounted into a container. A patient's
*fingerprint* is HMAC-SHA256(key, "fingerprint" | source key), cut to 64 bits: the same
patient has the same fingerprint in every project, so tables of different projects can be
compared, while no project's pseudonyms or the source key can be read back from it. A
patient's *record key* (the cell-key method's fixed random number, 0 to 255) is
HMAC-SHA256(key, "record" | source key) cut to 8 bits: random to anyone without the key,
and fixed, so the same people always give the same cell key.
"""

from __future__ import annotations

import hmac
import os
from pathlib import Path

import numpy as np

from enclave.errors import EnclaveError
from enclave.keyfile import secret_key

KEY_BYTES = 32
KEY_FILE = "differencing.key"


class DifferencingKeyError(EnclaveError):
    """The differencing key file is unreadable, the wrong size or too widely readable."""


def enclave_key(keys_dir: Path) -> bytes:
    """The enclave-wide key, created (random, 0600) on first use; refuses an unsafe key file."""
    keys_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(keys_dir, 0o700)
    path = keys_dir / KEY_FILE
    return secret_key(path, KEY_BYTES, "differencing key", DifferencingKeyError)


def fingerprints(key: bytes, source_keys: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(fingerprints as uint64, record keys as uint8) of these source patient keys."""
    fp_mac = hmac.new(key, b"fingerprint\x1f", "sha256")
    rk_mac = hmac.new(key, b"record\x1f", "sha256")
    fps = np.empty(len(source_keys), dtype=np.uint64)
    rks = np.empty(len(source_keys), dtype=np.uint8)
    for i, value in enumerate(source_keys):
        data = value.encode()
        a = fp_mac.copy()
        a.update(data)
        fps[i] = int.from_bytes(a.digest()[:8], "big")
        b = rk_mac.copy()
        b.update(data)
        rks[i] = b.digest()[0]
    return fps, rks
