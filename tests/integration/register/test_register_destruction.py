"""The destruction record on the public register names no staff member: who closed the
project appears as a role, the record stays signed and verifiable, and the custodians'
copy keeps the name, bound to the signature; records of the earlier format still verify."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from enclave.clock import today
from enclave.db.models import DataRetention
from enclave.db.session import unit_of_work
from enclave.egress.signing import KEYRING_NAME, load_or_create_key, load_public_key, sign_record, verify_envelope
from enclave.enums import Role
from enclave.errors import InvalidInput
from enclave.projects.lifecycle import ProjectAction
from enclave.projects.retention import closed_by_name, housekeeping, move_project
from enclave.projects.service import create_project, get_project, transition_project
from enclave.projects.tiers import load_tiers
from enclave.register.service import destruction_record, get_entry
from enclave.users import get_user
from tests.register_support import EXAMPLE_REGISTER

CLOSER = "ursula-okafor"
TITLE = "Ursula Okafor's follow-up of heart failure"


def _destroy(settings, factory, session, slug: str) -> dict:
    factory.user(CLOSER, Role.ADMIN)
    factory.user("alice")
    create_project(session, factory.admin, load_tiers(settings.policies_dir), slug=slug, title=TITLE, pi="alice",
                   lay_summary="A study of outcomes.", end_date=today() + dt.timedelta(days=400),
                   register=EXAMPLE_REGISTER)
    for action in (ProjectAction.APPROVE, ProjectAction.ACTIVATE):
        transition_project(session, factory.admin, slug, action)
    session.commit()
    with unit_of_work(settings) as s:
        move_project(s, get_user(s, CLOSER), settings, slug, ProjectAction.CLOSE, "study finished")
    housekeeping(settings)
    with unit_of_work(settings) as s:
        due = s.get(DataRetention, get_project(s, slug).id).destroy_after
    assert housekeeping(settings, now=due + dt.timedelta(seconds=1)).destroyed == [slug]
    return json.loads((settings.export_dir / slug / "destruction.json").read_text())


def test_register_destruction_record_names_a_role_not_the_admin_and_still_verifies(settings, factory, session):
    custodians = _destroy(settings, factory, session, "sunset")
    keyring = load_public_key(settings.keys_dir / KEYRING_NAME)
    with unit_of_work(settings) as s:
        public = destruction_record(s, "sunset")
        entry = get_entry(s, "sunset")
        project = get_project(s, "sunset")
        tier, closed = project.tier, s.get(DataRetention, project.id)
        closed_on, destroyed_on = closed.closed_at.date().isoformat(), closed.destroyed_at.date().isoformat()
    published = json.dumps(public)
    for name in (CLOSER, "root-admin", "alice", "Ursula", "Okafor"):
        assert name not in published, name
    # The public record is the signed record itself: anyone verifies it with the keyring.
    record = verify_envelope(public, keyring)
    assert record["format"] == "enclave-destruction/2" and record["closed_by"]["role"] == "admin"
    assert set(public) == {"statement", "record", "signature"}
    assert public["statement"] == (
        f"Closed by an administrator on {closed_on}; its data were destroyed under the retention policy of tier "
        f"{tier} (retention.yaml version {record['policy']['version']}, {record['retention_days']} days) on "
        f"{destroyed_on}.")
    assert entry.data_destruction == public["statement"] and CLOSER not in entry.model_dump_json()

    # The custodians' copy: the same signature, and the name the signed commitment binds.
    assert verify_envelope(custodians, keyring) == record
    assert closed_by_name(custodians) == CLOSER
    assert custodians["custodians"]["project_title"] == TITLE
    with unit_of_work(settings) as s:
        assert s.get(DataRetention, get_project(s, "sunset").id).destruction_record == custodians
    # Another name beside the record is caught; the signed record cannot be edited to match.
    swapped = {**custodians, "custodians": {"closed_by": {**custodians["custodians"]["closed_by"], "name": "root-admin"}}}
    with pytest.raises(InvalidInput, match="not the one its signature binds"):
        closed_by_name(swapped)
    forged = {**custodians, "record": {**record, "closed_by": {"role": "admin", "sha256": "0" * 64}}}
    with pytest.raises(InvalidInput, match="does NOT verify"):
        verify_envelope(forged, keyring)


def test_register_destruction_record_of_the_earlier_format_is_published_without_the_name(settings, factory, session):
    """A record signed before names were withheld (format 1, the name inside the signed
    part): it still verifies for custodians; the register shows its facts without the name
    or the title, and without a signature it could not carry."""
    factory.user(CLOSER, Role.ADMIN)
    project = factory.project("oldie", "alice", "closed")
    session.commit()
    now = dt.datetime.now(dt.UTC)
    record = {
        "format": "enclave-destruction/1",
        "project": {"slug": "oldie", "title": TITLE, "tier": project.tier},
        "closed_at": (now - dt.timedelta(days=90)).isoformat(), "closed_by": CLOSER,
        "retention_days": 90, "destroy_after": now.isoformat(),
        "policy": {"file": "retention.yaml", "version": "2026.1", "sha256": None},
        "destroyed": {"workspace_archive": None, "keys": ["archive key", "pseudonym key"]},
        "quarantine_objects": [], "kept": "released outputs and their signed release records; the audit log",
        "destroyed_at": now.isoformat(), "destroyed_by": "enclave-retention", "signed_at": now.isoformat(),
    }
    envelope = sign_record(record, load_or_create_key(settings.keys_dir))
    with unit_of_work(settings) as s:
        s.add(DataRetention(project_id=get_project(s, "oldie").id, closed_at=now - dt.timedelta(days=90),
                            retention_days=90, destroy_after=now, policy_version="2026.1", destroyed_at=now,
                            destroyed_by="enclave-retention", destruction_record=envelope))
    keyring = load_public_key(settings.keys_dir / KEYRING_NAME)
    with unit_of_work(settings) as s:
        stored = s.get(DataRetention, get_project(s, "oldie").id).destruction_record
        public = destruction_record(s, "oldie")
        entry = get_entry(s, "oldie")
    assert verify_envelope(stored, keyring)["closed_by"] == CLOSER == closed_by_name(stored)
    published = json.dumps(public)
    assert CLOSER not in published and "Ursula" not in published
    assert public["signature"] is None and "custodians hold the signed record" in public["note"]
    assert public["record"]["closed_by"] == {"role": "admin"} and public["record"]["project"]["slug"] == "oldie"
    assert public["statement"].startswith("Closed by an administrator on ") and entry.data_destruction == public["statement"]
    with pytest.raises(InvalidInput):
        verify_envelope(public, keyring)  # nothing unsigned passes for signed
