"""Key rotation: a new signing key, every old record still verifies with the keyring, and
a keyring or record that does not hold together is refused."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from enclave.egress.signing import (KEYRING_NAME, PRIVATE_NAME, load_keyring, load_or_create_key, load_public_key,
                                    rotate_key, sign_record, verify_envelope)
from enclave.errors import InvalidInput


def _record(n: int, when: dt.datetime | None = None) -> dict:
    return {"request": {"id": n}, "timestamps": {"released": (when or dt.datetime.now(dt.UTC)).isoformat()}}


def test_keys_rotate_old_and_new_records_verify_with_the_keyring(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    old_envelope = sign_record(_record(1), load_or_create_key(keys))
    old_private = (keys / PRIVATE_NAME).read_bytes()
    old_id, new_id = rotate_key(keys)
    new_envelope = sign_record(_record(2), load_or_create_key(keys))
    assert old_id != new_id and (keys / PRIVATE_NAME).read_bytes() != old_private  # the old private key is gone
    assert new_envelope["signature"]["key_id"] == new_id
    ring = load_public_key(keys / KEYRING_NAME)
    assert verify_envelope(old_envelope, ring)["request"]["id"] == 1
    assert verify_envelope(new_envelope, ring)["request"]["id"] == 2
    # The current public key alone no longer verifies the old record: the keyring is needed.
    with pytest.raises(InvalidInput, match="does NOT verify"):
        verify_envelope(old_envelope, load_public_key(keys / "egress-signing.pub"))
    dates = load_keyring(keys / KEYRING_NAME).keys
    assert dates[0].valid_until is not None and dates[1].valid_until is None and dates[1].valid_from >= dates[0].valid_from


def test_keys_a_record_dated_after_its_keys_retirement_is_refused(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    stolen = load_or_create_key(keys)  # someone kept a copy of the old private key
    rotate_key(keys)
    forged = sign_record(_record(9, dt.datetime.now(dt.UTC) + dt.timedelta(days=3)), stolen)
    with pytest.raises(InvalidInput, match="outside the validity"):
        verify_envelope(forged, load_public_key(keys / KEYRING_NAME))


def test_keys_a_keyring_with_an_unendorsed_key_is_refused(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    load_or_create_key(keys)
    rotate_key(keys)
    other = tmp_path / "other"
    load_or_create_key(other)  # an attacker's key, slipped into the keyring
    ring = json.loads((keys / KEYRING_NAME).read_text())
    ring["keys"].append(json.loads((other / KEYRING_NAME).read_text())["keys"][0])
    (keys / KEYRING_NAME).write_text(json.dumps(ring))
    with pytest.raises(InvalidInput, match="not endorsed"):
        load_keyring(keys / KEYRING_NAME)


def test_keys_a_record_signed_by_a_key_outside_the_keyring_is_refused(tmp_path: Path) -> None:
    load_or_create_key(tmp_path / "site")
    envelope = sign_record(_record(1), load_or_create_key(tmp_path / "elsewhere"))
    with pytest.raises(InvalidInput, match="not in the keyring"):
        verify_envelope(envelope, load_public_key(tmp_path / "site" / KEYRING_NAME))
