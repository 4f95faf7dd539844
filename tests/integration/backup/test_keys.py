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


def test_keys_rotate_cli_old_releases_verify_and_download_with_the_keyring(busy, tmp_path: Path) -> None:
    import os
    import subprocess

    from sqlalchemy import select

    from backup_world import release, to_state
    from enclave.db.models import EgressRequest
    from enclave.db.session import unit_of_work
    from enclave.egress import release as release_service
    from enclave.enums import EgressStatus
    from enclave.users import get_user

    repo = Path(__file__).resolve().parents[3]
    enclave = [str(repo / ".venv" / "bin" / "python"), "-m", "enclave.cli.main"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCLAVE_")}
    env.update(ENCLAVE_HOME=str(busy.settings.home), ENCLAVE_POLICIES=str(repo / "policies"))
    with unit_of_work(busy.settings) as s:
        old = s.scalars(select(EgressRequest).where(EgressRequest.status == EgressStatus.RELEASED)).first()
        old_record, old_id = old.release_record_path, old.id
    rotated = subprocess.run([*enclave, "--as", "admin", "keys", "rotate"], env=env, capture_output=True, text=True)
    assert rotated.returncode == 0 and "retired" in rotated.stdout, rotated.stderr
    rid = to_state(busy, EgressStatus.APPROVED)
    release(busy, rid)
    ring = busy.settings.keys_dir / KEYRING_NAME
    for record in (old_record, str(busy.settings.export_dir / busy.slug / f"request-{rid}" / "release.json")):
        checked = subprocess.run([*enclave, "egress", "verify", record, "--keyring", str(ring)], env=env,
                                 capture_output=True, text=True)
        assert checked.returncode == 0, checked.stderr
        signed = subprocess.run([*enclave, "keys", "verify", record, "--keyring", str(ring)], env=env,
                                capture_output=True, text=True)
        assert signed.returncode == 0 and "verified" in signed.stdout, signed.stderr
    old_pub = subprocess.run([*enclave, "egress", "verify", old_record, "--public-key",
                              str(busy.settings.keys_dir / "egress-signing.pub")], env=env, capture_output=True, text=True)
    assert old_pub.returncode == 1 and "does NOT verify" in old_pub.stderr  # the current key alone is not enough
    with unit_of_work(busy.settings) as s:  # a release from before the rotation still downloads
        files = release_service.download_release(s, get_user(s, "rita"), busy.env, old_id, tmp_path / "got")
    assert (tmp_path / "got" / "release.json").exists() and len(files) == 3
    with unit_of_work(busy.settings) as s:
        from enclave.audit import list_events
        rotation = list(list_events(s, action="keys.rotate"))
        assert len(rotation) == 1 and rotation[0].actor == "admin"
