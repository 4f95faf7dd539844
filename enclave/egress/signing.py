"""Signing release records with Ed25519 (the ``cryptography`` library) and verifying them.

The private key lives in ``keys_dir/egress-signing.key`` (PKCS#8 PEM, mode 0600, in a 0700
folder outside every container); the public key beside it in ``egress-signing.pub`` is
what a data custodian needs. A signed record is JSON:

    {"record": {...}, "signature": {"algorithm": "ed25519", "key_id": "<sha256 of the raw
     public key, 16 hex>", "value": "<base64 signature of the canonical JSON of record>"}}

Canonical JSON: keys sorted, no spaces (``separators=(",", ":")``), UTF-8.

The key rotates (``enclave keys rotate``). Every public key the site ever signed with
stays in the published keyring ``keys_dir/keyring.json`` with its validity dates, and
each new key is endorsed (signed) by the key it replaces, so a custodian who trusted the
first key can trust every later one:

    {"format": "enclave-keyring/1", "keys": [{"key_id", "algorithm": "ed25519",
     "public_key": "<PEM>", "valid_from": "<ISO>", "valid_until": "<ISO>" | null,
     "endorsement": null | "<base64 signature by the previous key of the entry's
     canonical JSON without endorsement and valid_until>"}]}
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import fcntl
import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from enclave.errors import InvalidInput, NotFound, PolicyError

PRIVATE_NAME = "egress-signing.key"
PUBLIC_NAME = "egress-signing.pub"
KEYRING_NAME = "keyring.json"
KEYRING_FORMAT = "enclave-keyring/1"
# A release that loaded the key just before a rotation signs a moment after the old key's
# end: records dated up to this long after a key's end still verify with it.
ROTATION_GRACE = dt.timedelta(hours=1)


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
    _publish(keys_dir, key)
    return key


def _pem(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


@contextmanager
def _keys_lock(keys_dir: Path) -> Iterator[None]:
    """Serialise keyring writers (rotation, first publication) across processes."""
    with open(keys_dir / ".keyring.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _publish(keys_dir: Path, key: Ed25519PrivateKey) -> None:
    """Make sure ``egress-signing.pub`` and the keyring name the current key."""
    public = keys_dir / PUBLIC_NAME
    pub_pem = _pem(key.public_key())
    if not public.exists() or public.read_bytes() != pub_pem:
        _write_atomic(public, pub_pem, 0o644)
    ring_path = keys_dir / KEYRING_NAME
    kid = key_id(key.public_key())
    if ring_path.exists() and any(e["key_id"] == kid for e in _read_ring(ring_path)["keys"]):
        return
    with _keys_lock(keys_dir):
        ring = _read_ring(ring_path) if ring_path.exists() else {"format": KEYRING_FORMAT, "keys": []}
        if any(e["key_id"] == kid for e in ring["keys"]):
            return
        # A key that predates the keyring: valid from when its file was written.
        since = dt.datetime.fromtimestamp((keys_dir / PRIVATE_NAME).stat().st_mtime, dt.UTC)
        ring["keys"].append(_entry(key.public_key(), since, endorser=None))
        _write_atomic(ring_path, json.dumps(ring, indent=2, sort_keys=True).encode() + b"\n", 0o644)


def _entry(public_key: Ed25519PublicKey, since: dt.datetime, endorser: Ed25519PrivateKey | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"key_id": key_id(public_key), "algorithm": "ed25519",
                             "public_key": _pem(public_key).decode(), "valid_from": since.isoformat()}
    entry["endorsement"] = base64.b64encode(endorser.sign(canonical(entry))).decode() if endorser else None
    entry["valid_until"] = None
    return entry


def _read_ring(path: Path) -> dict[str, Any]:
    try:
        ring = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NotFound(f"no keyring at {path}: ask the enclave operator for keyring.json") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidInput(f"{path} is not a keyring (not JSON): pass the enclave's keyring.json") from None
    if not isinstance(ring, dict) or ring.get("format") != KEYRING_FORMAT or not isinstance(ring.get("keys"), list):
        raise InvalidInput(f"{path} is not an enclave keyring (format {KEYRING_FORMAT}): pass the enclave's keyring.json")
    return ring


def rotate_key(keys_dir: Path) -> tuple[str, str]:
    """Replace the signing key with a new one; returns (old key id, new key id).

    The keyring gains the new key, endorsed by the old one, before the new key signs
    anything, and the old key's end is recorded; the old private key is then destroyed
    (it never signs again), its public key stays in the keyring.
    """
    old = load_or_create_key(keys_dir)
    new = Ed25519PrivateKey.generate()
    now = dt.datetime.now(dt.UTC)
    with _keys_lock(keys_dir):
        ring_path = keys_dir / KEYRING_NAME
        ring = _read_ring(ring_path)
        for entry in ring["keys"]:
            if entry["key_id"] == key_id(old.public_key()) and entry["valid_until"] is None:
                entry["valid_until"] = now.isoformat()
        ring["keys"].append(_entry(new.public_key(), now, endorser=old))
        _write_atomic(ring_path, json.dumps(ring, indent=2, sort_keys=True).encode() + b"\n", 0o644)
        pem = new.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        _write_atomic(keys_dir / PRIVATE_NAME, pem, 0o600)
        _write_atomic(keys_dir / PUBLIC_NAME, _pem(new.public_key()), 0o644)
    return key_id(old.public_key()), key_id(new.public_key())


@dataclass(frozen=True)
class KeyringKey:
    key_id: str
    public_key: Ed25519PublicKey
    valid_from: dt.datetime
    valid_until: dt.datetime | None


@dataclass(frozen=True)
class Keyring:
    """Every public key a site signed with, each endorsed by the one before it."""

    keys: tuple[KeyringKey, ...]

    def find(self, kid: str) -> KeyringKey | None:
        return next((k for k in self.keys if k.key_id == kid), None)


def load_keyring(path: Path) -> Keyring:
    """Read a keyring and check its chain of endorsements; raise InvalidInput if broken."""
    ring = _read_ring(path)
    keys: list[KeyringKey] = []
    try:
        for n, entry in enumerate(ring["keys"]):
            public = serialization.load_pem_public_key(entry["public_key"].encode())
            if not isinstance(public, Ed25519PublicKey) or key_id(public) != entry["key_id"]:
                raise InvalidInput(f"{path}: key {n + 1} is not the Ed25519 key its id says: do not trust this keyring")
            if keys:
                body = {k: v for k, v in entry.items() if k not in ("endorsement", "valid_until")}
                try:
                    keys[-1].public_key.verify(base64.b64decode(entry.get("endorsement") or "", validate=True), canonical(body))
                except (InvalidSignature, binascii.Error, ValueError):
                    raise InvalidInput(
                        f"{path}: key {entry['key_id']} is not endorsed by the key before it: do not trust this keyring"
                    ) from None
            until = entry.get("valid_until")
            keys.append(KeyringKey(entry["key_id"], public, dt.datetime.fromisoformat(entry["valid_from"]),
                                   dt.datetime.fromisoformat(until) if until else None))
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, InvalidInput):
            raise
        raise InvalidInput(f"{path}: a keyring entry is malformed ({exc}): pass the enclave's keyring.json") from None
    if not keys:
        raise InvalidInput(f"{path}: the keyring holds no keys")
    return Keyring(tuple(keys))


def site_verifier(keys_dir: Path) -> Path:
    """What verifies this site's records: its keyring, or its public key before it has one."""
    ring = Path(keys_dir) / KEYRING_NAME
    return ring if ring.exists() else Path(keys_dir) / PUBLIC_NAME


