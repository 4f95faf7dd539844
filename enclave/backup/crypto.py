"""Sealing secrets for backups and archives (the ``cryptography`` library).

- :func:`seal` / :func:`unseal`: a small secret (the keys folder) sealed to a passphrase
  (scrypt, then AES-256-GCM) or to a recipient's X25519 public key (ephemeral X25519,
  HKDF-SHA256, AES-256-GCM). The result is JSON; nothing of the secret is in the clear.
- :func:`encrypt_stream` / :func:`decrypt_stream`: a large file under a random 256-bit
  key, in 1 MiB AES-GCM chunks whose nonces carry the chunk number and a last-chunk flag,
  so chunks cannot be reordered, dropped or cut from the end unnoticed.
"""

from __future__ import annotations

import base64
import json
import os
import struct
from pathlib import Path
from typing import IO, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from enclave.errors import InvalidInput

SEALED_FORMAT = "enclave-sealed/1"
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
CHUNK = 1 << 20
STREAM_MAGIC = b"ENCLAVE-ARCHIVE1"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: Any) -> bytes:
    return base64.b64decode(str(text), validate=True)


def _scrypt(passphrase: str, salt: bytes) -> bytes:
    return Scrypt(salt=salt, length=32, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P).derive(passphrase.encode())


def _hkdf(shared: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(shared)


def seal(plaintext: bytes, *, passphrase: str | None = None, recipient: X25519PublicKey | None = None) -> bytes:
    """``plaintext`` sealed to a passphrase or to a recipient's public key (exactly one)."""
    if (passphrase is None) == (recipient is None):
        raise InvalidInput("give a passphrase or a recipient key to seal the keys with (exactly one)")
    nonce = os.urandom(12)
    if passphrase is not None:
        if len(passphrase) < 12:
            raise InvalidInput("the backup passphrase is too short: use at least 12 characters")
        salt = os.urandom(16)
        header = {"format": SEALED_FORMAT, "scheme": "scrypt-aes256gcm", "salt": _b64(salt),
                  "n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P}
        key = _scrypt(passphrase, salt)
    else:
        assert recipient is not None
        ephemeral = X25519PrivateKey.generate()
        eph_pub = ephemeral.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        rcp_pub = recipient.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        header = {"format": SEALED_FORMAT, "scheme": "x25519-hkdf-aes256gcm", "ephemeral": _b64(eph_pub),
                  "recipient": _b64(rcp_pub)}
        key = _hkdf(ephemeral.exchange(recipient), eph_pub + rcp_pub)
    aad = json.dumps(header, sort_keys=True).encode()
    header["nonce"] = _b64(nonce)
    header["ciphertext"] = _b64(AESGCM(key).encrypt(nonce, plaintext, aad))
    return json.dumps(header, sort_keys=True).encode()


def unseal(blob: bytes, *, passphrase: str | None = None, identity: X25519PrivateKey | None = None) -> bytes:
    """The plaintext of a sealed blob; InvalidInput if the secret is wrong or it was altered."""
    try:
        header = json.loads(blob)
        nonce, ciphertext = _unb64(header.pop("nonce")), _unb64(header.pop("ciphertext"))
        scheme = header.get("scheme")
        if header.get("format") != SEALED_FORMAT:
            raise ValueError("unknown format")
        if scheme == "scrypt-aes256gcm":
            if passphrase is None:
                raise InvalidInput("the keys in this backup are sealed to a passphrase: set ENCLAVE_BACKUP_PASSPHRASE")
            salt = _unb64(header["salt"])
            key = Scrypt(salt=salt, length=32, n=int(header["n"]), r=int(header["r"]), p=int(header["p"])).derive(passphrase.encode())
        elif scheme == "x25519-hkdf-aes256gcm":
            if identity is None:
                raise InvalidInput("the keys in this backup are sealed to a recipient key: pass its private key with --identity")
            eph_pub, rcp_pub = _unb64(header["ephemeral"]), _unb64(header["recipient"])
            key = _hkdf(identity.exchange(X25519PublicKey.from_public_bytes(eph_pub)), eph_pub + rcp_pub)
        else:
            raise ValueError(f"unknown scheme {scheme!r}")
        return AESGCM(key).decrypt(nonce, ciphertext, json.dumps(header, sort_keys=True).encode())
    except InvalidTag:
        raise InvalidInput("the sealed keys do not open: wrong passphrase or identity, or the backup was altered") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidInput(f"the sealed keys are damaged ({exc}): use another backup") from None


def write_identity(path: Path) -> Path:
    """A new X25519 key pair for sealing backups: ``path`` (private, 0600) and ``path.pub``."""
    key = X25519PrivateKey.generate()
    if path.exists() or path.with_suffix(path.suffix + ".pub").exists():
        raise InvalidInput(f"{path} already exists: choose another name")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    public = path.with_suffix(path.suffix + ".pub")
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return public


def load_recipient(path: Path) -> X25519PublicKey:
    try:
        key = serialization.load_pem_public_key(Path(path).read_bytes())
    except (OSError, ValueError):
        raise InvalidInput(f"{path} is not a PEM public key: make one with 'enclave backup keygen'") from None
    if not isinstance(key, X25519PublicKey):
        raise InvalidInput(f"{path} is not an X25519 public key: make one with 'enclave backup keygen'")
    return key


def load_identity(path: Path) -> X25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        raise InvalidInput(f"{path} is not a PEM private key: pass the key 'enclave backup keygen' wrote") from None
    if not isinstance(key, X25519PrivateKey):
        raise InvalidInput(f"{path} is not an X25519 private key: pass the key 'enclave backup keygen' wrote")
    return key


def _nonce(prefix: bytes, counter: int, last: bool) -> bytes:
    return prefix + struct.pack(">I", counter) + (b"\x01" if last else b"\x00") * 1


def encrypt_stream(source: IO[bytes], target: IO[bytes], key: bytes) -> None:
    """Encrypt ``source`` into ``target`` in authenticated chunks (see the module's docstring)."""
    prefix = os.urandom(7)
    aes = AESGCM(key)
    target.write(STREAM_MAGIC + prefix)
    counter, chunk = 0, source.read(CHUNK)
    while True:
        following = source.read(CHUNK) if chunk else b""
        last = not following
        target.write(aes.encrypt(_nonce(prefix, counter, last), chunk, None))
        if last:
            return
        counter, chunk = counter + 1, following


def decrypt_stream(source: IO[bytes], target: IO[bytes], key: bytes) -> None:
    """Decrypt what :func:`encrypt_stream` wrote; InvalidInput on any alteration."""
    head = source.read(len(STREAM_MAGIC) + 7)
    if not head.startswith(STREAM_MAGIC):
        raise InvalidInput("not an enclave archive: it was replaced or damaged")
    prefix, aes, counter = head[len(STREAM_MAGIC):], AESGCM(key), 0
    block = source.read(CHUNK + 16)
    while True:
        following = source.read(CHUNK + 16)
        try:
            target.write(aes.decrypt(_nonce(prefix, counter, not following), block, None))
        except InvalidTag:
            raise InvalidInput("the archive does not decrypt: it was altered, cut short or the key is wrong") from None
        if not following:
            return
        counter, block = counter + 1, following
