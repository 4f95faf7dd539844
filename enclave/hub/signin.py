"""Sign-in secrets and checks: bcrypt password hashes and a mandatory TOTP second factor.

The hub's authenticator (``enclave.hub.auth``) is a thin wrapper around
:func:`verify_sign_in`; the ``enclave hub`` CLI calls :func:`set_password` and
:func:`enrol_totp`. Every outcome is audited; passwords and codes never are.

Lockout: after ``max_failures`` failed attempts within ``window`` (counted from the
audit log since the user's last success), further attempts are refused without
checking the secrets until the window has passed without new failures.

Replay: each person's last accepted TOTP time step is stored, and a code of that step
or an earlier one is refused (RFC 6238, section 5.2). The step is claimed with one
conditional UPDATE, so of two concurrent sign-ins with the same code only one succeeds.
A refused replay is a failed sign-in like any other (audited, counted for lockout).
"""

from __future__ import annotations

import base64
import datetime as dt
import hmac
import os
import urllib.parse
from dataclasses import dataclass
from enum import StrEnum

import bcrypt
import onetimepass
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from enclave.audit import append_event
from enclave.db.models import AuditEvent, User
from enclave.enums import Role
from enclave.errors import EnclaveError, InvalidInput, PermissionDenied
from enclave.incidents import suspension_reason
from enclave.permissions import check_admin
from enclave.users import find_user, get_user

MIN_PASSWORD_CHARS = 12
TOTP_PERIOD = 30  # seconds per time step
TOTP_SKEW_STEPS = 1  # steps either side accepted: clocks a little apart
MAX_PASSWORD_BYTES = 72  # bcrypt's limit; longer inputs would be silently cut or refused
TOTP_ISSUER = "Enclave"

# Checked against when the user is unknown, so that both paths cost one bcrypt check.
_DUMMY_HASH = bcrypt.hashpw(b"not a real password", bcrypt.gensalt(rounds=12))


class SignInAction(StrEnum):
    LOGIN = "hub.login"
    LOGIN_FAILED = "hub.login_failed"
    LOGIN_LOCKED = "hub.login_locked"
    PASSWORD_SET = "hub.password_set"
    TOTP_ENROL = "hub.totp_enrol"


class SignInRefused(EnclaveError):
    """The credentials were not accepted; the message is safe to show at the login form."""


@dataclass(frozen=True)
class Lockout:
    """How many failed attempts within how long lock an account."""

    max_failures: int = 5
    window: dt.timedelta = dt.timedelta(minutes=15)


@dataclass(frozen=True)
class TotpEnrolment:
    secret: str
    uri: str


def _check_may_manage(session: Session, actor: User | None, target: User, doing: str) -> str:
    """Admins manage everyone's secrets; with no acting user, only the bootstrap case:
    setting up the first admin while no admin can sign in yet."""
    if actor is not None:
        check_admin(actor, doing)
        return actor.name
    admins_ready = session.scalars(
        select(User).where(User.password_hash.is_not(None), User.totp_secret.is_not(None))
    ).all()
    if any(u.has_role(Role.ADMIN) for u in admins_ready):
        raise PermissionDenied(f"say who is acting with --as ADMIN: only an admin may {doing}")
    if not target.has_role(Role.ADMIN):
        raise PermissionDenied(
            f"no admin can sign in yet: set up an admin first ('enclave hub set-password ADMIN' and "
            f"'enclave hub enrol-totp ADMIN'), then act --as that admin to {doing}"
        )
    return target.name


def set_password(session: Session, actor: User | None, name: str, password: str) -> User:
    """Store a bcrypt hash of ``password`` for ``name`` (admins; or the first admin)."""
    user = get_user(session, name)
    acting = _check_may_manage(session, actor, user, "set passwords")
    if len(password) < MIN_PASSWORD_CHARS:
        raise InvalidInput(f"the password is too short: use at least {MIN_PASSWORD_CHARS} characters")
    if len(password.encode()) > MAX_PASSWORD_BYTES:
        raise InvalidInput(f"the password is too long: use at most {MAX_PASSWORD_BYTES} bytes")
    user.password_hash = bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode()
    append_event(session, acting, SignInAction.PASSWORD_SET, target=f"user:{name}")
    return user


def enrol_totp(session: Session, actor: User | None, name: str) -> TotpEnrolment:
    """Give ``name`` a new TOTP secret (replacing any old one); returned once, to show once."""
    user = get_user(session, name)
    acting = _check_may_manage(session, actor, user, "enrol second factors")
    replaced = user.totp_secret is not None
    secret = base64.b32encode(os.urandom(20)).decode()
    user.totp_secret = secret
    append_event(session, acting, SignInAction.TOTP_ENROL, target=f"user:{name}", details={"replaced": replaced})
    label = urllib.parse.quote(f"{TOTP_ISSUER}:{name}")
    query = urllib.parse.urlencode({"secret": secret, "issuer": TOTP_ISSUER, "digits": 6, "period": 30})
    return TotpEnrolment(secret=secret, uri=f"otpauth://totp/{label}?{query}")


