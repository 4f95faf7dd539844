"""Incidents: opened audited, suspension until cleared, accounts disabled after repeats."""

from __future__ import annotations

import json

import pytest

from enclave.audit import list_events, verify_chain
from enclave.enums import IncidentKind, IncidentStatus, Role
from enclave.errors import InvalidInput, InvalidTransition, PermissionDenied
from enclave.incidents import (
    IncidentAction,
    check_not_suspended,
    clear_incident,
    enable_user,
    list_incidents,
    open_incident,
)


def _open(session, factory, *, suspend=True, disable_after=None, settings=None):
    factory.project("cardio", pi="pia", status="active", members=("ada",))
    return open_incident(session, "enclave-meter", IncidentKind.EGRESS_VOLUME, user="ada", project="cardio",
                         server="cardio", details={"bytes": 5000, "limit": 1000}, suspend_user=suspend,
                         disable_after_incidents=disable_after, settings=settings)


def test_incidents_open_is_audited_and_suspends_until_cleared(session, factory):
    incident = _open(session, factory)
    ada = factory.get("ada")
    with pytest.raises(PermissionDenied, match=f"suspended until an admin clears incident #{incident.id}"):
        check_not_suspended(session, ada)
    [opened] = list(list_events(session, action=IncidentAction.OPEN))
    assert opened.actor == "enclave-meter" and opened.project == "cardio"
    assert opened.details["bytes"] == 5000 and opened.details["user"] == "ada"

    other_admin = factory.user("otto", Role.ADMIN)
    clear_incident(session, other_admin, incident.id, "looked at the notebook: a plot, not data")
    check_not_suspended(session, ada)  # no longer raises
    assert incident.status is IncidentStatus.CLEARED and incident.cleared_by.name == "otto"
    [cleared] = list(list_events(session, action=IncidentAction.CLEAR))
    assert cleared.actor == "otto" and "a plot" in cleared.details["note"]
    assert verify_chain(session).ok


def test_incidents_without_suspension_do_not_block(session, factory):
    _open(session, factory, suspend=False)
    check_not_suspended(session, factory.get("ada"))


def test_incidents_clear_needs_another_admin_and_a_note(session, factory):
    incident = _open(session, factory)
    with pytest.raises(PermissionDenied, match="admin role"):
        clear_incident(session, factory.get("ada"), incident.id, "it was me")
    with pytest.raises(InvalidInput, match="give a note"):
        clear_incident(session, factory.admin, incident.id, "  ")
    factory.session.flush()
    # An admin who is the incident's person may not clear it.
    boss = factory.user("boss", Role.ADMIN, Role.RESEARCHER)
    own = open_incident(session, "enclave-meter", IncidentKind.EGRESS_VOLUME, user=boss, project=None,
                        server="x", details={}, suspend_user=True)
    with pytest.raises(PermissionDenied, match="about themselves"):
        clear_incident(session, boss, own.id, "fine")
    clear_incident(session, factory.admin, incident.id, "reviewed")
    with pytest.raises(InvalidTransition, match="already cleared"):
        clear_incident(session, factory.admin, incident.id, "again")


def test_incidents_repeated_disable_the_account_until_enabled(session, factory):
    first = _open(session, factory, disable_after=2)
    clear_incident(session, factory.admin, first.id, "reviewed")
    ada = factory.get("ada")
    assert ada.disabled_at is None
    open_incident(session, "enclave-meter", IncidentKind.EGRESS_VOLUME, user=ada, project="cardio",
                  server="cardio", details={}, suspend_user=False, disable_after_incidents=2)
    assert ada.disabled_at is not None
    with pytest.raises(PermissionDenied, match="account is disabled"):
        check_not_suspended(session, ada)
    assert [e.target for e in list_events(session, action=IncidentAction.ACCOUNT_DISABLE)] == ["user:ada"]
    enable_user(session, factory.admin, "ada", "second review done")
    check_not_suspended(session, ada)
    with pytest.raises(InvalidTransition):
        enable_user(session, factory.admin, "ada", "again")


def test_incidents_list_is_for_admins(session, factory):
    incident = _open(session, factory)
    assert [i.id for i in list_incidents(session, factory.admin, status=IncidentStatus.OPEN)] == [incident.id]
    assert list_incidents(session, factory.admin, status=IncidentStatus.CLEARED) == []
    with pytest.raises(PermissionDenied):
        list_incidents(session, factory.get("ada"))


def test_incidents_notify_admins_after_commit_only(settings, factory, session):
    log_file = settings.home / "egress-notifications.log"  # the notifier of policies/egress.yaml
    incident = _open(session, factory, settings=settings)
    assert not log_file.exists() or "incident" not in log_file.read_text()
    session.commit()
    notes = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert any(n.get("event") == "incident" and n["incident"] == incident.id and n["user"] == "ada" for n in notes)


def test_incidents_a_suspended_persons_running_servers_are_stopped_by_the_enforcer(session, factory):
    from enclave.clock import utcnow
    from enclave.hub.enforce import servers_to_stop

    _open(session, factory)
    [order] = servers_to_stop(session, [("ada", "cardio")], utcnow())
    assert "suspended until an admin clears incident" in order.reason
