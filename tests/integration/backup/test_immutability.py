"""The database itself refuses to change history: UPDATE and DELETE (and TRUNCATE on
PostgreSQL) of audit events and of released requests, their files, groups and votes
fail on SQLite and PostgreSQL, tried with raw SQL; what legitimately changes (requests
still in review, the audit head as events are appended) still does."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy.exc
from sqlalchemy import text

from backup_world import make_enclave
from enclave.audit import append_event, verify_chain
from enclave.db.session import engine_for, unit_of_work

REPO = Path(__file__).resolve().parents[3]
RELEASED = "(SELECT id FROM egress_requests WHERE status = 'released')"
ATTACKS = [
    "UPDATE audit_events SET actor = 'mallory' WHERE seq = 2",
    "UPDATE audit_events SET hash = prev_hash",
    "DELETE FROM audit_events WHERE seq = (SELECT MAX(seq) FROM audit_events)",
    "DELETE FROM audit_events",
    "UPDATE egress_requests SET title = 'something else' WHERE status = 'released'",
    "UPDATE egress_requests SET status = 'draft' WHERE status = 'released'",
    "DELETE FROM egress_requests WHERE status = 'released'",
    f"UPDATE egress_files SET sha256 = '{'0' * 64}' WHERE request_id IN {RELEASED}",
    f"DELETE FROM egress_files WHERE request_id IN {RELEASED}",
    f"UPDATE egress_file_groups SET context = 'rewritten' WHERE request_id IN {RELEASED}",
    f"DELETE FROM egress_file_groups WHERE request_id IN {RELEASED}",
    f"UPDATE egress_reviews SET decision = 'reject' WHERE request_id IN {RELEASED}",
    f"DELETE FROM egress_reviews WHERE request_id IN {RELEASED}",
]
PG_ONLY = ["TRUNCATE audit_events CASCADE", "TRUNCATE egress_reviews CASCADE", "TRUNCATE egress_requests CASCADE"]


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'home' / 'enclave.db'}"
    return request.getfixturevalue("pg_url")


def test_immutability_raw_sql_cannot_change_history(db_url: str, tmp_path: Path) -> None:
    world = make_enclave(tmp_path / "home", REPO / "policies", db_url=db_url)
    engine = engine_for(db_url)
    attacks = ATTACKS + (PG_ONLY if engine.dialect.name == "postgresql" else [])
    with engine.connect() as conn:
        before = [tuple(r) for r in conn.execute(text("SELECT seq, hash FROM audit_events ORDER BY seq"))]
        assert conn.execute(text(f"SELECT COUNT(*) FROM egress_reviews WHERE request_id IN {RELEASED}")).scalar() == 8
    refused = []
    for statement in attacks:
        with engine.connect() as conn:
            try:
                conn.execute(text(statement))
                conn.commit()
            except sqlalchemy.exc.DBAPIError as exc:
                assert "immutable" in str(exc.orig), statement
                refused.append(statement)
                conn.rollback()
    assert refused == attacks
    with engine.connect() as conn:
        assert [tuple(r) for r in conn.execute(text("SELECT seq, hash FROM audit_events ORDER BY seq"))] == before
        assert conn.execute(text(f"SELECT COUNT(*) FROM egress_reviews WHERE request_id IN {RELEASED}")).scalar() == 8
        # A request still in review changes as its workflow moves it.
        conn.execute(text("UPDATE egress_requests SET title = 'retitled' WHERE status = 'in_review'"))
        conn.commit()
    with unit_of_work(world.settings) as s:  # the head row still moves as events are appended
        append_event(s, "admin", "test.after_attacks")
    with unit_of_work(world.settings) as s:
        report = verify_chain(s)
        assert report.ok and report.checked == len(before) + 1


def test_immutability_triggers_exist_at_the_schema_head(tmp_path: Path) -> None:
    """A later batch migration on SQLite that recreates one of these tables would drop its
    triggers silently: this names the missing one."""
    world = make_enclave(tmp_path / "home", REPO / "policies")
    with engine_for(world.settings.db_url).connect() as conn:
        names = {r[0] for r in conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'trigger'"))}
    for table in ("audit_events", "egress_requests", "egress_files", "egress_file_groups", "egress_reviews",
                  "data_retention"):
        assert {n for n in names if n.startswith(table) and n.endswith(("_no_update", "_no_delete"))} >= {
            n for n in names if n.startswith(table)} and any(n.startswith(table) for n in names), table