def current_totp(secret: str, at: dt.datetime | None = None) -> str:
    """The six-digit code for ``secret`` at ``at`` (tests and first-enrolment checks)."""
    clock = int((at or dt.datetime.now(dt.UTC)).timestamp())
    return f"{onetimepass.get_totp(secret, clock=clock):06d}"


def totp_step(at: dt.datetime) -> int:
    """The RFC 6238 time step (counter) of the instant ``at``."""
    return int(at.timestamp()) // TOTP_PERIOD


def totp_for_step(secret: str, step: int) -> str:
    """The six-digit code of ``secret`` for time step ``step``."""
    return f"{onetimepass.get_totp(secret, clock=step * TOTP_PERIOD):06d}"


def unused_totp(secret: str, last_step: int | None, at: dt.datetime) -> tuple[str, float]:
    """A code that a sign-in at or after ``at`` will accept, given the last accepted step:
    the current step's if unused, else the next step's (accepted ahead of time by the skew
    tolerance). Returns the code and the seconds to wait before it is accepted (0 unless
    even the next step was used)."""
    now_step = totp_step(at)
    target = max(now_step, (last_step if last_step is not None else now_step - 1) + 1)
    wait = 0.0
    if target > now_step + TOTP_SKEW_STEPS:
        wait = (target - TOTP_SKEW_STEPS) * TOTP_PERIOD - at.timestamp()
    return totp_for_step(secret, target), max(0.0, wait)


def _recent_failures(session: Session, name: str, since: dt.datetime) -> int:
    rows = session.scalars(
        select(AuditEvent.action)
        .where(AuditEvent.target == f"user:{name}", AuditEvent.at >= since,
               AuditEvent.action.in_([SignInAction.LOGIN, SignInAction.LOGIN_FAILED]))
        .order_by(AuditEvent.seq.desc())
    ).all()
    failures = 0
    for action in rows:
        if action == SignInAction.LOGIN:
            break
        failures += 1
    return failures


def verify_sign_in(
    session: Session, name: str, password: str, otp: str, now: dt.datetime, lockout: Lockout = Lockout()
) -> User:
    """Return the user if password and TOTP code are right; else audit and raise SignInRefused.

    The refusal message does not say which factor was wrong (it names only lockouts and
    accounts without enrolment, which an admin must fix).
    """
    name = (name or "").strip().lower()[:64]
    user = find_user(session, name) if name else None
    target = f"user:{name}"
    if user is not None and _recent_failures(session, name, now - lockout.window) >= lockout.max_failures:
        append_event(session, name, SignInAction.LOGIN_LOCKED, target=target)
        minutes = int(lockout.window.total_seconds() // 60)
        raise SignInRefused(f"too many failed sign-ins: try again in {minutes} minutes or ask an admin")
    pw_ok = bcrypt.checkpw((password or "").encode()[:MAX_PASSWORD_BYTES],
                           (user.password_hash if user and user.password_hash else _DUMMY_HASH.decode()).encode())
    reason = None
    if user is None:
        reason = "unknown user"
    elif not user.password_hash or not user.totp_secret:
        reason = "not enrolled"
    elif not pw_ok:
        reason = "wrong password"
    else:
        step = _totp_matching_step(user.totp_secret, otp, now)
        if step is None:
            reason = "wrong or missing code"
        elif not _claim_step(session, user, step):
            reason = "code already used"
    if reason is not None:
        append_event(session, name or "anonymous", SignInAction.LOGIN_FAILED, target=target,
                     details={"reason": reason})
        if reason == "not enrolled":
            raise SignInRefused("this account has no password or authenticator app yet: ask an admin to enrol you")
        raise SignInRefused("wrong user name, password or authenticator code: check them and try again")
    # Said only to whoever knows both factors: a disabled or suspended account.
    suspended = suspension_reason(session, user)
    if suspended is not None:
        append_event(session, name, SignInAction.LOGIN_FAILED, target=target, details={"reason": "suspended"})
        raise SignInRefused(suspended)
    append_event(session, user, SignInAction.LOGIN, target=target)
    return user


def _totp_matching_step(secret: str, otp: str, now: dt.datetime) -> int | None:
    """The time step whose code ``otp`` is (within the skew tolerance), else None."""
    code = (otp or "").strip().replace(" ", "")
    if not (code.isdigit() and len(code) == 6):
        return None
    now_step = totp_step(now)
    for step in range(now_step - TOTP_SKEW_STEPS, now_step + TOTP_SKEW_STEPS + 1):
        if hmac.compare_digest(totp_for_step(secret, step), code):
            return step
    return None


def _claim_step(session: Session, user: User, step: int) -> bool:
    """Record ``step`` as the user's last accepted one if it is later than the stored one.

    One conditional UPDATE: the database serialises two sign-ins with the same code (the
    second waits for the first's row lock, then finds the step taken), so only one wins.
    """
    result = session.execute(
        update(User)
        .where(User.id == user.id, or_(User.totp_last_step.is_(None), User.totp_last_step < step))
        .values(totp_last_step=step)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        return False
    set_committed_value(user, "totp_last_step", step)
    return True