def sign_record(record: dict[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    """The signed envelope of ``record``."""
    # Round-trip first so what is signed is exactly what a reader parses back.
    record = json.loads(canonical(record))
    return {"record": record, "signature": {
        "algorithm": "ed25519", "key_id": key_id(key.public_key()),
        "value": base64.b64encode(key.sign(canonical(record))).decode(),
    }}


def canonical_plain(record: dict[str, Any]) -> bytes:
    """:func:`canonical` of a record of plain JSON values (dicts with string keys, lists,
    strings, integers of 64 bits, booleans, None; no floats, whose text may differ), the same
    bytes, written by orjson several times faster (a backup manifest lists every file)."""
    try:
        return orjson.dumps(record, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # what orjson does not take (a larger integer, say): the reference form
        return canonical(record)


def signed_json(record: dict[str, Any], key: Ed25519PrivateKey) -> bytes:
    """The signed envelope of ``record`` as JSON bytes, in one serialisation (for a large
    record of plain JSON values such as a backup manifest, see :func:`canonical_plain`;
    :func:`sign_record` round-trips anything else first)."""
    body = canonical_plain(record)
    signature = {"algorithm": "ed25519", "key_id": key_id(key.public_key()), "value": base64.b64encode(key.sign(body)).decode()}
    return b'{"record":' + body + b',"signature":' + canonical(signature) + b"}"


def load_public_key(path: Path) -> Ed25519PublicKey | Keyring:
    """A PEM public key, or a keyring (``keyring.json``): whatever the file holds."""
    try:
        data = Path(path).read_bytes()
        if data.lstrip().startswith(b"{"):
            return load_keyring(path)
        key = serialization.load_pem_public_key(data)
    except FileNotFoundError:
        raise NotFound(f"no public key at {path}: ask the enclave operator for egress-signing.pub and pass it with --public-key") from None
    except ValueError:
        raise InvalidInput(f"{path} is not a PEM public key: pass the enclave's egress-signing.pub with --public-key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise InvalidInput(f"{path} is not an Ed25519 public key: pass the enclave's egress-signing.pub")
    return key


def _record_time(record: dict[str, Any]) -> dt.datetime | None:
    stamp = (record.get("timestamps") or {}).get("released") if isinstance(record.get("timestamps"), dict) else None
    stamp = stamp or record.get("signed_at")
    try:
        parsed = dt.datetime.fromisoformat(stamp) if isinstance(stamp, str) else None
    except ValueError:
        return None
    return parsed if parsed is None or parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def verify_envelope(envelope: Any, public_key: Ed25519PublicKey | Keyring) -> dict[str, Any]:
    """The record if its signature verifies with ``public_key`` (or the keyring's key it
    names, used within its validity dates); raise InvalidInput otherwise."""
    if not isinstance(envelope, dict) or not isinstance(envelope.get("record"), dict) \
            or not isinstance(envelope.get("signature"), dict):
        raise InvalidInput("this is not a signed release record: expected JSON with 'record' and 'signature'")
    signature = envelope["signature"]
    if signature.get("algorithm") != "ed25519":
        raise InvalidInput(f"unsupported signature algorithm {signature.get('algorithm')!r}: expected ed25519")
    if isinstance(public_key, Keyring):
        entry = public_key.find(str(signature.get("key_id")))
        if entry is None:
            raise InvalidInput(
                f"the record is signed with key {signature.get('key_id')!r}, which is not in the keyring: "
                "get the enclave's current keyring.json, and do not trust the record until it verifies"
            )
        when = _record_time(envelope["record"])
        if when is not None and (when < entry.valid_from - ROTATION_GRACE
                                 or (entry.valid_until is not None and when > entry.valid_until + ROTATION_GRACE)):
            raise InvalidInput(
                f"the record is dated {when:%Y-%m-%d %H:%M} UTC, outside the validity of key {entry.key_id} "
                f"({entry.valid_from:%Y-%m-%d} to {entry.valid_until:%Y-%m-%d} UTC): do not trust it"
                if entry.valid_until else
                f"the record is dated {when:%Y-%m-%d %H:%M} UTC, before key {entry.key_id} existed: do not trust it"
            )
        public_key = entry.public_key
    try:
        raw = base64.b64decode(str(signature.get("value", "")), validate=True)
        public_key.verify(raw, canonical(envelope["record"]))
    except (InvalidSignature, binascii.Error, ValueError):
        raise InvalidInput(
            "the release record's signature does NOT verify: the record was altered or signed with another key; do not trust it"
        ) from None
    return envelope["record"]


def rotate_signing_key(session: Any, actor: Any, keys_dir: Path) -> tuple[str, str]:
    """``enclave keys rotate``: an admin replaces the release-signing key, audited."""
    from enclave.audit import append_event
    from enclave.permissions import check_admin

    check_admin(actor, "rotate the release-signing key")
    old, new = rotate_key(keys_dir)
    append_event(session, actor, "keys.rotate", target=f"key:{new}", details={"retired": old, "current": new})
    return old, new
