"""Two sign-ins with one one-time code at the same moment: only one succeeds, on SQLite
and on PostgreSQL (the step is claimed by one conditional UPDATE)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select

from enclave.clock import utcnow
from enclave.config import Settings
from enclave.db.models import AuditEvent
from enclave.db.session import unit_of_work, upgrade
from enclave.hub.signin import SignInRefused, current_totp, enrol_totp, set_password, verify_sign_in
from tests.conftest import Factory

PASSWORD = "correct horse battery"
TRIES = 4


def _race(settings: Settings) -> None:
    with unit_of_work(settings) as session:
        f = Factory(session, settings)
        f.user("alice")
        set_password(session, f.admin, "alice", PASSWORD)
        secret = enrol_totp(session, f.admin, "alice").secret
    now = utcnow()
    code = current_totp(secret, now)
    start = threading.Barrier(TRIES)

    def sign_in() -> bool:
        start.wait()
        try:
            with unit_of_work(settings) as session:
                try:
                    verify_sign_in(session, "alice", PASSWORD, code, now)
                except SignInRefused:
                    session.commit()  # the refusal's audit event stays, as in the hub
                    return False
            return True
        except Exception as exc:  # noqa: BLE001 - a database error must not count as either
            raise AssertionError(f"sign-in failed with {type(exc).__name__}: {exc}") from exc

    with ThreadPoolExecutor(max_workers=TRIES) as pool:
        outcomes = list(pool.map(lambda _: sign_in(), range(TRIES)))
    assert outcomes.count(True) == 1, outcomes
    with unit_of_work(settings) as session:
        events = session.scalars(select(AuditEvent).where(AuditEvent.target == "user:alice",
                                                          AuditEvent.action.startswith("hub.login"))).all()
        assert [e.action for e in events].count("hub.login") == 1
        replays = [e for e in events if e.action == "hub.login_failed" and e.details["reason"] == "code already used"]
        assert len(replays) == TRIES - 1


def test_totp_replay_concurrent_sign_ins_with_one_code_sqlite(settings: Settings) -> None:
    _race(settings)


@pytest.mark.postgres
def test_totp_replay_concurrent_sign_ins_with_one_code_postgres(enclave_home, pg_url: str) -> None:
    settings = Settings.from_env({"ENCLAVE_HOME": str(enclave_home), "ENCLAVE_DB_URL": pg_url,
                                  "ENCLAVE_POLICIES": str(Settings.from_env().policies_dir)})
    upgrade(settings)
    _race(settings)
