"""Password + TOTP sign-in, lockout, and who may set secrets (no hub)."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from enclave.clock import utcnow
from enclave.db.models import AuditEvent
from enclave.enums import Role
from enclave.errors import InvalidInput, PermissionDenied
from enclave.hub.signin import (
    Lockout,
    SignInRefused,
    current_totp,
    enrol_totp,
    set_password,
    totp_for_step,
    totp_step,
    unused_totp,
    verify_sign_in,
)
from enclave.users import add_user

PASSWORD = "correct horse battery"


def _enrolled(factory, name="alice"):
    factory.user(name)
    set_password(factory.session, factory.admin, name, PASSWORD)
    return enrol_totp(factory.session, factory.admin, name)


def test_verify_sign_in_accepts_password_and_current_code(factory):
    enrolment = _enrolled(factory)
    now = utcnow()
    user = verify_sign_in(factory.session, "alice", PASSWORD, current_totp(enrolment.secret, now), now)
    assert user.name == "alice"
    assert enrolment.uri.startswith("otpauth://totp/Enclave%3Aalice?secret=")


@pytest.mark.parametrize("case", ["wrong password", "no code", "wrong code", "old code", "unknown user"])
def test_verify_sign_in_refuses_bad_credentials_without_saying_which(factory, case):
    enrolment = _enrolled(factory)
    now = utcnow()
    name, password, code = "alice", PASSWORD, current_totp(enrolment.secret, now)
    if case == "wrong password":
        password = "correct horse batterz"
    elif case == "no code":
        code = ""
    elif case == "wrong code":
        code = f"{(int(code) + 1) % 1_000_000:06d}"
    elif case == "old code":
        code = current_totp(enrolment.secret, now - dt.timedelta(minutes=5))
    else:
        name = "nobody"
    with pytest.raises(SignInRefused, match="wrong user name, password or authenticator code"):
        verify_sign_in(factory.session, name, password, code, now)


def test_verify_sign_in_refuses_users_without_enrolment(factory):
    factory.user("bob")
    set_password(factory.session, factory.admin, "bob", PASSWORD)
    with pytest.raises(SignInRefused, match="ask an admin to enrol you"):
        verify_sign_in(factory.session, "bob", PASSWORD, "123456", utcnow())


def test_verify_sign_in_locks_after_repeated_failures_even_with_right_secrets(factory):
    enrolment = _enrolled(factory)
    now = utcnow()
    lockout = Lockout(max_failures=3, window=dt.timedelta(minutes=15))
    for _ in range(3):
        with pytest.raises(SignInRefused):
            verify_sign_in(factory.session, "alice", "guess guess guess", "000000", now, lockout)
    with pytest.raises(SignInRefused, match="too many failed sign-ins"):
        verify_sign_in(factory.session, "alice", PASSWORD, current_totp(enrolment.secret, now), now, lockout)
    later = now + dt.timedelta(minutes=16)
    assert verify_sign_in(factory.session, "alice", PASSWORD, current_totp(enrolment.secret, later), later, lockout)


def test_sign_in_outcomes_are_audited_without_secrets(factory):
    enrolment = _enrolled(factory)
    now = utcnow()
    with pytest.raises(SignInRefused):
        verify_sign_in(factory.session, "alice", "wrong password here", "111111", now)
    verify_sign_in(factory.session, "alice", PASSWORD, current_totp(enrolment.secret, now), now)
    events = factory.session.scalars(select(AuditEvent).where(AuditEvent.action.startswith("hub."))).all()
    assert [e.action for e in events] == ["hub.password_set", "hub.totp_enrol", "hub.login_failed", "hub.login"]
    text = " ".join(str(e.details) + str(e.target) for e in events)
    assert PASSWORD not in text and "wrong password here" not in text and enrolment.secret not in text


def test_set_password_needs_an_admin_except_for_the_first_admin(factory):
    factory.user("alice")
    boss = factory.admin
    set_password(factory.session, None, boss.name, PASSWORD)  # bootstrap: no admin can sign in yet
    with pytest.raises(PermissionDenied, match="set up an admin first"):
        set_password(factory.session, None, "alice", PASSWORD)
    enrol_totp(factory.session, None, boss.name)
    with pytest.raises(PermissionDenied, match="only an admin"):
        set_password(factory.session, None, boss.name, PASSWORD)
    with pytest.raises(PermissionDenied):
        set_password(factory.session, factory.get("alice"), "alice", PASSWORD)
    with pytest.raises(InvalidInput, match="too short"):
        set_password(factory.session, boss, "alice", "short")
    other = add_user(factory.session, boss, "carol", {Role.ADMIN})
    set_password(factory.session, other, "alice", PASSWORD)


def _failures(session, reason):
    events = session.scalars(select(AuditEvent).where(AuditEvent.action == "hub.login_failed")).all()
    return [e for e in events if e.details.get("reason") == reason]


def test_verify_sign_in_refuses_a_replayed_code(factory):
    enrolment = _enrolled(factory)
    now = utcnow()
    code = current_totp(enrolment.secret, now)
    assert verify_sign_in(factory.session, "alice", PASSWORD, code, now)
    with pytest.raises(SignInRefused, match="wrong user name, password or authenticator code"):
        verify_sign_in(factory.session, "alice", PASSWORD, code, now + dt.timedelta(seconds=5))
    assert len(_failures(factory.session, "code already used")) == 1


def test_verify_sign_in_refuses_an_earlier_step_after_a_later_one(factory):
    enrolment = _enrolled(factory)
    now = utcnow()
    ahead = current_totp(enrolment.secret, now + dt.timedelta(seconds=30))  # accepted: one step of skew
    assert verify_sign_in(factory.session, "alice", PASSWORD, ahead, now)
    with pytest.raises(SignInRefused):
        verify_sign_in(factory.session, "alice", PASSWORD, current_totp(enrolment.secret, now), now)
    # Once the clock has moved two steps on, a fresh code works again.
    later = now + dt.timedelta(seconds=60)
    assert verify_sign_in(factory.session, "alice", PASSWORD, current_totp(enrolment.secret, later), later)


def test_verify_sign_in_counts_replays_towards_lockout(factory):
    enrolment = _enrolled(factory)
    now = utcnow()
    lockout = Lockout(max_failures=2, window=dt.timedelta(minutes=15))
    code = current_totp(enrolment.secret, now)
    verify_sign_in(factory.session, "alice", PASSWORD, code, now, lockout)
    for _ in range(2):
        with pytest.raises(SignInRefused, match="wrong user name"):
            verify_sign_in(factory.session, "alice", PASSWORD, code, now, lockout)
    fresh = current_totp(enrolment.secret, now + dt.timedelta(seconds=30))
    with pytest.raises(SignInRefused, match="too many failed sign-ins"):
        verify_sign_in(factory.session, "alice", PASSWORD, fresh, now, lockout)


def test_unused_totp_gives_a_code_the_next_sign_in_accepts(factory):
    enrolment = _enrolled(factory)
    now = dt.datetime(2026, 12, 1, 10, 0, 5, tzinfo=dt.UTC)
    step = totp_step(now)
    assert unused_totp(enrolment.secret, None, now) == (current_totp(enrolment.secret, now), 0.0)
    assert unused_totp(enrolment.secret, step, now) == (totp_for_step(enrolment.secret, step + 1), 0.0)
    code, wait = unused_totp(enrolment.secret, step + 1, now)
    assert code == totp_for_step(enrolment.secret, step + 2) and wait == pytest.approx(25.0)
    # Each code it gives signs in once, in turn.
    clock = now
    for _ in range(3):
        code, wait = unused_totp(enrolment.secret, factory.get("alice").totp_last_step, clock)
        clock += dt.timedelta(seconds=wait)
        assert verify_sign_in(factory.session, "alice", PASSWORD, code, clock)
