"""Engines and units of work.

One session per unit of work: ``with unit_of_work(settings) as session:`` commits when
the block ends normally and rolls back on any error, so a failed command writes nothing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import sqlalchemy.exc
import sqlalchemy.orm.exc
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from enclave.config import Settings
from enclave.errors import DatabaseError

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def _make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
            # Let SQLAlchemy, not the driver, open transactions (see _on_begin).
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn) -> None:  # type: ignore[no-untyped-def]
            # Take the write lock at the start so that concurrent units of work queue
            # up instead of failing when they upgrade a read lock (lost updates).
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True)


@lru_cache(maxsize=16)
def engine_for(url: str) -> Engine:
    """One engine per database URL for the life of the process."""
    return _make_engine(url)


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["enclave_url"] = url
    return cfg


@lru_cache(maxsize=1)
def head_revision() -> str | None:
    """The newest migration shipped with this code (read once per process)."""
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def check_ready(settings: Settings) -> None:
    """Refuse to work on a missing, corrupt or out-of-date database, with what to do."""
    path = settings.sqlite_path
    if path is not None and not path.exists():
        raise DatabaseError(f"no enclave database at {path}: run 'enclave db upgrade' to create it")
    try:
        with engine_for(settings.db_url).connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
    except sqlalchemy.exc.DatabaseError as exc:
        raise DatabaseError(_explain(settings, exc)) from None
    head = head_revision()
    if current != head:
        raise DatabaseError(
            f"the enclave database is at schema {current or 'none'}, this code needs {head}: "
            "run 'enclave db upgrade'"
        )


def _explain(settings: Settings, exc: Exception) -> str:
    orig = getattr(exc, "orig", exc)
    where = settings.sqlite_path or settings.db_url.split("@")[-1]
    if isinstance(orig, sqlite3.DatabaseError) and "not a database" in str(orig):
        return f"the enclave database at {where} is corrupt: restore it from a backup (or move it aside and run 'enclave db upgrade')"
    return f"cannot use the enclave database at {where} ({str(orig).strip().splitlines()[0]}): check ENCLAVE_DB_URL and that the server is running"


@contextmanager
def unit_of_work(settings: Settings, *, check: bool = True) -> Iterator[Session]:
    """A session whose changes commit together at the end of the block, or not at all."""
    if check:
        check_ready(settings)
    factory = sessionmaker(engine_for(settings.db_url), expire_on_commit=False)
    session = factory()
    # What after-commit hooks need to find the enclave (enclave.wakeup pokes its enforcer).
    session.info["enclave.settings"] = settings
    try:
        yield session
        session.commit()
    except sqlalchemy.orm.exc.StaleDataError:
        session.rollback()
        from enclave.errors import Conflict

        raise Conflict("someone else changed this at the same moment: look again and retry") from None
    except sqlalchemy.exc.OperationalError as exc:
        session.rollback()
        raise DatabaseError(_explain(settings, exc)) from None
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def upgrade(settings: Settings, revision: str = "head") -> None:
    """Create or migrate the schema (``enclave db upgrade``)."""
    from alembic import command

    path = settings.sqlite_path
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() and path.stat().st_size > 0:
            with open(path, "rb") as fh:
                if fh.read(16) != b"SQLite format 3\x00":
                    raise DatabaseError(
                        f"the enclave database at {path} is corrupt: restore it from a backup "
                        "(or move it aside and run 'enclave db upgrade')"
                    )
    try:
        command.upgrade(alembic_config(settings.db_url), revision)
    except sqlalchemy.exc.DatabaseError as exc:
        raise DatabaseError(_explain(settings, exc)) from None
