"""What an attacker who owns the database can do first: drop the immutability triggers
(migration 0012). Tests of the audit chain use it to show that tampering is still
*detected* once the database no longer *prevents* it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

TABLES = ("audit_events", "egress_requests", "egress_files", "egress_file_groups", "egress_reviews", "data_retention")


def drop_immutability(conn: Any) -> None:
    """Drop every immutability trigger (``conn``: a SQLAlchemy connection or session, or sqlite3)."""
    if hasattr(conn, "cursor") and not hasattr(conn, "get_bind"):  # a plain sqlite3 connection
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")]
        for name in names:
            conn.execute(f"DROP TRIGGER {name}")
        return
    bind = conn.get_bind() if hasattr(conn, "get_bind") else conn
    if bind.dialect.name == "sqlite":
        names = [r[0] for r in conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'trigger'"))]
        for name in names:
            conn.execute(text(f"DROP TRIGGER {name}"))
    else:
        for table in TABLES:
            conn.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
