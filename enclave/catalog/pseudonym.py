"""Per-project pseudonyms: a keyed hash (HMAC-SHA256) with one secret key per project.

The same patient gets the same pseudonym in every table and dataset of one project, so a
project can join its own tables; two projects hold different keys, so their pseudonyms
share nothing and cannot be joined to each other or, without the key, back to the source.
Keys live in ``$ENCLAVE_HOME/keys/pseudonym/<project>.key`` (0600, in a 0700 directory)
and are never mounted into any container.
"""

from __future__ import annotations

import hmac
import os
import re
from pathlib import Path

import polars as pl

from enclave.errors import EnclaveError, InvalidInput
from enclave.keyfile import secret_key

KEY_BYTES = 32
# 80 bits: collisions stay negligible for billions of values, and pseudonyms stay short.
PSEUDONYM_HEX = 20
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")


class PseudonymKeyError(EnclaveError):
    """A pseudonym key file is unreadable, the wrong size or too widely readable."""


def key_path(keys_dir: Path, project_slug: str) -> Path:
    if not _SLUG.match(project_slug):
        raise InvalidInput(f"{project_slug!r} is not a project slug: use lower-case letters, digits and '-'")
    return keys_dir / "pseudonym" / f"{project_slug}.key"


def project_key(keys_dir: Path, project_slug: str) -> bytes:
    """The project's key, created (random, 0600) on first use; refuses an unsafe key file."""
    path = key_path(keys_dir, project_slug)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(keys_dir, 0o700)
    os.chmod(path.parent, 0o700)
    return secret_key(path, KEY_BYTES, "pseudonym key", PseudonymKeyError)


def pseudonym(key: bytes, domain: str, value: str) -> str:
    """The pseudonym of ``value`` in identifier ``domain`` (patient, admission ...)."""
    message = f"{domain}\x1f{value}".encode()
    return hmac.digest(key, message, "sha256").hex()[:PSEUDONYM_HEX]


def pseudonymise(frame: pl.LazyFrame, column: str, key: bytes, domain: str) -> pl.LazyFrame:
    """Replace ``column`` by its pseudonyms (nulls stay null), hashing each distinct value once."""
    # Hash each distinct value once, then join on the column's own type (cheaper than text).
    distinct = frame.select(pl.col(column).drop_nulls().unique()).collect()[column]
    # HMAC with the key already absorbed: copying that state per value is ~2.5x faster
    # than hmac.digest, which sets the key up again every time (same result).
    keyed = hmac.new(key, f"{domain}\x1f".encode(), "sha256")

    def one(value: str) -> str:
        mac = keyed.copy()
        mac.update(value.encode())
        return mac.hexdigest()[:PSEUDONYM_HEX]

    mapping = pl.DataFrame(
        {"__value": distinct, "__pseudonym": pl.Series([one(v) for v in distinct.cast(pl.String)], dtype=pl.String)}
    ).lazy()
    order = frame.collect_schema().names()
    return (
        frame.join(mapping, left_on=column, right_on="__value", how="left", maintain_order="left")
        .with_columns(pl.col("__pseudonym").alias(column))
        .select(order)
    )
