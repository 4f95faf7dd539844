"""Break-glass windows: only where the tier's policy allows it, only with a written reason,
time-limited, one server only, audited under the admin's name, shown to the members."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from enclave.clock import utcnow
from enclave.db.models import AuditEvent
from enclave.errors import InvalidInput, NotFound, PermissionDenied
from enclave.hub.actors import Requester, check_may_start
from enclave.hub.auth import auth_model
from enclave.hub.breakglass import close_break_glass, describe, open_break_glass, windows
from enclave.projects.tiers import Tier, TierPolicy, load_tiers

REASON = "the notebook server hangs and ada asked for help on ticket 4711"


def _tiers(settings, minutes: int) -> TierPolicy:
    base = load_tiers(settings.policies_dir)
    tiers = {name: Tier(level=t.level, description=t.description, break_glass_minutes=minutes if name == "tier2" else 0)
             for name, t in base.tiers.items()}
    return TierPolicy(version=base.version, default_tier=base.default_tier, tiers=tiers)


@pytest.fixture
def world(factory):
    factory.project("cardio", "ada", "active", members=("bea",))
    return factory


def _roles(session, user):
    return {r["name"]: r.get("scopes") for r in auth_model(session, user)["roles"]}


def test_break_glass_is_refused_where_the_policy_does_not_enable_it(world, settings):
    with pytest.raises(PermissionDenied, match="break-glass is not enabled for tier tier2"):
        open_break_glass(world.session, world.admin, load_tiers(settings.policies_dir), "ada/cardio", REASON, utcnow())
    assert windows(world.session) == []


@pytest.mark.parametrize("reason", ["", "   ", "because"])
def test_break_glass_needs_a_written_reason(world, settings, reason):
    with pytest.raises(InvalidInput, match="written reason"):
        open_break_glass(world.session, world.admin, _tiers(settings, 30), "ada/cardio", reason, utcnow())


def test_break_glass_only_for_admins_and_existing_servers(world, settings):
    tiers = _tiers(settings, 30)
    with pytest.raises(PermissionDenied):
        open_break_glass(world.session, world.get("bea"), tiers, "ada/cardio", REASON, utcnow())
    with pytest.raises(NotFound):
        open_break_glass(world.session, world.admin, tiers, "mallory/cardio", REASON, utcnow())
    world.user("mallory")
    with pytest.raises(NotFound, match="not a member"):
        open_break_glass(world.session, world.admin, tiers, "mallory/cardio", REASON, utcnow())
    with pytest.raises(InvalidInput, match="between 1 and 30"):
        open_break_glass(world.session, world.admin, tiers, "ada/cardio", REASON, utcnow(), minutes=31)
    with pytest.raises(InvalidInput, match="USER/PROJECT"):
        open_break_glass(world.session, world.admin, tiers, "cardio", REASON, utcnow())


def test_break_glass_grants_one_server_for_the_window_then_nothing(world, settings):
    now = utcnow()
    admin = world.admin
    assert set(_roles(world.session, admin)) == {"user", "enclave-admin"}
    window = open_break_glass(world.session, admin, _tiers(settings, 30), "ada/cardio", REASON, now, minutes=10)
    roles = _roles(world.session, admin)
    assert roles[f"enclave-break-glass-{window.id}"] == ["access:servers!server=ada/cardio"]
    assert window.expires_at == now + dt.timedelta(minutes=10)
    # Not bea's server of the same project, not ada's other servers, not for anyone else.
    assert sum(len(s or []) for s in roles.values()) == 1
    assert set(_roles(world.session, world.get("bea"))) == {"user", "enclave-researcher"}
    close_break_glass(world.session, admin, window.id, now + dt.timedelta(minutes=1))
    assert set(_roles(world.session, admin)) == {"user", "enclave-admin"}
    with pytest.raises(InvalidInput, match="already closed"):
        close_break_glass(world.session, admin, window.id, now + dt.timedelta(minutes=2))


def test_break_glass_is_audited_under_the_admin_and_shown_to_members(world, settings):
    window = open_break_glass(world.session, world.admin, _tiers(settings, 30), "ada/cardio", REASON, utcnow())
    event = world.session.scalars(select(AuditEvent).where(AuditEvent.action == "hub.break_glass_open")).one()
    assert event.actor == "root-admin" and event.target == "server:ada/cardio"
    assert event.details["reason"] == REASON and event.details["break_glass"] == window.id
    line = describe(window)
    assert line.startswith("admin root-admin opened ada's server at ") and line.endswith(REASON)


def test_only_the_owner_may_start_a_server():
    check_may_start("ada", Requester("ada", "user"))
    check_may_start("ada", Requester("enclave-jobs", "service"))
    check_may_start("ada", None)
    with pytest.raises(PermissionDenied, match="only ada may"):
        check_may_start("ada", Requester("root-admin", "user"))
