"""Signing release records with Ed25519 (the ``cryptography`` library) and verifying them.

The private key lives in ``keys_dir/egress-signing.key`` (PKCS#8 PEM, mode 0600, in a 0700
folder outside every container); the public key beside it in ``egress-signing.pub`` is
what a data custodian needs. A signed record is JSON:

    {"record": {...}, "signature": {"algorithm": "ed25519", "key_id": "<sha256 of the raw
     public key, 16 hex>", "value": "<base64 signature of the canonical JSON of record>"}}

Canonical JSON: keys sorted, no spaces (``separators=(",", ":")``), UTF-8.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from enclave.errors import InvalidInput, NotFound, PolicyError

PRIVATE_NAME = "egress-signing.key"
PUBLIC_NAME = "egress-signing.pub"


def canonical(record: dict[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def load_or_create_key(keys_dir: Path) -> Ed25519PrivateKey:
    """The site's signing key, created (0600) on first use; refuse a key others can read."""
    keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    private = keys_dir / PRIVATE_NAME
    if not private.exists():
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        fd, tmp = tempfile.mkstemp(dir=keys_dir, prefix=".key-")  # mkstemp creates it 0600
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(pem)
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, private)  # atomic: a concurrent creator's key wins, never a half-written one
            except FileExistsError:
                pass
        finally:
            os.unlink(tmp)
    mode = stat.S_IMODE(private.stat().st_mode)
    if mode & 0o077:
        raise PolicyError(f"{private} is readable by others (mode {mode:o}): run 'chmod 600 {private}'")
    key = serialization.load_pem_private_key(private.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise PolicyError(f"{private} is not an Ed25519 key: move it aside and let the enclave create one")
    public = keys_dir / PUBLIC_NAME
    pub_pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    if not public.exists() or public.read_bytes() != pub_pem:
        public.write_bytes(pub_pem)
        public.chmod(0o644)
    return key


def sign_record(record: dict[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    """The signed envelope of ``record``."""
    # Round-trip first so what is signed is exactly what a reader parses back.
    record = json.loads(canonical(record))
    return {"record": record, "signature": {
        "algorithm": "ed25519", "key_id": key_id(key.public_key()),
        "value": base64.b64encode(key.sign(canonical(record))).decode(),
    }}


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(Path(path).read_bytes())
    except FileNotFoundError:
        raise NotFound(f"no public key at {path}: ask the enclave operator for egress-signing.pub and pass it with --public-key") from None
    except ValueError:
        raise InvalidInput(f"{path} is not a PEM public key: pass the enclave's egress-signing.pub with --public-key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise InvalidInput(f"{path} is not an Ed25519 public key: pass the enclave's egress-signing.pub")
    return key


def verify_envelope(envelope: Any, public_key: Ed25519PublicKey) -> dict[str, Any]:
    """The record if its signature verifies with ``public_key``; raise InvalidInput otherwise."""
    if not isinstance(envelope, dict) or not isinstance(envelope.get("record"), dict) \
            or not isinstance(envelope.get("signature"), dict):
        raise InvalidInput("this is not a signed release record: expected JSON with 'record' and 'signature'")
    signature = envelope["signature"]
    if signature.get("algorithm") != "ed25519":
        raise InvalidInput(f"unsupported signature algorithm {signature.get('algorithm')!r}: expected ed25519")
    try:
        raw = base64.b64decode(str(signature.get("value", "")), validate=True)
        public_key.verify(raw, canonical(envelope["record"]))
    except (InvalidSignature, binascii.Error, ValueError):
        raise InvalidInput(
            "the release record's signature does NOT verify: the record was altered or signed with another key; do not trust it"
        ) from None
    return envelope["record"]
